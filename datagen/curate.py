"""`datagen curate`: photos gated and deduplicated into a curated set that `--source curated` reads.

Each input photo is decoded as stored and looked at — its scores (size, shape, blur; the nsfw and aesthetic roles';
the ocr role's text area where a gate asks for it) and perceptual hashes — and the pipeline's gates (`curate:` in
pipelines/*.yaml) keep it or drop it with a reason, like a candidate. The inputs go in shards, each committed by its
marker as the render's are (a rerun redoes only the uncommitted ones), inline or as Ray tasks; then the
near-duplicates among the kept inputs of all shards are found (datagen/dedup.py, in this process or on Ray Data) and
committed. The set's layout and its reading: datagen/sources/curated.py; its report: datagen/report/curation.py.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from datagen import dedup
from datagen.scores import CURATION_SCORES, SCORE_PREFIX
from datagen.shards.layout import STATS
from datagen.sources.curated import CURATE_JSON, DUPLICATES, DUPLICATES_MARKER, INPUTS, committed_inputs

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


def _shard(number: int) -> str:
    return f"curate-{number:06d}"


def _settings(kind: str, input: str, pipeline, shard_size: int, count: int) -> dict[str, Any]:
    gates = {name: spec.model_dump(exclude_defaults=True) for name, spec in pipeline.curate.items()}
    return {
        "source": kind,
        "input": str(input),
        "pipeline": pipeline.name,
        "gates": gates,
        "shard_size": shard_size,
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
                "key": f"curate_{number:06d}_{k:05d}",
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


def commit_shard(
    kind: str,
    input: str,
    out: str,
    pipeline_name: str,
    overrides: list[str],
    number: int,
    shard_size: int,
    state: dict | None = None,
) -> None:
    """Curate one input shard and commit it (its parquet, then its marker); `state` keeps the pipeline, source and
    scoring roles between shards of one process (a Ray task starts without)."""
    import json
    import time

    from datagen import models
    from datagen.resolve import load_pipeline
    from datagen.sources import build_source
    from datagen.storage import Folder

    state = {} if state is None else state
    if not state:
        state["pipeline"] = pipeline = load_pipeline(pipeline_name, overrides)
        state["source"] = build_source(kind, pipeline.image_size, input)
        state["roles"] = {name: models.build(name, pipeline.roles[name]) for name in curation_roles(pipeline)}
        for role in state["roles"].values():
            role.load()
    inputs = Folder(out).sub(INPUTS)
    started = time.perf_counter()
    data, stats = curate_shard(
        state["source"], number, shard_size, state["pipeline"].curate, state["roles"], 50_000_000
    )
    stats["parquet"] = {
        "name": f"{_shard(number)}.parquet",
        "bytes": len(data),
        "sha256": inputs.write_atomic(f"{_shard(number)}.parquet", data),
    }
    stats["seconds"] = round(time.perf_counter() - started, 3)
    inputs.write_atomic(f"{_shard(number)}{STATS}", (json.dumps(stats, indent=1) + "\n").encode())


def curate(
    kind: str,
    input: str,
    out: str,
    pipeline_name: str = "local",
    shard_size: int = 100,
    overrides: list[str] = (),
    progress: bool = True,
    workers: int = 0,
) -> dict[str, Any]:
    """Curate every input of `--source kind --input input` into OUT: each input shard looked at and gated, then the
    near-duplicates across all of them; resumable (committed shards are not redone). Returns the funnel.

    workers 0: inline, in this process. Otherwise on Ray (RAY_ADDRESS, or a local cluster): one task per
    uncommitted shard, at most `workers` at once, and the deduplication on Ray Data over the committed parquet
    files, so that the driver holds only the duplicate pairs."""
    import json
    import math

    from datagen.errors import ConfigError
    from datagen.preflight import require
    from datagen.progress import Progress
    from datagen.resolve import load_pipeline
    from datagen.sources import build_source, check_source, kinds
    from datagen.storage import Folder

    if kind not in kinds(curates=True):
        raise ConfigError(f"--source {kind}: the curate phase reads photos: {', '.join(kinds(curates=True))}")
    pipeline = load_pipeline(pipeline_name, overrides)
    for role, score in CURATION_ROLES.items():
        if score in pipeline.curate and role not in pipeline.roles:
            raise ConfigError(
                f"pipeline {pipeline.name!r}: field `curate.{score}`: gates the {role} role's score and "
                f"the pipeline has no `roles.{role}`; add the role or drop the gate"
            )
    require(pipeline, "curate", set(curation_roles(pipeline)))
    check_source(kind, input)
    source = build_source(kind, pipeline.image_size, input)
    folder = Folder(out)
    folder.makedirs()
    settings = _settings(kind, input, pipeline, shard_size, len(source))
    if folder.exists(CURATE_JSON):
        before = json.loads(folder.read_text(CURATE_JSON))
        changed = [k for k in settings if before.get(k) != settings[k]]
        if changed:
            was = ", ".join(f"{k} {before.get(k)!r}" for k in changed)
            raise ConfigError(f"{out} was curated with other settings ({was}); curate into a new folder")
    else:
        folder.write_atomic(CURATE_JSON, (json.dumps(settings, indent=1) + "\n").encode())
    inputs = folder.sub(INPUTS)
    inputs.makedirs()
    shards = math.ceil(len(source) / shard_size)
    todo = [number for number in range(shards) if not inputs.exists(f"{_shard(number)}{STATS}")]
    args = (kind, input, out, pipeline_name, list(overrides))
    with Progress(shards, "curate", unit="shard", enabled=progress) as bar:
        bar.update(shards - len(todo))
        if not workers:
            state: dict[str, Any] = {}
            for number in todo:
                commit_shard(*args, number, shard_size, state)
                bar.update(1)
        else:
            import ray

            from datagen.distribute import init_ray

            init_ray(None)
            task = ray.remote(num_cpus=1, max_retries=2)(commit_shard)
            running, waiting = [], list(todo)
            while waiting or running:
                while waiting and len(running) < workers:
                    running.append(task.remote(*args, waiting.pop(0), shard_size))
                done, running = ray.wait(running, num_returns=1)
                ray.get(done)
                bar.update(1)
    if not folder.exists(DUPLICATES_MARKER):
        write_duplicates(folder, on_ray=bool(workers))
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


def flags(parser) -> None:
    from datagen.measure import positive
    from datagen.sources import kinds

    parser.add_argument("--source", required=True, choices=kinds(curates=True), help="what --input holds")
    parser.add_argument("--input", required=True, help="the photos: a folder of images, or of WebDataset tars")
    parser.add_argument("--out", required=True, metavar="CURATED", help="where the curated set is written")
    parser.add_argument("--pipeline", default="local", help="whose nsfw role and curate gates (default: local)")
    parser.add_argument("--shard-size", type=positive, default=100, help="inputs per committed shard (default 100)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override the pipeline, e.g. --set curate.blur.max=0.7",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="0: inline (default); N: at most N shards at once on Ray (RAY_ADDRESS or a local "
        "cluster), and the deduplication on Ray Data",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (or JSON lines)")


def run(args) -> int:
    """`datagen curate`: gate and deduplicate photos into a curated set that `--source curated` reads."""
    if args.workers < 0:
        from datagen.errors import ConfigError

        raise ConfigError(f"--workers {args.workers}: give 0 (inline) or a positive number")
    result = curate(
        args.source,
        args.input,
        args.out,
        args.pipeline,
        args.shard_size,
        args.overrides,
        progress=not args.no_progress,
        workers=args.workers,
    )
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
