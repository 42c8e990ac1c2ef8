"""The run's manifests streamed into counts per task, score histograms and the gallery's deterministic sample.

Histograms accumulate into fixed bins and the gallery keeps, per task x status, the candidates whose hash of
(seed, key, candidate) is lowest, so memory stays bounded for a run of any size; only the sampled rows are read
back and only the sampled pairs are decoded into thumbnails: kept ones from their shard's tar, the others from its
rejected tar where the run stored them (pipeline.keep_rejected).
"""

from __future__ import annotations

import hashlib
import heapq
import math
import tarfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from datagen.scores import SCORE_PREFIX
from datagen.shards.tally import RunCounts, TaskCounts

if TYPE_CHECKING:
    from datagen.shards import RunFolder, Shard

STATUSES = ("kept", "rejected", "error")
CATEGORIES = ("kept", "outranked", "rejected")
"""Histogram bars: kept; passed every gate but lost the ranking to a sibling candidate; rejected or error."""
FINE_BINS = 2000  # accumulation bins over a score's whole range; plots merge them over the occupied span
THUMB_PX = 128
SIZE_COLUMNS = ("width", "height")
"""The manifest columns of a sample's image size (absent in runs made before samples recorded it)."""
ENTRY_COLUMNS = (
    "detail", "instruction", "input_caption", "output_caption", "objects", "params", "judge_reasoning",
    "instruction_rewritten", *SIZE_COLUMNS,
)  # fmt: skip
"""A gallery entry's manifest columns beyond those every reader reads (datagen/shards/reader.py: ROW_COLUMNS)."""


@dataclass
class TaskTally:
    """What the manifests say about one task, accumulated shard by shard."""

    counts: TaskCounts = field(default_factory=TaskCounts)
    """Samples attempted, kept, errors and reasons, each sample under its own task (datagen/shards/tally.py)."""
    shards: int = 0
    candidates: int = 0
    tar_bytes: int = 0
    seconds: float = 0.0
    statuses: Counter = field(default_factory=Counter)
    """Candidate rows per status: the gallery's strata."""
    histograms: dict[str, Any] = field(default_factory=dict)
    """Score -> int array (len(CATEGORIES), FINE_BINS) over the score's range."""
    extremes: dict[str, list[float]] = field(default_factory=dict)
    """Score -> [lowest, highest] value seen: exact, where the bins are not."""
    sizes: Counter = field(default_factory=Counter)
    """Kept samples per image size, "WxH": how a run with aspect-ratio buckets filled them."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "shards": self.shards,
            "samples": self.counts.samples,
            "kept": self.counts.kept,
            "rejected": self.counts.rejected,
            "errors": self.counts.errors,
            "candidates": self.candidates,
            "tar_bytes": self.tar_bytes,
            "seconds": round(self.seconds, 3),
            "reasons": dict(sorted(self.counts.reasons.items())),
            "candidate_reasons": dict(sorted(self.counts.candidate_reasons.items())),
            "statuses": dict(sorted(self.statuses.items())),
            "sizes": dict(sorted(self.sizes.items())),
        }


INPUT_FILE_REASONS = ("shard_truncated", "shard_unreadable")
"""Reasons that name a whole input file (a tar cut short, a file that is not a tar): the report lists the files."""


class RunTally:
    """Counts, histograms and the gallery's sample of one run, fed one manifest at a time."""

    def __init__(self, gallery: int, seed: int):
        from datagen.scores import SCORES

        self.scores = SCORES
        self.capacity, self.seed = gallery, seed
        self.counts = RunCounts()
        """The samples counted from the manifests; each task's TaskTally holds its TaskCounts."""
        self.tasks: dict[str, TaskTally] = {}
        self.heaps: dict[tuple[str, str], list[tuple[int, int, int]]] = defaultdict(list)
        self.warnings: list[str] = []

    def task(self, name: str) -> TaskTally:
        """A task's tally, made on first sight, its counts those of `self.counts`."""
        if name not in self.tasks:
            self.tasks[name] = TaskTally(counts=self.counts.task(name))
        return self.tasks[name]

    def priority(self, key: str, candidate: int) -> int:
        digest = hashlib.blake2b(f"{self.seed}/{key}/{candidate}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big")

    def add(self, shard_index: int, shard: Shard, table) -> None:
        import numpy as np

        keys, tasks = table["key"].to_pylist(), table["task"].to_pylist()
        candidates, statuses = table["candidate"].to_pylist(), table["status"].to_pylist()
        reasons = [r or "" for r in table["reason"].to_pylist()]
        for task in tasks:
            self.task(task)
        kept_keys = self.counts.add_manifest(keys, tasks, statuses, reasons)
        for row, (key, task, candidate, status) in enumerate(zip(keys, tasks, candidates, statuses, strict=True)):
            self.tasks[task].statuses[status] += 1
            if self.capacity > 0:  # bottom-k by hash: a uniform sample, the same whatever the shard order
                heap, item = self.heaps[(task, status)], (-self.priority(key, candidate or 0), shard_index, row)
                if len(heap) < self.capacity:
                    heapq.heappush(heap, item)
                elif item > heap[0]:
                    heapq.heapreplace(heap, item)
        if "detail" in table.column_names and any(reason in INPUT_FILE_REASONS for reason in reasons):
            details = table["detail"].to_pylist()
            for reason, detail in zip(reasons, details, strict=True):
                warning = f"an input file cost its samples: {detail}"
                if reason in INPUT_FILE_REASONS and warning not in self.warnings:
                    self.warnings.append(warning)
        for task in tasks:
            self.tasks[task].candidates += 1
        tally = self.task(shard.task)
        tally.shards += 1
        tally.tar_bytes += int((shard.stats.get("tar") or {}).get("bytes") or 0)
        tally.seconds += sum(v for v in (shard.stats.get("timings") or {}).values() if isinstance(v, (int, float)))
        stats = shard.stats
        if (stats.get("kept"), stats.get("candidates")) != (len(kept_keys), len(keys)):
            self.warnings.append(
                f"{shard.name}: stats say {stats.get('kept')} kept of {stats.get('candidates')} candidates, the "
                f"manifest has {len(kept_keys)} of {len(keys)} (run `datagen verify`)"
            )

        if "width" in table.column_names:
            for task, status, width, height in zip(
                tasks, statuses, table["width"].to_pylist(), table["height"].to_pylist(), strict=True
            ):
                if status == "kept" and width and height:
                    self.tasks[task].sizes[f"{width}x{height}"] += 1

        status_array = np.asarray(statuses, dtype=object)
        category = np.full(len(keys), 2, dtype=np.int64)
        category[status_array == "kept"] = 0
        category[(status_array == "rejected") & (np.asarray(reasons, dtype=object) == "outranked")] = 1
        task_array = np.asarray(tasks, dtype=object)
        for name, score in self.scores.items():
            column = f"{SCORE_PREFIX}{name}"
            if column not in table.column_names:
                continue
            values = table[column].to_numpy(zero_copy_only=False).astype(np.float64)
            finite = np.isfinite(values)
            if not finite.any():
                continue
            low, high = score.range
            scaled = (np.where(finite, values, low) - low) / (high - low) * FINE_BINS  # NaN never cast to an int
            bins = np.clip(scaled.astype(np.int64, copy=False), 0, FINE_BINS - 1)
            for task in set(task_array[finite]):
                where = finite & (task_array == task)
                flat = np.bincount(category[where] * FINE_BINS + bins[where], minlength=len(CATEGORIES) * FINE_BINS)
                hist = self.tasks[task].histograms.setdefault(name, np.zeros((len(CATEGORIES), FINE_BINS), np.int64))
                hist += flat.reshape(len(CATEGORIES), FINE_BINS)
                seen = self.tasks[task].extremes.setdefault(name, [math.inf, -math.inf])
                seen[:] = min(seen[0], float(values[where].min())), max(seen[1], float(values[where].max()))

    def sample(self) -> list[tuple[int, int, str, int]]:
        """The gallery: (shard index, row, status, rank) — the budget split evenly over task x status strata."""
        sizes = {stratum: self.tasks[stratum[0]].statuses[stratum[1]] for stratum in self.heaps}
        quotas = split_evenly(sizes, self.capacity)
        chosen = []
        for stratum, heap in sorted(self.heaps.items()):
            best = sorted(heap, reverse=True)[: quotas[stratum]]
            chosen += [(shard_index, row, stratum[1], -negative) for negative, shard_index, row in best]
        return chosen


def split_evenly(sizes: dict[Any, int], budget: int) -> dict[Any, int]:
    """Share `budget` among groups as evenly as their sizes allow (small groups whole, the rest shared out)."""
    quotas = dict.fromkeys(sizes, 0)
    open_groups = sorted(k for k, n in sizes.items() if n > 0)
    left = budget
    while left > 0 and open_groups:
        share = max(1, left // len(open_groups))
        for group in list(open_groups):
            take = min(share, sizes[group] - quotas[group], left)
            quotas[group] += take
            left -= take
            if quotas[group] == sizes[group]:
                open_groups.remove(group)
            if left == 0:
                break
    return quotas


def _number(value: Any) -> float | None:
    return round(float(value), 6) if isinstance(value, (int, float)) and math.isfinite(value) else None


def gallery_entries(run: RunFolder, shards: list[Shard], chosen: list[tuple[int, int, str, int]], scores) -> list:
    """Read back the sampled rows (only their shards' manifests); kept first, then by hash rank (a fair mix)."""
    from datagen.shards.reader import ROW_COLUMNS

    columns = ROW_COLUMNS + ENTRY_COLUMNS
    by_shard: dict[int, list[tuple[int, str, int]]] = defaultdict(list)
    for shard_index, row, status, rank in chosen:
        by_shard[shard_index].append((row, status, rank))
    status_order = {s: i for i, s in enumerate(STATUSES)}
    entries = []
    for shard_index, rows in sorted(by_shard.items()):
        wanted = columns + tuple(f"{SCORE_PREFIX}{name}" for name in scores)
        table = run.manifest(shards[shard_index].name, wanted).take([row for row, _, _ in rows])
        for record, (_, status, rank) in zip(table.to_pylist(), rows, strict=True):
            entry = {name: record.get(name) or "" for name in columns if name not in ("candidate", "objects")}
            entry["candidate"] = record.get("candidate") or 0
            entry["objects"] = [str(o) for o in record.get("objects") or []]
            entry["scores"] = {n: v for n in scores if (v := _number(record.get(f"{SCORE_PREFIX}{n}"))) is not None}
            entry["shard"] = shards[shard_index].name
            entry["thumbs"] = None
            entries.append((status_order.get(status, len(STATUSES)), rank, entry))
    return [entry for _, _, entry in sorted(entries, key=lambda item: item[:2])]


def thumbnails(run: RunFolder, entries: list[dict], warnings: list[str], rejected_tars: set[str]) -> dict[str, bytes]:
    """Decode the sampled candidates' images from their tars (streamed) into small JPEG/PNG files; sets
    entry['thumbs']. Kept pairs come from their shard's tar; the others from its rejected tar, for the shards
    named in `rejected_tars` (rendered with pipeline.keep_rejected); the rest stay without images."""
    import cv2

    from datagen.images import BadImage, decode_member, encode
    from datagen.record import KEY_RE  # keys become file names: only well-formed ones

    wanted: dict[tuple[str, bool], dict[str, dict]] = defaultdict(dict)
    """(shard, from its rejected tar) -> member stem (key, or key.c<candidate> in a rejected tar) -> entry."""
    for entry in entries:
        if not KEY_RE.fullmatch(entry["key"]):
            continue
        if entry["status"] == "kept":
            wanted[(entry["shard"], False)][entry["key"]] = entry
        elif entry["shard"] in rejected_tars:
            wanted[(entry["shard"], True)][f"{entry['key']}.c{int(entry['candidate'])}"] = entry
    files: dict[str, bytes] = {}
    for (shard, rejected), stems in sorted(wanted.items()):
        todo = len(stems) * 3
        tar_name = f"{shard}.rejected.tar" if rejected else f"{shard}.tar"
        try:
            for name, tar, member in run.members(shard, rejected):
                parts = name.rsplit(".", 2)  # an image member: stem, role, extension
                if len(parts) != 3 or parts[0] not in stems or parts[1] not in ("input", "output", "mask"):
                    continue
                stem, role = parts[0], parts[1]
                try:
                    image = decode_member(tar.extractfile(member).read())
                except BadImage as e:
                    warnings.append(f"{tar_name}: {name}: {e}")
                    continue
                height, width = image.shape[:2]
                scale = THUMB_PX / max(height, width)
                if scale < 1:
                    size = (max(1, round(width * scale)), max(1, round(height * scale)))
                    image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
                ext = "png" if role == "mask" else "jpg"
                thumb = f"thumbs/{stem}.{role}.{ext}"
                files[thumb] = encode(image, ext, quality=85)
                stems[stem]["thumbs"] = {**(stems[stem]["thumbs"] or {}), role: thumb}
                todo -= 1
                if todo == 0:
                    break
        except (OSError, tarfile.TarError, EOFError) as e:
            warnings.append(f"{run.shards.url(tar_name)}: unreadable tar ({e}); its thumbnails are missing")
    return files
