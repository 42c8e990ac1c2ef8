"""`datagen curate`: photos gated and deduplicated into a curated set that `--source curated` reads.

Each input photo is decoded as stored and looked at — its scores (size, shape, blur; the nsfw and aesthetic roles';
the ocr role's text area where a gate asks for it) and perceptual hashes — and the pipeline's gates (`curate:` in
pipelines/*.yaml) keep it or drop it with a reason, like a candidate. The inputs go in shards, each committed by its
marker as the render's are (a rerun redoes only the uncommitted ones), inline or as Ray tasks; then the
near-duplicates among the kept inputs of all shards are found (datagen/dedup.py, in this process or on Ray Data) and
committed. The set's layout and its reading: datagen/sources/curated.py; its report: datagen/report/curation.py.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from datagen import dedup
from datagen.config import CurateSpec, PipelineSpec, validate
from datagen.lease import check_held
from datagen.scores import CURATION_SCORES, SCORE_PREFIX
from datagen.shards.curated import (
    CURATE,
    DUPLICATES,
    DUPLICATES_MARKER,
    INPUTS,
    committed_inputs,
    input_key,
    input_paths,
    pending_inputs,
    start_curation,
)
from datagen.shards.layout import STATS, clear_uncommitted, write_stats
from datagen.storage import Folder

if TYPE_CHECKING:
    from datagen.config import FilterSpec

BLUR_EDGE = 512
"""Long side (pixels) the blur effect is measured at: larger inputs are shrunk first, so it does not grow with
resolution; smaller ones are measured as they are."""


def blur_effect(image: np.ndarray) -> float:
    """Crete et al.'s no-reference blur effect in [0, 1] of an RGB (or grey) uint8 image."""
    from skimage.measure import blur_effect as crete

    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    scale = BLUR_EDGE / max(grey.shape)
    if scale < 1:
        grey = cv2.resize(
            grey,
            (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale))),
            interpolation=cv2.INTER_AREA,
        )
    return round(float(crete(grey)), 6)


def measure(image: np.ndarray) -> dict[str, float]:
    """The scores an input's pixels alone give: short_side, aspect, blur."""
    height, width = image.shape[:2]
    return {
        "short_side": float(min(height, width)),
        "aspect": round(max(height, width) / max(1, min(height, width)), 6),
        "blur": blur_effect(image),
    }


CURATION_ROLES = {"nsfw": "nsfw", "aesthetic": "aesthetic", "ocr": "text_area"}
"""Roles the curate phase scores inputs with, where the pipeline has them -> the score each gives. The ocr role
(slow on the CPU: 0.4-1.4 s a photo) is used only where the pipeline gates on its score."""


def text_area(lines, shape: tuple[int, ...]) -> float:
    """The share of an image (height, width, ...) the quadrilaterals of the text lines read in it cover."""
    height, width = shape[:2]
    scale = min(1.0, 512 / max(height, width))
    canvas = np.zeros((max(1, round(height * scale)), max(1, round(width * scale))), np.uint8)
    for line in lines:
        quad = np.round(np.asarray(line.quad, np.float64) * scale).astype(np.int32)
        cv2.fillPoly(canvas, [quad], 1)
    return round(float(canvas.mean()), 6)


def curation_roles(pipeline) -> list[str]:
    """The CURATION_ROLES this pipeline scores its inputs with: those it has (ocr only where a gate needs it)."""
    return [
        role
        for role, score in CURATION_ROLES.items()
        if role in pipeline.roles and (role != "ocr" or score in pipeline.curate)
    ]


def look(images: Sequence[np.ndarray], roles: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Each input's scores (with each of CURATION_ROLES given: one batched call each) and hashes."""
    out = [{"scores": measure(image), "hashes": dedup.image_hashes(image)} for image in images]
    for name, role in (roles or {}).items():
        if name == "ocr":
            scores = [
                text_area(lines, image.shape) for lines, image in zip(role.read_batch(images), images, strict=True)
            ]
        else:
            scores = role.score_batch(images)
        for item, score in zip(out, scores, strict=True):
            item["scores"][CURATION_ROLES[name]] = score
    return out


def gate(scores: Mapping[str, float], gates: Mapping[str, FilterSpec]) -> str:
    """'' to keep the input, else the reason of the first gate it fails, in the order of CURATION_SCORES (as
    filters.gate does for candidates)."""
    from datagen.filters import gate as gate_scores

    return gate_scores(dict(scores), dict(gates), order=CURATION_SCORES)


# ------------------------------------------------------------------------------------------------ the phase


def _settings(spec: CurateSpec, pipeline, count: int) -> dict[str, Any]:
    """What curate.json records: a rerun with other settings is refused."""
    gates = {name: gate.model_dump(exclude_defaults=True) for name, gate in pipeline.curate.items()}
    return {
        "source": spec.source,
        "input": str(spec.input),
        "pipeline": pipeline.name,
        "gates": gates,
        "shard_size": spec.shard_size,
        "inputs": count,
    }


def curate_shard(source, number: int, shard_size: int, gates, roles, max_pixels: int) -> tuple[bytes, dict]:
    """One input shard's rows as parquet bytes, and its stats: each input decoded as stored, looked at, gated."""
    import json

    import pyarrow as pa

    from datagen.errors import Reject
    from datagen.images import BadImage
    from datagen.shards.layout import to_parquet
    from datagen.sources import INPUT_ERROR

    start = number * shard_size
    refs = [source.ref(0, index) for index in range(start, min(len(source), start + shard_size))]
    rows = []
    for k, ref in enumerate(refs):  # one photo decoded at a time: a shard of full-size photos is never held whole
        failed, detail, item, height, width = "", "", {"scores": {}, "hashes": (0,) * dedup.HASHES}, 0, 0
        try:
            image = source.original(ref, max_pixels)
        except (Reject, BadImage) as e:
            failed, detail = e.reason, str(e)[:500]
        except Exception as e:  # noqa: BLE001  whatever one input raises is its own failure, not the shard's
            failed, detail = INPUT_ERROR, f"{type(e).__name__}: {e}"[:500]
        else:
            (item,), (height, width) = look([image], roles), image.shape[:2]
            del image
        rows.append(
            {
                "key": input_key(number, k),
                "index": start + k,
                "ref": json.dumps(ref, sort_keys=True),
                "width": width,
                "height": height,
                "reason": failed or gate(item["scores"], gates),
                "detail": detail,
                **{f"{SCORE_PREFIX}{name}": item["scores"].get(name) for name in CURATION_SCORES},
                "hashes": dedup.to_words(item["hashes"]),
            }
        )
    data = to_parquet(pa.Table.from_pylist(rows, schema=INPUT_SCHEMA))
    reasons = Counter(row["reason"] for row in rows if row["reason"])
    stats = {
        "shard": number,
        "inputs": len(rows),
        "kept": len(rows) - sum(reasons.values()),
        "reasons": dict(sorted(reasons.items())),
    }
    return data, stats


def _input_schema():
    import pyarrow as pa

    fields = [
        ("key", pa.string()),
        ("index", pa.int64()),
        ("ref", pa.string()),
        ("width", pa.int64()),
        ("height", pa.int64()),
        ("reason", pa.string()),
        ("detail", pa.string()),
    ]
    fields += [(f"{SCORE_PREFIX}{name}", pa.float64()) for name in CURATION_SCORES]
    fields.append(("hashes", pa.list_(pa.int64())))
    return pa.schema(fields)


INPUT_SCHEMA = _input_schema()
"""A curated input's row."""


MAX_PIXELS = 50_000_000
"""Larger input photos are dropped as decompression bombs (RunSpec.max_image_pixels' default)."""


@dataclass
class CurateJob:
    """What a curate worker is built from (inline, or sent to a Ray actor): the spec and its loaded pipeline (whose
    `actor` sizes the Ray workers, as a run's render actor does)."""

    spec: CurateSpec
    pipeline: PipelineSpec


class CurateWorker:
    """The curate map's worker, handed shards by datagen/distribute.py as a run's MixtureWorker is: builds the source
    and the scoring roles once, then curates and commits input shard after input shard."""

    def __init__(self, jobs: list[CurateJob], phase: str | None = None, lease: str | None = None):
        from datagen import models
        from datagen.sources import build_source

        (job,) = jobs
        self.spec, self.pipeline, self.lease = job.spec, job.pipeline, lease
        self.source = build_source(self.spec.source, self.pipeline.image_size, self.spec.input)
        self.roles = {name: models.build(name, self.pipeline.roles[name]) for name in curation_roles(self.pipeline)}
        for role in self.roles.values():
            role.load()

    def ready(self) -> bool:
        return True

    def run(self, task: str, phase: str, shard: int) -> dict[str, Any]:
        from datagen.worker import attempt

        return attempt(lambda: self.commit(shard), input_paths(self.spec.out, shard))

    def _check_lease(self) -> None:
        if self.lease is not None:
            check_held(self.spec.out, self.lease)

    def commit(self, shard: int) -> dict[str, Any]:
        """Curate one input shard and commit it: its parquet, then its marker, while the driver holds the lease."""
        paths = input_paths(self.spec.out, shard)
        self._check_lease()
        clear_uncommitted(paths)
        started = time.perf_counter()
        gates, size = self.pipeline.curate, self.spec.shard_size
        data, stats = curate_shard(self.source, shard, size, gates, self.roles, MAX_PIXELS)
        sha = paths.folder.write_atomic(paths.parquet, data)
        stats["parquet"] = {"name": paths.parquet, "bytes": len(data), "sha256": sha}
        stats["seconds"] = round(time.perf_counter() - started, 3)
        self._check_lease()
        write_stats(paths, stats)
        return stats


def curate(
    source: str,
    input: str,
    out: str,
    *,
    overrides: Sequence[str] = (),
    progress: bool = True,
    **options: Any,
) -> dict[str, Any]:
    """Curate every input of `--source source --input input` into OUT under OUT's lease: each input shard looked at
    and gated, then the near-duplicates across all of them; resumable (committed shards are not redone). `options`
    are CurateSpec's other fields (pipeline, shard_size, workers). Returns the funnel.

    The shards go through datagen/distribute.py as a run's do: inline (workers 0), or on Ray workers (RAY_ADDRESS,
    or a local cluster), then the deduplication on Ray Data over the committed parquet files, so that the driver
    holds only the duplicate pairs. A shard that fails after its retries is recorded in OUT/failed/ and the
    deduplication waits for a rerun (RunStopped names them)."""
    import math
    import sys

    from datagen.distribute import DISTRIBUTORS, init_ray
    from datagen.errors import ConfigError, RunStopped
    from datagen.lease import Lease
    from datagen.preflight import require
    from datagen.progress import Progress, log_event
    from datagen.resolve import load_pipeline
    from datagen.shards.run import clear_failure, record_failure
    from datagen.sources import build_source, check_source, kinds

    spec = validate(CurateSpec, {"source": source, "input": input, "out": out, **options}, "command line")
    if spec.source not in kinds(curates=True):
        raise ConfigError(f"--source {spec.source}: the curate phase reads photos: {', '.join(kinds(curates=True))}")
    pipeline = load_pipeline(spec.pipeline, overrides)
    for role, score in CURATION_ROLES.items():
        if score in pipeline.curate and role not in pipeline.roles:
            raise ConfigError(
                f"pipeline {pipeline.name!r}: field `curate.{score}`: gates the {role} role's score and "
                f"the pipeline has no `roles.{role}`; add the role or drop the gate"
            )
    require(pipeline, "curate", set(curation_roles(pipeline)))
    check_source(spec.source, spec.input)
    count = len(build_source(spec.source, pipeline.image_size, spec.input))
    folder = Folder(spec.out)
    folder.makedirs()
    with Lease.acquire(folder, holder=" ".join(["datagen", *sys.argv[1:]])) as lease:  # one live curate per OUT
        start_curation(folder, _settings(spec, pipeline, count))
        shards = math.ceil(count / spec.shard_size)
        todo = [(CURATE, shard) for shard in pending_inputs(folder, shards)]
        failed: dict[int, str] = {}
        bar = Progress(shards, "curate", unit="shard", enabled=progress)
        bar.update(shards - len(todo))

        def on_result(item: tuple[str, int], result: dict[str, Any], attempts: int, final: bool = False) -> bool:
            shard = item[1]
            lease.check()
            if result.get("lease_lost") or result.get("storage"):
                raise RunStopped(f"{spec.out}: curate shard {shard}: {result['error'][:500]}; rerun to resume")
            if result["ok"]:
                clear_failure(folder, CURATE, shard)
            elif not final and attempts <= spec.max_shard_retries:
                return False
            else:
                failed[shard] = result["error"]
                record_failure(folder, CURATE, "curate", shard, result, attempts)
                if progress:
                    log_event("shard_failed", task=CURATE, shard=shard, attempts=attempts, error=result["error"])
            bar.update(1)
            return True

        try:
            distribute = DISTRIBUTORS["ray" if spec.workers else "inline"]
            job = CurateJob(spec, pipeline)
            distribute([job], "curate", todo, on_result, None, spec.workers, lease.token, worker=CurateWorker)
        finally:
            bar.close()
        if failed:
            first = "; ".join(f"{shard:06d}: {error}" for shard, error in sorted(failed.items())[:3])
            raise RunStopped(
                f"{spec.out}: {len(failed)} curate shard(s) failed after their retries ({first}); tracebacks in "
                f"{spec.out}/failed/; the near-duplicates wait for every shard: rerun the same command to retry them"
            )
        if not folder.exists(DUPLICATES_MARKER):
            if spec.workers:
                init_ray(None)
            write_duplicates(folder, on_ray=bool(spec.workers))
    return funnel(folder)


def _dedup_rows(batch: dict[str, Any]) -> dict[str, Any]:
    """The kept ones of committed input rows, as `dedup.near_duplicates_ray` takes them: the input's index as the
    id, the rank without the key."""
    import numpy as np

    kept = batch["reason"] == ""
    area = batch["width"][kept].astype(np.float64) * batch["height"][kept]
    aesthetic = np.nan_to_num(batch[f"{SCORE_PREFIX}aesthetic"][kept].astype(np.float64), nan=0.0)
    words = np.stack(batch["hashes"][kept]) if kept.any() else np.empty((0, dedup.IMAGE_WORDS))
    return {
        "id": batch["index"][kept].astype(np.int64),
        "key": batch["key"][kept],
        "words": words.astype(np.int64),
        "rank": np.stack([-area, -aesthetic], axis=1),
    }


DEDUP_COLUMNS = ["key", "width", "height", "reason", f"{SCORE_PREFIX}aesthetic", "hashes"]
"""What the deduplication reads of the committed inputs: the kept copy of a group is the best by `dedup.rank`
(highest resolution, then aesthetic score, then key)."""


def write_duplicates(folder, on_ray: bool = False) -> None:
    """The near-duplicates among the inputs every gate kept, across all committed shards, and their marker; on Ray
    Data (dedup.near_duplicates_ray) reading the committed parquet files on the workers, or in this process."""
    import json

    import pyarrow as pa

    from datagen.shards.layout import to_parquet

    if on_ray:
        import ray

        inputs = folder.sub(INPUTS)
        urls = [inputs.url(f"{name[: -len(STATS)]}.parquet") for name in inputs.names() if name.endswith(STATS)]
        rows = ray.data.read_parquet(urls, columns=[*DEDUP_COLUMNS, "index"])
        kept = rows.map_batches(_dedup_rows, batch_format="numpy")
        dropped, compared = dedup.near_duplicates_ray(kept), kept.count()
    else:
        items = []
        for table in committed_inputs(folder, DEDUP_COLUMNS):
            for row in table.to_pylist():
                if not row["reason"]:
                    items.append(
                        {
                            "key": row["key"],
                            "hashes": dedup.from_words(row["hashes"]),
                            "rank": dedup.rank(
                                row["key"], row["width"], row["height"], row[f"{SCORE_PREFIX}aesthetic"] or 0.0
                            ),
                        }
                    )
        dropped, compared = dedup.near_duplicates(items), len(items)
    table = pa.table({"key": list(dropped), "duplicate_of": list(dropped.values())})
    sha = folder.write_atomic(DUPLICATES, to_parquet(table))
    stats = {"inputs": compared, "duplicates": len(dropped), "sha256": sha}
    folder.write_atomic(DUPLICATES_MARKER, (json.dumps(stats, indent=1) + "\n").encode())


def funnel(folder) -> dict[str, Any]:
    """inputs -> dropped by each gate -> near-duplicates -> kept, from the committed files."""
    from datagen.shards.layout import read_parquet

    reasons: Counter[str] = Counter()
    total = 0
    for table in committed_inputs(folder, ["reason"]):
        total += len(table)
        reasons.update(reason for reason in table.column("reason").to_pylist() if reason)
    duplicates = len(read_parquet(folder, DUPLICATES)) if folder.exists(DUPLICATES_MARKER) else 0
    return {
        "inputs": total,
        "dropped": dict(reasons.most_common()),
        "duplicates": duplicates,
        "kept": total - sum(reasons.values()) - duplicates,
    }


CURATE_FLAGS = ("source", "input", "out", "pipeline", "shard_size", "workers")
"""The CurateSpec fields `curate` takes as flags (datagen/flags.py)."""


def flags(parser) -> None:
    from datagen.flags import overrides_flag, progress_flag, spec_flags
    from datagen.sources import kinds

    spec_flags(parser, CurateSpec, CURATE_FLAGS, choices={"source": kinds(curates=True)}, metavars={"out": "CURATED"})
    overrides_flag(parser, "curate.blur.max=0.7 (the pipeline's fields)")
    progress_flag(parser)


def run(args) -> int:
    """`datagen curate`: gate and deduplicate photos into a curated set that `--source curated` reads."""
    from datagen.flags import given_flags

    result = curate(**given_flags(args, CURATE_FLAGS), overrides=args.overrides, progress=not args.no_progress)
    dropped = ", ".join(f"{reason} {n}" for reason, n in result["dropped"].items()) or "none"
    print(
        f"curated {result['inputs']} inputs: dropped by the gates {dropped}; near-duplicates "
        f"{result['duplicates']}; kept {result['kept']}"
    )
    from datagen.sources import describe_unreadable, unreadable_inputs

    for line in describe_unreadable(unreadable_inputs(args.source, args.input)):
        print(line)
    print(f"  the set: {args.out} (generate from it with: --source curated --input {args.out})")
    return 0
