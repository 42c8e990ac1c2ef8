"""`datagen report OUT`: one static HTML page to judge a run at a glance.

Counts per task, rejects by reason, every score's histogram against its thresholds, throughput, the shard table,
the resolved configuration, and a paged gallery of input | output | mask with instruction, captions and scores —
kept, rejected and error candidates alike, filterable by task, status and reason and sortable by any score.

The page opens from disk (file://, no server, nothing from the network): its data are `<script src>` files that
push into a global, its JS and CSS (report_assets/) are inlined, and every string from the data reaches the page as
text (Python escapes the static tables; the gallery is built with `textContent`). It stays small for a run of any
size: manifests are streamed shard by shard reading only the columns needed, histograms accumulate into fixed bins,
and the gallery is a deterministic sample — per task x status the candidates whose hash of (seed, key, candidate)
is lowest, the `gallery` budget split evenly — so only sampled rows are read back and only sampled kept pairs are
decoded into thumbnails. OUT may be a local folder or any fsspec URL (s3://bucket/run); the report is written
through the same filesystem.

    datagen report out/remove                     # -> out/remove/report/index.html
    datagen report s3://bucket/run --dest /tmp/run-report
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import html
import io
import json
import math
import re
import tarfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

STATUSES = ("kept", "rejected", "error")
CATEGORIES = ("kept", "outranked", "rejected")
"""Histogram bars: kept; passed every gate but lost the ranking to a sibling candidate; rejected or error."""
FINE_BINS = 2000  # accumulation bins over a score's whole range; plots merge them over the occupied span
PLOT_BINS = 40
THUMB_PX = 128
ROW_COLUMNS = ("key", "task", "candidate", "status", "reason")
ENTRY_COLUMNS = ROW_COLUMNS + ("detail", "instruction", "input_caption", "output_caption", "objects", "params")
COLOURS = {"kept": "#2e8b57", "outranked": "#8da9c4", "rejected": "#d9534f", "attempted": "#d5dbe3"}


@dataclass
class Shard:
    """One committed shard: its stats marker and when it was committed (epoch seconds; None if unknown)."""

    name: str
    task: str
    stats: dict[str, Any]
    committed: float | None


@dataclass
class TaskTally:
    """What the manifests say about one task, accumulated shard by shard."""

    shards: int = 0
    samples: int = 0
    kept: int = 0
    errors: int = 0
    candidates: int = 0
    tar_bytes: int = 0
    seconds: float = 0.0
    reasons: Counter = field(default_factory=Counter)
    """Sample-level: the reason of each sample that kept nothing (its first candidate's, as the runner counts)."""
    candidate_reasons: Counter = field(default_factory=Counter)
    statuses: Counter = field(default_factory=Counter)
    """Candidate rows per status: the gallery's strata."""
    histograms: dict[str, Any] = field(default_factory=dict)
    """Score -> int array (len(CATEGORIES), FINE_BINS) over the score's range."""
    extremes: dict[str, list[float]] = field(default_factory=dict)
    """Score -> [lowest, highest] value seen: exact, where the bins are not."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "shards": self.shards,
            "samples": self.samples,
            "kept": self.kept,
            "rejected": self.samples - self.kept - self.errors,
            "errors": self.errors,
            "candidates": self.candidates,
            "tar_bytes": self.tar_bytes,
            "seconds": round(self.seconds, 3),
            "reasons": dict(sorted(self.reasons.items())),
            "candidate_reasons": dict(sorted(self.candidate_reasons.items())),
            "statuses": dict(sorted(self.statuses.items())),
        }


# ------------------------------------------------------------------------------------------ reading


def _config_error(message: str) -> Exception:
    from datagen.errors import ConfigError

    return ConfigError(message)


def _where(fs, path: str) -> str:
    """A path as the user would write it: plain for local files, a URL otherwise."""
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else fs.protocol
    return path if "file" in protocols else fs.unstrip_protocol(path)


def _timestamp(value: Any) -> float | None:
    """ISO-8601 text, a datetime or epoch seconds -> epoch seconds (naive times are UTC); None if unusable."""
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    return None


def read_run(fs, root: str) -> dict[str, Any]:
    """OUT/run.json, with the single-task layout of older runs turned into {'runs': {task: {'config': ...}}}."""
    path = f"{root}/run.json"
    try:
        record = json.loads(fs.cat_file(path))
    except FileNotFoundError:
        raise _config_error(
            f"{_where(fs, path)}: no such file, so {_where(fs, root)} is not a datagen run folder "
            f"(give the --out of `datagen generate`)"
        ) from None
    except (OSError, ValueError) as e:
        raise _config_error(f"{_where(fs, path)}: unreadable ({e})") from None
    if isinstance(record, dict) and "runs" not in record and isinstance(record.get("config"), dict):
        task = (record["config"].get("task") or {}).get("name", "?")  # a single-task run from before mixtures
        record["runs"] = {task: {"config": record["config"]}}
    if not isinstance(record, dict) or not isinstance(record.get("runs"), dict):
        raise _config_error(f"{_where(fs, path)}: not a datagen run record (no 'runs' object)")
    return record


def committed_shards(fs, root: str) -> tuple[list[Shard], list[str]]:
    """The committed render shards under OUT/shards (sorted by name) and the names of ignored uncommitted files."""
    folder = f"{root}/shards"
    try:
        listing = fs.ls(folder, detail=True)
    except FileNotFoundError:
        listing = []
    infos = {entry["name"].rstrip("/").rsplit("/", 1)[-1]: entry for entry in listing}
    stems = sorted(n[: -len(".stats.json")] for n in infos if n.endswith(".stats.json") and not n.startswith("."))
    if not stems:
        raise _config_error(
            f"{_where(fs, folder)}: no committed shards (no *.stats.json marker): nothing was rendered here yet; "
            f"run `datagen render --out {_where(fs, root)}`"
        )
    paths = [f"{folder}/{stem}.stats.json" for stem in stems]
    contents = fs.cat(paths, on_error="return")  # one batch: concurrent requests on object stores
    found = []
    for stem, path in zip(stems, paths, strict=True):
        try:
            content = contents.get(path, FileNotFoundError(path))
            if isinstance(content, BaseException):
                raise content
            stats = json.loads(content)
            task = stats["task"]
            if not isinstance(task, str):
                raise TypeError("'task' is not a string")
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise _config_error(
                f"{_where(fs, path)}: unreadable stats ({e}); `datagen verify` checks the run"
            ) from None
        info = infos[f"{stem}.stats.json"]
        when = _timestamp(stats.get("committed"))
        for key in ("mtime", "LastModified", "last_modified", "updated", "created"):
            if when is None:
                when = _timestamp(info.get(key))
        found.append(Shard(stem, task, stats, when))
    ignored = sorted(n for n in infos if n.lstrip(".").split(".")[0] not in set(stems))
    return found, ignored


def failed_shards(fs, root: str, limit: int = 20) -> list[str]:
    """One line per shard recorded in OUT/failed/ (it failed after its retries; a rerun retries it)."""
    try:
        paths = sorted(p for p in fs.ls(f"{root}/failed", detail=False) if p.endswith(".json"))
    except FileNotFoundError:
        return []
    lines = []
    for path in paths[:limit]:
        name = path.rsplit("/", 1)[-1][: -len(".json")]
        try:
            body = json.loads(fs.cat_file(path))
            error = str(body.get("error") or "").strip().splitlines()
            lines.append(f"{name}: failed {body.get('phase', '')} after {body.get('attempts', '?')} attempt(s): "
                         f"{error[-1] if error else 'no error recorded'}")  # fmt: skip
        except (OSError, ValueError, AttributeError) as e:
            lines.append(f"{name}: failed (its record is unreadable: {e})")
    if len(paths) > limit:
        lines.append(f"… and {len(paths) - limit} more failed shards in {_where(fs, root)}/failed/")
    return lines


def read_manifest(fs, path: str, wanted: tuple[str, ...]):
    """The `wanted` columns of one parquet manifest that it has (older manifests may lack newer scores)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        # Whole into memory (manifests are small): arrow threads calling back into a Python file object can
        # abort the interpreter at exit when that file is a remote one.
        manifest = pq.ParquetFile(pa.BufferReader(fs.cat_file(path)))
        names = set(manifest.schema_arrow.names)
        missing = [c for c in ROW_COLUMNS if c not in names]
        if missing:
            raise ValueError(f"not a datagen manifest: no column {', '.join(missing)}")
        return manifest.read(columns=[c for c in wanted if c in names], use_threads=False)
    except (OSError, ValueError, pa.ArrowException) as e:
        raise _config_error(
            f"{_where(fs, path)}: unreadable parquet manifest ({e}); `datagen verify` checks the run"
        ) from None


# ------------------------------------------------------------------------------------------ tallying


class RunTally:
    """Counts, histograms and the gallery's sample of one run, fed one manifest at a time."""

    def __init__(self, gallery: int, seed: int):
        from datagen.scores import SCORES

        self.scores = SCORES
        self.capacity, self.seed = gallery, seed
        self.tasks: dict[str, TaskTally] = defaultdict(TaskTally)
        self.heaps: dict[tuple[str, str], list[tuple[int, int, int]]] = defaultdict(list)
        self.warnings: list[str] = []

    def priority(self, key: str, candidate: int) -> int:
        digest = hashlib.blake2b(f"{self.seed}/{key}/{candidate}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big")

    def add(self, shard_index: int, shard: Shard, table) -> None:
        import numpy as np

        keys, tasks = table["key"].to_pylist(), table["task"].to_pylist()
        candidates, statuses = table["candidate"].to_pylist(), table["status"].to_pylist()
        reasons = [r or "" for r in table["reason"].to_pylist()]
        first: dict[str, tuple[str, str]] = {}
        kept_keys = set()
        for row, (key, task, candidate, status, reason) in enumerate(
            zip(keys, tasks, candidates, statuses, reasons, strict=True)
        ):
            first.setdefault(key, (status, reason))
            tally = self.tasks[task]
            tally.statuses[status] += 1
            if reason:
                tally.candidate_reasons[reason] += 1
            if status == "kept":
                kept_keys.add(key)
            if self.capacity > 0:  # bottom-k by hash: a uniform sample, the same whatever the shard order
                heap, item = self.heaps[(task, status)], (-self.priority(key, candidate or 0), shard_index, row)
                if len(heap) < self.capacity:
                    heapq.heappush(heap, item)
                elif item > heap[0]:
                    heapq.heapreplace(heap, item)
        tally = self.tasks[shard.task]
        tally.shards += 1
        tally.samples += len(first)
        tally.kept += len(kept_keys)
        tally.candidates += len(keys)
        tally.errors += sum(1 for status, _ in first.values() if status == "error")
        tally.reasons.update(reason for key, (_, reason) in first.items() if key not in kept_keys)
        tally.tar_bytes += int((shard.stats.get("tar") or {}).get("bytes") or 0)
        tally.seconds += sum(v for v in (shard.stats.get("timings") or {}).values() if isinstance(v, (int, float)))
        stats = shard.stats
        if (stats.get("kept"), stats.get("candidates")) != (len(kept_keys), len(keys)):
            self.warnings.append(
                f"{shard.name}: stats say {stats.get('kept')} kept of {stats.get('candidates')} candidates, the "
                f"manifest has {len(kept_keys)} of {len(keys)} (run `datagen verify`)"
            )

        status_array = np.asarray(statuses, dtype=object)
        category = np.full(len(keys), 2, dtype=np.int64)
        category[status_array == "kept"] = 0
        category[(status_array == "rejected") & (np.asarray(reasons, dtype=object) == "outranked")] = 1
        task_array = np.asarray(tasks, dtype=object)
        for name, score in self.scores.items():
            column = f"score_{name}"
            if column not in table.column_names:
                continue
            values = table[column].to_numpy(zero_copy_only=False).astype(np.float64)
            finite = np.isfinite(values)
            if not finite.any():
                continue
            low, high = score.range
            bins = np.clip(((values - low) / (high - low) * FINE_BINS).astype(np.int64, copy=False), 0, FINE_BINS - 1)
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


def gallery_entries(fs, root: str, shards: list[Shard], chosen: list[tuple[int, int, str, int]], scores) -> list:
    """Read back the sampled rows (only their shards' manifests); kept first, then by hash rank (a fair mix)."""
    by_shard: dict[int, list[tuple[int, str, int]]] = defaultdict(list)
    for shard_index, row, status, rank in chosen:
        by_shard[shard_index].append((row, status, rank))
    status_order = {s: i for i, s in enumerate(STATUSES)}
    entries = []
    for shard_index, rows in sorted(by_shard.items()):
        path = f"{root}/shards/{shards[shard_index].name}.parquet"
        wanted = ENTRY_COLUMNS + tuple(f"score_{name}" for name in scores)
        table = read_manifest(fs, path, wanted).take([row for row, _, _ in rows])
        for record, (_, status, rank) in zip(table.to_pylist(), rows, strict=True):
            entry = {name: record.get(name) or "" for name in ENTRY_COLUMNS if name not in ("candidate", "objects")}
            entry["candidate"] = record.get("candidate") or 0
            entry["objects"] = [str(o) for o in record.get("objects") or []]
            entry["scores"] = {n: v for n in scores if (v := _number(record.get(f"score_{n}"))) is not None}
            entry["shard"] = shards[shard_index].name
            entry["thumbs"] = None
            entries.append((status_order.get(status, len(STATUSES)), rank, entry))
    return [entry for _, _, entry in sorted(entries, key=lambda item: item[:2])]


def thumbnails(fs, root: str, entries: list[dict], warnings: list[str]) -> dict[str, bytes]:
    """Decode the sampled kept pairs from their tars (streamed) into small JPEG/PNG files; sets entry['thumbs']."""
    import cv2

    from datagen.images import BadImage, decode_member, encode
    from datagen.record import KEY_RE  # keys become file names: only well-formed ones

    wanted: dict[str, dict[str, dict]] = defaultdict(dict)
    for entry in entries:
        if entry["status"] == "kept" and KEY_RE.fullmatch(entry["key"]):
            wanted[entry["shard"]][entry["key"]] = entry
    files: dict[str, bytes] = {}
    for shard, keyed in sorted(wanted.items()):
        path, todo = f"{root}/shards/{shard}.tar", len(keyed) * 3
        try:
            with fs.open(path, "rb") as f, tarfile.open(fileobj=f, mode="r|") as tar:
                for member in tar:
                    key, _, suffix = member.name.partition(".")
                    role = suffix.split(".")[0]
                    if key not in keyed or role not in ("input", "output", "mask") or not member.isfile():
                        continue
                    try:
                        image = decode_member(tar.extractfile(member).read())
                    except BadImage as e:
                        warnings.append(f"{shard}.tar: {member.name}: {e}")
                        continue
                    height, width = image.shape[:2]
                    scale = THUMB_PX / max(height, width)
                    if scale < 1:
                        size = (max(1, round(width * scale)), max(1, round(height * scale)))
                        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
                    ext = "png" if role == "mask" else "jpg"
                    name = f"thumbs/{key}.{role}.{ext}"
                    files[name] = encode(image, ext, quality=85)
                    keyed[key]["thumbs"] = {**(keyed[key]["thumbs"] or {}), role: name}
                    todo -= 1
                    if todo == 0:
                        break
        except (OSError, tarfile.TarError, EOFError) as e:
            warnings.append(f"{_where(fs, path)}: unreadable tar ({e}); its thumbnails are missing")
    return files


# ------------------------------------------------------------------------------------------ plots


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.spines.top": False, "axes.spines.right": False})
    return plt


def _plain(text: str) -> str:
    """Data as matplotlib text: a '$' would start mathtext (and can fail to parse)."""
    return str(text).replace("$", r"\$")


def plot_kept(tasks: dict[str, dict]) -> bytes:
    """Kept of attempted per task (horizontal bars, share written at the end)."""
    plt = _pyplot()
    names = sorted(tasks, reverse=True)
    fig, ax = plt.subplots(figsize=(5.6, 0.9 + 0.28 * len(names)))
    attempted = [tasks[n]["samples"] for n in names]
    kept = [tasks[n]["kept"] for n in names]
    labels = [_plain(n) for n in names]
    ax.barh(labels, attempted, color=COLOURS["attempted"], label="attempted")
    ax.barh(labels, kept, color=COLOURS["kept"], label="kept")
    for y, (a, k) in enumerate(zip(attempted, kept, strict=True)):
        ax.text(a, y, f" {k}/{a} ({k / a:.0%})" if a else " 0", va="center", fontsize=8)
    ax.set_xlim(0, max(attempted + [1]) * 1.3)
    ax.set_title("kept (green) of attempted (grey) samples per task", loc="left")
    return _png(fig)


def plot_reasons(reasons: Counter) -> bytes:
    """Samples that kept nothing, by reason (the 15 most common; the rest summed as 'other')."""
    plt = _pyplot()
    top = [(_plain(reason or "(none)"), n) for reason, n in reasons.most_common(15)]
    rest = sum(reasons.values()) - sum(n for _, n in top)
    if rest:
        top.append(("other", rest))
    fig, ax = plt.subplots(figsize=(5.6, 0.9 + 0.28 * max(1, len(top))))
    if top:
        labels, counts = zip(*reversed(top), strict=True)
        ax.barh(labels, counts, color=COLOURS["rejected"])
        for y, n in enumerate(counts):
            ax.text(n, y, f" {n}", va="center", fontsize=8)
        ax.set_xlim(0, max(counts) * 1.15)
    else:
        ax.text(0.5, 0.5, "no sample was rejected", ha="center", va="center", transform=ax.transAxes)
        ax.set_yticks([])
    ax.set_title("rejected samples by reason", loc="left")
    return _png(fig)


def plot_throughput(shards: list[Shard], created: float | None, height: float = 3.0) -> bytes:
    """Samples attempted and kept, cumulative, against the wall-clock time their shards were committed."""
    plt = _pyplot()
    import matplotlib.dates as mdates

    timed = sorted((s.committed, s.stats.get("samples") or 0, s.stats.get("kept") or 0) for s in shards if s.committed)
    fig, ax = plt.subplots(figsize=(5.6, height))
    if timed:
        start = created if created is not None and created <= timed[0][0] else timed[0][0]
        times = [datetime.fromtimestamp(t, UTC) for t in [start] + [t for t, _, _ in timed]]
        attempted, kept = [0], [0]
        for _, samples, k in timed:
            attempted.append(attempted[-1] + samples)
            kept.append(kept[-1] + k)
        ax.step(times, attempted, where="post", color="#5b6f8a", label="attempted")
        ax.step(times, kept, where="post", color=COLOURS["kept"], label="kept")
        span = timed[-1][0] - start
        rate = f"{attempted[-1] / span * 3600:,.0f} samples/h over {_duration(span)}" if span > 0 else "one instant"
        ax.set_title(f"samples committed over time ({rate})", loc="left")
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S" if span < 86400 else "%m-%d %H:%M"))
        ax.legend(loc="upper left", frameon=False, fontsize=8)
        fig.autofmt_xdate()
    else:
        ax.text(0.5, 0.5, "no commit times", ha="center", va="center", transform=ax.transAxes)
        ax.set_title("samples committed over time", loc="left")
    ax.set_xlabel("commit time (UTC)")
    return _png(fig)


def _bin_range(hist, thresholds: list[float], low: float, high: float) -> tuple[int, int, int]:
    """Fine-bin span holding the data and the thresholds, and how many fine bins make one plotted bar."""
    import numpy as np

    occupied = np.flatnonzero(hist.sum(axis=0))
    first, last = int(occupied[0]), int(occupied[-1]) + 1
    for value in thresholds:
        index = int((value - low) / (high - low) * FINE_BINS)
        first, last = min(first, max(0, index - 1)), max(last, min(FINE_BINS, index + 2))
    group = max(1, math.ceil((last - first) / PLOT_BINS))
    width = math.ceil((last - first) / group) * group  # a whole number of bars, never more than FINE_BINS
    first = max(0, min(first, FINE_BINS - width))
    return first, first + width, group


def plot_scores(task: str, tally: TaskTally, filters: dict[str, dict], enforced: bool, scores) -> tuple[bytes, str]:
    """One panel per score of the task: stacked histogram by outcome, its thresholds as labelled lines.

    Returns the PNG and a note naming the scores left out because they are constant and ungated.
    """
    import numpy as np

    plt = _pyplot()
    names = list(dict.fromkeys([n for n in filters if n in tally.histograms] + list(tally.histograms)))
    gates = {n: [(b, v) for b in ("min", "max") if (v := (filters.get(n) or {}).get(b)) is not None] for n in names}
    constant = [n for n in names if not gates[n] and tally.extremes[n][0] == tally.extremes[n][1]]
    names = [n for n in names if n not in constant]  # a constant score without a gate is a note, not a panel
    columns = 3  # always: every task's figure has the same width, so the page shows them at the same scale
    rows = max(1, math.ceil(len(names) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(2.9 * columns, 0.4 + 2.1 * rows), squeeze=False)
    for ax in axes.flat[len(names) :]:
        ax.set_visible(False)
    for ax, name in zip(axes.flat, names, strict=False):
        hist, spec, bounds = tally.histograms[name], filters.get(name) or {}, gates[name]
        low, high = scores[name].range
        first, last, group = _bin_range(hist, [v for _, v in bounds], low, high)
        merged = hist[:, first:last].reshape(len(CATEGORIES), -1, group).sum(axis=2)
        width = (high - low) / FINE_BINS * group
        lefts = low + (first + np.arange(merged.shape[1]) * group) * (high - low) / FINE_BINS
        bottom = np.zeros(merged.shape[1])
        for i, category in enumerate(CATEGORIES):
            ax.bar(lefts, merged[i], width=width, bottom=bottom, align="edge", color=COLOURS[category], label=category)
            bottom += merged[i]
        active = enforced and spec.get("enabled", True)
        x0, x1 = ax.get_xlim()
        for bound, value in bounds:
            ax.axvline(value, color="#222" if active else "#999", linestyle="--", linewidth=1)
            label = f"{bound} {value:g}" + ("" if active else " (off)")
            left = (value - x0) / (x1 - x0) < 0.6  # the label on the side with room
            ax.annotate(label, (value, 1), xycoords=("data", "axes fraction"), xytext=(3 if left else -3, -2),
                        textcoords="offset points", ha="left" if left else "right", va="top", fontsize=7,
                        color="#222" if active else "#888")  # fmt: skip
        gate = "" if bounds else " · no gate"
        ax.set_title(f"{name} · {int(hist.sum()):,} scored{gate}", fontsize=8.5, loc="left")
        ax.tick_params(labelsize=7)
        ax.ticklabel_format(axis="x", useOffset=False)
    if names:
        handles, labels = axes.flat[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="upper right", ncol=3, frameon=False, fontsize=8)
    else:
        axes.flat[0].set_visible(True)
        axes.flat[0].axis("off")
        axes.flat[0].text(0, 0.5, "no score varies", fontsize=9, color="#666")
    fig.suptitle(_plain(task), x=0.01, ha="left", fontsize=10, fontweight="bold")
    fig.tight_layout(rect=(0, 0, 1, 0.9 if rows == 1 else 0.95))
    note = ", ".join(f"{n} = {tally.extremes[n][0]:g}" for n in constant)
    return _png(fig), f"constant, no gate: {note}" if note else ""


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# ------------------------------------------------------------------------------------------ page


def _asset(name: str) -> str:
    """The page's stylesheet or script (datagen/report_assets/), inlined so the page is one file plus data."""
    from importlib.resources import files

    return files("datagen").joinpath("report_assets", name).read_text(encoding="utf-8")


def _js(value: Any) -> str:
    """JSON safe inside <script> and .js files: '<', '>', '&' and line separators only as \\u escapes."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for char in "<>&\u2028\u2029":
        text = text.replace(char, f"\\u{ord(char):04x}")
    return text


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _count(task: str, name: str, value: int) -> str:
    return f'<td class="num" data-task="{_e(task)}" data-count="{name}">{value:,}</td>'


def _share(part: int, whole: int) -> str:
    share = part / whole if whole else 0.0
    return f'<td class="num"><span class="bar"><i style="width:{share * 100:.1f}%"></i></span>{share:.1%}</td>'


def _reasons_text(reasons: dict[str, int], limit: int = 3) -> str:
    top = sorted(reasons.items(), key=lambda item: (-item[1], item[0]))
    text = " · ".join(f"{reason} {n:,}" for reason, n in top[:limit])
    return text + (f" · +{len(top) - limit} more" if len(top) > limit else "")


def _task_table(tasks: dict[str, dict], total: dict) -> str:
    head = ("task", "shards", "attempted", "kept", "kept %", "rejected", "errors", "candidates", "tar", "render time",
            "top reject reasons")  # fmt: skip
    rows = []
    for task, t in [*sorted(tasks.items()), ("all", total)]:
        rows.append(
            f"<tr{' class=total' if task == 'all' and t is total else ''}><th>{_e(task)}</th>"
            + "".join(_count(task, name, t[name]) for name in ("shards", "samples", "kept"))
            + _share(t["kept"], t["samples"])
            + "".join(_count(task, name, t[name]) for name in ("rejected", "errors", "candidates"))
            + f'<td class="num">{_bytes(t["tar_bytes"])}</td><td class="num">{_duration(t["seconds"])}</td>'
            + f"<td>{_e(_reasons_text(t['reasons']))}</td></tr>"
        )
    return _table(head, rows, "tasks")


def _reason_table(tasks: dict[str, dict], total: dict) -> str:
    head = ("reason", "samples", "% of attempted", "candidates", "by task")
    rows = []
    for reason, n in sorted(total["reasons"].items(), key=lambda item: (-item[1], item[0])):
        per_task = {task: t["reasons"][reason] for task, t in tasks.items() if t["reasons"].get(reason)}
        rows.append(
            f'<tr><th>{_e(reason)}</th><td class="num" data-reason="{_e(reason)}" data-count="samples">{n:,}</td>'
            f"{_share(n, total['samples'])}"
            f'<td class="num">{total["candidate_reasons"].get(reason, 0):,}</td>'
            f"<td>{_e(_reasons_text(per_task, 6))}</td></tr>"
        )
    for reason, n in sorted(total["candidate_reasons"].items()):
        if reason not in total["reasons"]:  # candidates only, e.g. outranked: their sample kept another candidate
            rows.append(f'<tr class="muted"><th>{_e(reason)}</th><td class="num">0</td><td></td>'
                        f'<td class="num">{n:,}</td><td>candidates only</td></tr>')  # fmt: skip
    return _table(head, rows, "reasons") if rows else "<p>No sample was rejected.</p>"


def _shard_table(shards: list[Shard]) -> str:
    head = ("shard", "task", "samples", "candidates", "kept", "errors", "tar bytes", "tar sha256", "committed (UTC)")
    rows = []
    for shard in shards:
        stats, tar = shard.stats, shard.stats.get("tar") or {}
        sha = str(tar.get("sha256") or "")
        when = datetime.fromtimestamp(shard.committed, UTC).strftime("%Y-%m-%d %H:%M:%S") if shard.committed else ""
        rows.append(
            f"<tr><th>{_e(shard.name)}</th><td>{_e(shard.task)}</td>"
            + "".join(
                f'<td class="num">{_e(stats.get(k, ""))}</td>' for k in ("samples", "candidates", "kept", "errors")
            )
            + f'<td class="num">{_e(tar.get("bytes", ""))}</td><td class="mono" title="{_e(sha)}">{_e(sha[:12])}</td>'
            + f"<td>{when}</td></tr>"
        )
    return _table(head, rows, "shards")


def _table(head: tuple[str, ...], rows: list[str], name: str) -> str:
    cells = "".join(f"<th>{_e(h)}</th>" for h in head)
    return (
        f'<table class="data" id="table-{name}"><thead><tr>{cells}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )


def _bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return ""


def _card(label: str, value: str, note: str = "") -> str:
    return (
        f'<div class="card"><div class="label">{_e(label)}</div><div class="value">{_e(value)}</div>'
        + (f'<div class="note" title="{_e(note)}">{_e(note)}</div>' if note else "")
        + "</div>"
    )


def render_page(context: dict[str, Any]) -> str:
    """index.html: static tables (escaped here), plot images, then the gallery's data files and its script."""
    record, total, tasks = context["record"], context["total"], context["tasks"]
    versions = record.get("versions") or {}
    title = f"datagen report · {context['where']}"
    share = total["kept"] / total["samples"] if total["samples"] else 0.0
    cards = "".join(
        [
            _card("kept", f"{total['kept']:,} of {total['samples']:,}", f"{share:.1%} of attempted samples"),
            _card("tasks", f"{len(tasks)}", ", ".join(sorted(tasks))),
            _card("shards", f"{total['shards']:,}", f"{context['ignored']} uncommitted files ignored"),
            _card("candidates", f"{total['candidates']:,}", f"{total['errors']:,} samples with errors"),
            _card(
                "tar size",
                _bytes(total["tar_bytes"]),
                f"{_bytes(total['tar_bytes'] / max(1, total['kept']))} per kept pair",
            ),
            _card("throughput", context["throughput"][0], context["throughput"][1]),
        ]
    )
    warnings = "".join(f"<li>{_e(w)}</li>" for w in context["warnings"][:50])
    if len(context["warnings"]) > 50:
        warnings += f"<li>… and {len(context['warnings']) - 50} more</li>"
    overview = [f'<figure><img src="{_e(src)}" alt="{_e(alt)}"></figure>' for src, alt in context["overview_plots"]]
    score_plots = "".join(
        f'<figure><img src="{_e(src)}" alt="scores of {_e(task)}">'
        + (f"<figcaption>{_e(note)}</figcaption>" if note else "")
        + "</figure>"
        for task, src, note in context["score_plots"]
    )
    scripts = "".join(f'<script src="{_e(name)}"></script>' for name in context["pages"])
    meta = _js(context["meta"])
    config = _e(json.dumps(record, indent=1, sort_keys=True, ensure_ascii=False))
    about = (
        f"{_e(context['where'])} · created {_e(record.get('created', '?'))} · seed {_e(record.get('seed', '?'))} · "
        f"datagen {_e(versions.get('datagen', '?'))} · report built {_e(context['built'])}"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title><style>{_asset("report.css")}</style></head>
<body>
<header><div class="wrap"><h1>datagen run report</h1><div class="about">{about}</div>
<nav><a href="#summary">Summary</a><a href="#reasons">Rejects</a><a href="#plots">Throughput</a>
<a href="#scores">Scores</a><a href="#gallery">Gallery</a>
<a href="#shards">Shards</a><a href="#config">Configuration</a></nav></div></header>
<main class="wrap">
{f'<section class="warnings"><h2>Warnings</h2><ul>{warnings}</ul></section>' if warnings else ""}
<section id="summary"><div class="cards">{cards}</div><h2>Per task</h2>{_task_table(tasks, total)}</section>
<section id="reasons"><h2>Rejects by reason</h2><div class="split"><div>{_reason_table(tasks, total)}</div>
{overview[1]}</div></section>
<section id="plots"><h2>Throughput and yield</h2><div class="grid">{overview[0]}{overview[2]}</div></section>
<section id="scores"><h2>Scores against thresholds</h2><p class="hint">Every candidate's score, stacked by outcome:
kept, outranked (passed every gate, a sibling candidate scored better) and rejected. Dashed lines are the task's
gates; "(off)" marks a gate that is not enforced.</p><div class="grid wide">{score_plots}</div></section>
<section id="gallery"><h2>Gallery</h2><p class="hint" id="gallery-note"></p>
<div class="controls">
<label>task <select id="f-task"></select></label><label>status <select id="f-status"></select></label>
<label>reason <select id="f-reason"></select></label><label>sort by <select id="sort"></select></label>
<label>order <select id="sort-dir"><option value="desc">high → low</option><option value="asc">low → high</option>
</select></label><span class="pager"><button id="prev" type="button">← prev</button>
<span id="page-info"></span><button id="next" type="button">next →</button></span></div>
<div id="pairs"></div>
<div class="controls bottom"><span class="pager"><button id="prev-bottom" type="button">← prev</button>
<button id="next-bottom" type="button">next →</button></span></div></section>
<section id="shards"><details{" open" if total["shards"] <= 40 else ""}><summary><h2>Shards ({total["shards"]:,})</h2>
</summary>{_shard_table(context["shards"])}</details></section>
<section id="config"><details><summary><h2>Configuration (run.json)</h2></summary><pre>{config}</pre></details>
</section>
</main>
<script>window.DATAGEN_META = {meta};</script>
{scripts}
<script>{_asset("report.js")}</script>
</body></html>
"""


# ------------------------------------------------------------------------------------------ report


def build_report(
    out: str, dest: str | None = None, gallery: int = 2000, page_size: int = 100, seed: int = 0, progress: bool = True
) -> str:
    """Write OUT/report/index.html (or DEST/index.html) and its assets; returns where index.html is."""
    import fsspec

    from datagen.progress import Progress

    if gallery < 0 or page_size < 1:
        raise _config_error(f"--gallery {gallery} / --page-size {page_size}: need gallery >= 0 and page size >= 1")
    fs, root = fsspec.core.url_to_fs(out)
    root = root.rstrip("/")
    fs.invalidate_cache()
    record = read_run(fs, root)
    shards, ignored = committed_shards(fs, root)
    tally = RunTally(gallery, seed)
    tally.warnings += failed_shards(fs, root)
    with Progress(len(shards), "report: manifests", unit="shard", enabled=progress) as bar:
        for index, shard in enumerate(shards):
            wanted = ROW_COLUMNS + tuple(f"score_{name}" for name in tally.scores)
            tally.add(index, shard, read_manifest(fs, f"{root}/shards/{shard.name}.parquet", wanted))
            bar.update(1)
    entries = gallery_entries(fs, root, shards, tally.sample(), tally.scores)
    files = thumbnails(fs, root, entries, tally.warnings)
    for entry in entries:
        del entry["shard"]

    tasks = {task: t.as_dict() for task, t in sorted(tally.tasks.items())}
    counted = ("shards", "samples", "kept", "rejected", "errors", "candidates", "tar_bytes", "seconds")
    total: dict[str, Any] = {name: sum(t[name] for t in tasks.values()) for name in counted}
    for name in ("reasons", "candidate_reasons", "statuses"):
        total[name] = dict(sum((Counter(t[name]) for t in tasks.values()), Counter()))
    runs = record["runs"]
    configs = {task: (runs.get(task) or {}).get("config") or {} for task in tasks}
    filters = {task: (c.get("task") or {}).get("filters") or {} for task, c in configs.items()}
    enforced = {task: (c.get("pipeline") or {}).get("enforce_filters", True) for task, c in configs.items()}
    created = _timestamp(record.get("created"))

    files["plots/kept.png"] = plot_kept(tasks)
    files["plots/reasons.png"] = plot_reasons(Counter(total["reasons"]))
    files["plots/throughput.png"] = plot_throughput(shards, created, height=max(3.0, 0.9 + 0.28 * len(tasks)))
    score_plots = []
    for i, (task, t) in enumerate(sorted(tally.tasks.items()), 1):
        if t.histograms:
            name = (
                f"plots/scores-{i:02d}-{task}.png"
                if re.fullmatch(r"[a-z0-9_]{1,40}", task)
                else f"plots/scores-{i:02d}.png"
            )
            files[name], note = plot_scores(task, t, filters[task], enforced[task], tally.scores)
            score_plots.append((task, name, note))

    pages = []
    for start in range(0, len(entries), page_size):
        name = f"data/page-{len(pages) + 1:04d}.js"
        chunk = _js(entries[start : start + page_size])
        files[name] = f"(window.DATAGEN_PAGES = window.DATAGEN_PAGES || []).push({chunk});\n".encode()
        pages.append(name)
    timed = sorted(s.committed for s in shards if s.committed)
    throughput = ("–", "no commit times")
    if timed:
        start = created if created is not None and created <= timed[0] else timed[0]
        span = timed[-1] - start
        if span > 0:
            throughput = (
                f"{total['samples'] / span * 3600:,.0f}",
                f"samples/h over {_duration(span)}",
            )
    strata = {f"{task}/{status}": n for task, t in tasks.items() for status, n in t["statuses"].items()}
    meta = {
        "tasks": sorted(tasks),
        "statuses": [s for s in STATUSES if total["statuses"].get(s)] + sorted(set(total["statuses"]) - set(STATUSES)),
        "reasons": sorted(total["candidate_reasons"]),
        "scores": [name for name in tally.scores if any(name in t.histograms for t in tally.tasks.values())],
        "filters": {task: {k: v for k, v in f.items() if isinstance(v, dict)} for task, f in filters.items()},
        "enforced": enforced,
        "page_size": page_size,
        "strata": strata,
        "gallery": gallery,
    }
    summary = {
        "out": out,
        "tasks": tasks,
        "total": total,
        "gallery": {"entries": len(entries), "pages": len(pages), "strata": strata},
        "shards": [{"name": s.name, "task": s.task, "committed": s.committed} for s in shards],
        "warnings": tally.warnings,
    }
    files["summary.json"] = json.dumps(summary, indent=1, sort_keys=True).encode()
    context = {
        "record": record,
        "where": _where(fs, root),
        "built": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
        "tasks": tasks,
        "total": total,
        "shards": shards,
        "ignored": len(ignored),
        "warnings": tally.warnings,
        "throughput": throughput,
        "overview_plots": [
            ("plots/kept.png", "kept per task"),
            ("plots/reasons.png", "rejects by reason"),
            ("plots/throughput.png", "throughput"),
        ],
        "score_plots": score_plots,
        "pages": pages,
        "meta": meta,
    }
    files["index.html"] = render_page(context).encode()
    return write_files(fs, root, dest, files)


STALE = re.compile(r"^(data/page-\d{4}\.js|plots/[a-z0-9_-]+\.png|thumbs/[a-z0-9_]+\.(input|output|mask)\.(jpg|png))$")
"""Files an earlier report wrote that this one may not rewrite (fewer pages, another sample): removed first."""


def write_files(fs, root: str, dest: str | None, files: dict[str, bytes]) -> str:
    """Write the report's files under DEST (default OUT/report), index.html last; returns where index.html is."""
    import fsspec

    if dest is None:
        target_fs, target = fs, f"{root}/report"
    else:
        target_fs, target = fsspec.core.url_to_fs(dest)
        target = target.rstrip("/")
    target_fs.invalidate_cache()
    for folder in ("data", "plots", "thumbs"):
        path = f"{target}/{folder}"
        if target_fs.isdir(path):
            for old in target_fs.ls(path, detail=False):
                if (
                    STALE.match(f"{folder}/{old.rstrip('/').rsplit('/', 1)[-1]}")
                    and f"{folder}/{old.rsplit('/', 1)[-1]}" not in files
                ):
                    target_fs.rm_file(old)
        target_fs.makedirs(path, exist_ok=True)
    for name, data in sorted(files.items(), key=lambda item: item[0] == "index.html"):
        target_fs.pipe_file(f"{target}/{name}", data)
    return _where(target_fs, f"{target}/index.html")


# ------------------------------------------------------------------------------------------ command line


def add_parser(sub) -> argparse.ArgumentParser:
    """Add `report` to the `datagen` subcommands."""
    text = "write a static HTML report of a run: counts, reject reasons, score histograms, throughput, gallery"
    parser = sub.add_parser("report", help=text, description=__doc__.split("\n\n")[0] + " " + text + ".",
                            formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("out", help="run folder: a path or any fsspec URL (s3://bucket/run)")
    parser.add_argument("--dest", help="report folder (default: OUT/report); a path or URL")
    parser.add_argument("--gallery", type=int, default=2000, help="sampled candidates in the gallery (default: 2000)")
    parser.add_argument("--page-size", type=int, default=100, help="gallery entries per page (default: 100)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the gallery's sample (default: 0)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def run(args: argparse.Namespace) -> int:
    """`datagen report`: build the report, say where it is and how to open it."""
    index = build_report(
        args.out, args.dest, gallery=args.gallery, page_size=args.page_size, seed=args.seed,
        progress=not args.no_progress,
    )  # fmt: skip
    print(f"report: {index}")
    if "://" in index:
        print("  copy its folder to this machine to open it (it needs no server): the page loads files next to it")
    else:
        from pathlib import Path

        print(f"  open it: file://{Path(index).resolve()}")
    return 0
