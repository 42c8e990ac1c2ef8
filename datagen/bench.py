"""`datagen bench`: every speed figure beside a named baseline measured in the same run.

    writer   our shard writer vs webdataset.TarWriter vs a raw sequential copy of the same bytes; codec costs
    engine   the `local` pipeline through Ray on every core vs the same work in one plain Python loop
    render   one pipeline and task rendered batched vs the same run at batch 1: per-stage time, speedup
    gpu      the `remove` generator at full size on CUDA, naive vs tuned (datagen/bench_gpu.py)
    text     the text task on the text-on-photo set: detection, yields, read-back, AnyEdit's rule beside the gates
             (datagen/bench_text.py)
    curate   the curate phase's map stage per core with and without NudeNet; deduplication of synthetic hashes
             (datagen/bench_curate.py)

Figures print as a table; `--json FILE` keeps them. docs/benchmarks.md records them with the machine and date.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import shutil
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from datagen.measure import machine, positive, table

if TYPE_CHECKING:
    from datagen.record import EditRecord
    from datagen.storage import Folder

# ------------------------------------------------------------------------------------------------ helpers


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _settle() -> None:
    """Let the kernel write back what earlier contenders left dirty, so that it is not charged to the next."""
    os.sync()


# ------------------------------------------------------------------------------------------------- writer


def synthetic_records(count: int, size: int, seed: int = 0) -> list[EditRecord]:
    """Kept records whose images compress like photos do: smooth gradients, shapes, sensor-like noise; an edited
    region and its mask."""
    from datagen.record import EditRecord

    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size
    records = []
    for i in range(count):
        base = np.stack([xs * 200 + 30, ys * 180 + 40, (xs + ys) * 90 + 50], 2)
        for _ in range(4):
            x0, y0 = rng.integers(0, size - size // 4, 2)
            base[y0 : y0 + size // 4, x0 : x0 + size // 4] = rng.integers(0, 255, 3)
        image = np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8)
        mask = np.zeros((size, size), np.uint8)
        x0, y0 = rng.integers(0, size // 2, 2)
        mask[y0 : y0 + size // 3, x0 : x0 + size // 3] = 255
        output = image.copy()
        output[mask > 0] = np.clip(output[mask > 0].astype(np.int16) // 2 + 60, 0, 255).astype(np.uint8)
        records.append(
            EditRecord(
                key=f"bench_000000_{i:05d}",
                task="bench",
                shard=0,
                index=i,
                seed=0,
                source={},
                instruction="Remove the red mug",
                input_image=image,
                output_image=output,
                mask=mask,
                width=size,
                height=size,
                scores={"clip_dir": 0.25},
                status="kept",
            )
        )
    return records


def shard_members(folder: Folder, records: list[EditRecord]) -> list[tuple[str, dict[str, bytes]]]:
    """(key, members) of each record as the shard writer encodes them (its own `encode`, PNG at level 3): the bytes
    every already-encoded contender writes."""
    from datagen.shards import TarShardWriter

    writer = TarShardWriter(folder, "members.tar", "png", 95, 3)
    try:
        return [(record.key, writer.encode(record)) for record in records]
    finally:
        writer.abort()


def write_ours(folder: Folder, name: str, encoded: list[tuple[str, dict[str, bytes]]]) -> None:
    """Our already-encoded contender: the shard writer framing, hashing, fsyncing and renaming those members."""
    from datagen.shards import TarShardWriter

    writer = TarShardWriter(folder, name, "png", 95, 3)
    for key, members in encoded:
        writer.add_members(key, members)
    writer.commit()


def _write_tarwriter(path: Path, encoded: list[tuple[str, dict[str, bytes]]], fsync: bool) -> None:
    import webdataset as wds

    with open(path, "wb") as stream:
        sink = wds.TarWriter(stream)
        for key, members in encoded:
            sink.write({"__key__": key, **members})
        sink.close()
        if fsync:
            stream.flush()
            os.fsync(stream.fileno())


def _raw_copy(source: Path, target: Path) -> None:
    with open(source, "rb") as src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
        dst.flush()
        os.fsync(dst.fileno())


def _time_encoded(
    folder: Folder, encoded: list[tuple[str, dict[str, bytes]]], repeats: int
) -> tuple[dict[str, dict[str, float]], int, float]:
    """Ours, TarWriter (with and without fsync) and a raw copy of our tar, interleaved `repeats` times, on the same
    encoded members: a row of seconds, MB/s and samples/s each; the tar's size; and sha256's time over it."""
    root = Path(folder.path)
    write_ours(folder, "ours.tar", encoded)
    (root / "ours.tar").rename(root / "source.tar")  # the raw copy's source, held in the page cache
    total = (root / "source.tar").stat().st_size
    runs = {
        "ours": functools.partial(write_ours, folder, "ours.tar", encoded),
        "TarWriter": functools.partial(_write_tarwriter, root / "wds.tar", encoded, False),
        "TarWriter+fsync": functools.partial(_write_tarwriter, root / "wds.tar", encoded, True),
        "raw copy": functools.partial(_raw_copy, root / "source.tar", root / "copy.tar"),
    }
    outputs = {"ours": "ours.tar", "TarWriter": "wds.tar", "TarWriter+fsync": "wds.tar", "raw copy": "copy.tar"}
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):  # interleaved, so a noisy neighbour hits every contender alike
        for name, fn in runs.items():
            (root / outputs[name]).unlink(missing_ok=True)  # each writes a new file: no old one to free
            _settle()
            seconds[name].append(_median_time(fn, 1))
    source = (root / "source.tar").read_bytes()
    sha_seconds = _median_time(functools.partial(hashlib.sha256, source), repeats)  # ours hashes every byte
    del source
    rows = {
        name: {
            "seconds": statistics.median(t),
            "mb_s": total / 1e6 / statistics.median(t),
            "samples_s": len(encoded) / statistics.median(t),
        }
        for name, t in seconds.items()
    }
    return rows, total, sha_seconds


def _time_decoded(folder: Folder, records: list[EditRecord], repeats: int) -> dict[str, dict[str, float]]:
    """Ours and TarWriter from decoded arrays, each with its own encoders (ours: the shard's codec; TarWriter: PIL
    PNG): samples/s and bytes per sample."""
    import webdataset as wds

    from datagen.shards import TarShardWriter

    root = Path(folder.path)

    def ours() -> None:
        writer = TarShardWriter(folder, "ours-decoded.tar", "png", 95, 3)
        for record in records:
            writer.add(record)
        writer.commit()

    def tarwriter() -> None:
        with wds.TarWriter(str(root / "wds-decoded.tar")) as sink:
            for record in records:
                sink.write(
                    {
                        "__key__": record.key,
                        "input.png": record.input_image,
                        "output.png": record.output_image,
                        "mask.png": record.mask,
                        "json": record.text_fields(),
                        "txt": record.instruction,
                    }
                )

    decoded = {}
    for name, fn, path in (("ours", ours, "ours-decoded.tar"), ("TarWriter", tarwriter, "wds-decoded.tar")):
        t = _median_time(fn, max(1, repeats // 2))
        size = (root / path).stat().st_size
        decoded[name] = {"seconds": t, "samples_s": len(records) / t, "bytes_per_sample": size / len(records)}
    return decoded


CODECS = [("png", 0), ("png", 1), ("png", 3), ("png", 6), ("png", 9), ("jpg", 95), ("webp", 95)]
"""(format, PNG level or JPEG/WebP quality) of the codec table."""


def _codec_costs(records: list[EditRecord]) -> list[dict[str, Any]]:
    """Milliseconds and KiB per input image for each of CODECS (datagen/images.py's `encode`), and PIL's default PNG
    (what TarWriter uses)."""
    import io

    from PIL import Image

    from datagen.images import encode

    codecs = []
    for fmt, level in CODECS:
        t0 = time.perf_counter()
        sizes = [
            len(encode(r.input_image, fmt, level if fmt != "png" else 95, level if fmt == "png" else 3))
            for r in records
        ]
        ms = (time.perf_counter() - t0) * 1000 / len(records)
        label = f"{fmt} level {level}" if fmt == "png" else f"{fmt} quality {level}"
        codecs.append({"codec": label, "ms_per_image": ms, "kib_per_image": statistics.mean(sizes) / 1024})
    t0 = time.perf_counter()
    for r in records:
        Image.fromarray(r.input_image).save(io.BytesIO(), "PNG")
    ms = (time.perf_counter() - t0) * 1000 / len(records)
    codecs.append({"codec": "png (PIL default, TarWriter's)", "ms_per_image": ms, "kib_per_image": None})
    return codecs


def bench_writer(samples: int = 200, size: int = 512, repeats: int = 5, where: str | None = None) -> dict[str, Any]:
    """Ours (tar framing, sha256, fsync, atomic rename) vs webdataset.TarWriter vs a raw copy of the same bytes,
    on already-encoded samples; then from decoded arrays, where the codec decides; then the codec table."""
    from datagen.storage import Folder

    root = Path(tempfile.mkdtemp(prefix="datagen-bench-", dir=where))
    try:
        folder = Folder(root)
        records = synthetic_records(samples, size)
        encoded, total, sha_seconds = _time_encoded(folder, shard_members(folder, records), repeats)
        decoded = _time_decoded(folder, records, repeats)
        codecs = _codec_costs(records[: min(20, samples)])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    raw_mb_s, sha_mb_s = encoded["raw copy"]["mb_s"], total / 1e6 / sha_seconds
    return {
        "bench": "writer",
        "samples": samples,
        "size": size,
        "repeats": repeats,
        "tar_mb": total / 1e6,
        "encoded": encoded,
        "decoded": decoded,
        "codecs": codecs,
        "ratios": {
            "ours_vs_tarwriter": encoded["ours"]["mb_s"] / encoded["TarWriter"]["mb_s"],
            "ours_vs_raw_copy": encoded["ours"]["mb_s"] / raw_mb_s,
            "ours_vs_tarwriter_fsync": encoded["ours"]["mb_s"] / encoded["TarWriter+fsync"]["mb_s"],
            "decoded_ours_vs_tarwriter": decoded["ours"]["samples_s"] / decoded["TarWriter"]["samples_s"],
        },
        "targets": {"ours_vs_tarwriter": 1.0, "ours_vs_raw_copy": 0.8},
        "bound": {"sha256_mb_s": sha_mb_s, "sha256_vs_raw_copy": sha_mb_s / raw_mb_s},
    }


def print_writer(r: dict[str, Any]) -> None:
    print(
        f"writer: {r['samples']} samples of {r['size']}x{r['size']} (input, output, mask PNG + json + txt), "
        f"{r['tar_mb']:.1f} MB per tar, median of {r['repeats']}"
    )
    rows = [[name, f"{v['mb_s']:.0f}", f"{v['samples_s']:.0f}"] for name, v in r["encoded"].items()]
    print(table(rows, ["already encoded", "MB/s", "samples/s"]))
    rows = [[name, f"{v['samples_s']:.1f}", f"{v['bytes_per_sample'] / 1024:.0f}"] for name, v in r["decoded"].items()]
    print(table(rows, ["from decoded arrays", "samples/s", "KiB/sample"]))
    rows = [
        [c["codec"], f"{c['ms_per_image']:.1f}", "" if c["kib_per_image"] is None else f"{c['kib_per_image']:.0f}"]
        for c in r["codecs"]
    ]
    print(table(rows, ["codec (one input image)", "ms", "KiB"]))
    ratios = r["ratios"]
    print(
        f"ours / TarWriter: {ratios['ours_vs_tarwriter']:.2f}x (target >= 1.0; "
        f"{ratios['ours_vs_tarwriter_fsync']:.2f}x against TarWriter with the same fsync)"
    )
    print(f"ours / raw copy:  {ratios['ours_vs_raw_copy']:.0%} (target >= 80%)")
    bound = r["bound"]
    print(
        f"   bound: sha256 of every byte on one core runs at {bound['sha256_mb_s']:.0f} MB/s, "
        f"{bound['sha256_vs_raw_copy']:.0%} of the raw copy; writing, framing and fsync overlap with it"
    )
    print(f"from decoded arrays, ours / TarWriter: {ratios['decoded_ours_vs_tarwriter']:.2f}x")


# ------------------------------------------------------------------------------------------------- engine


def _stage_seconds(out: Path) -> tuple[Counter, int]:
    """Summed per-stage worker seconds of a run (write seconds and render timings of every shard), and samples."""
    from datagen.shards import RunFolder

    stages: Counter[str] = Counter()
    samples = 0
    run = RunFolder(out)
    for shard in run.committed(phase="write"):
        stages["write"] += shard.stats["seconds"]
    for shard in run.committed():
        body = shard.stats
        stages.update(body["timings"])
        stages["commit (manifest, stats, fsync)"] += body["seconds"] - sum(body["timings"].values())
        samples += body["samples"]
    return stages, samples


def _timed_run(config, workers: int | None) -> float:
    from datagen.runner import execute_all

    started = time.perf_counter()
    summaries = execute_all([config], "generate", workers=workers, progress=False)
    seconds = time.perf_counter() - started
    failed = sum(len(s.failed) + len(s.written.failed) for s in summaries)
    if failed:
        raise RuntimeError(f"{failed} shards failed in the benchmark run {config.run.out}")
    return seconds


def bench_engine(
    n: int = 1200, shard_size: int = 25, task: str = "remove", where: str | None = None, workers: int | None = None
) -> dict[str, Any]:
    """The `local` pipeline through Ray with one actor per core vs the same shards in one plain loop."""
    import ray

    from datagen.distribute import init_ray
    from datagen.resolve import load_run

    root = Path(tempfile.mkdtemp(prefix="datagen-bench-", dir=where))
    try:
        init_ray(None)  # the cluster's start is not the engine's work
        cores = workers or int(ray.cluster_resources().get("CPU", 1))
        results = {}
        for name, count in (("loop", 0), ("ray", cores)):
            # no input prefetch thread on either side: the loop stays one core's work, and the two sides do
            # identical work (what prefetching gains inside a worker, `bench render` measures)
            config = load_run(
                task,
                "local",
                out=str(root / name),
                n=n,
                shard_size=shard_size,
                overrides=["pipeline.actor.prefetch=0"],
            )
            wall = _timed_run(config, count)
            stages, samples = _stage_seconds(root / name)
            results[name] = {
                "seconds": wall,
                "samples": samples,
                "samples_s": samples / wall,
                "stages_ms_per_sample": {k: 1000 * v / samples for k, v in sorted(stages.items())},
                "busy_seconds": sum(stages.values()),
            }
    finally:
        shutil.rmtree(root, ignore_errors=True)
    loop, par = results["loop"], results["ray"]
    efficiency = par["samples_s"] / (loop["samples_s"] * cores)
    capacity = par["seconds"] * cores
    breakdown = {
        "the loop's own work (every stage, commits included)": loop["busy_seconds"] / capacity,
        "the same stages slower in parallel (shared memory bandwidth, the driver's CPU)": max(
            0.0, par["busy_seconds"] - loop["busy_seconds"]
        )
        / capacity,
        "outside the shards (actor start-up, scheduling, results, the idle tail)": max(
            0.0, 1 - par["busy_seconds"] / capacity
        ),
    }
    return {
        "bench": "engine",
        "task": task,
        "n": n,
        "shard_size": shard_size,
        "cores": cores,
        "loop": loop,
        "ray": par,
        "parallel_efficiency": efficiency,
        "target": 0.85,
        "where_the_time_goes": breakdown,
    }


def print_engine(r: dict[str, Any]) -> None:
    print(
        f"engine: task {r['task']}, pipeline local, {r['n']} samples in shards of {r['shard_size']}, "
        f"{r['cores']} cores"
    )
    rows = [[name, f"{r[name]['seconds']:.1f}", f"{r[name]['samples_s']:.1f}"] for name in ("loop", "ray")]
    print(table(rows, ["", "seconds", "samples/s"]))
    stages = sorted(set(r["loop"]["stages_ms_per_sample"]) | set(r["ray"]["stages_ms_per_sample"]))
    rows = [
        [s, f"{r['loop']['stages_ms_per_sample'].get(s, 0):.1f}", f"{r['ray']['stages_ms_per_sample'].get(s, 0):.1f}"]
        for s in stages
    ]
    print(table(rows, ["stage (ms/sample)", "loop", "ray worker"]))
    print(
        f"parallel efficiency: {r['parallel_efficiency']:.0%} (target >= 85%) = ray samples/s / "
        f"(loop samples/s x {r['cores']})"
    )
    for name, share in r["where_the_time_goes"].items():
        print(f"  {share:6.1%} of the cores' time: {name}")


# ------------------------------------------------------------------------------------------------- render


def batch_1_overrides(config) -> list[str]:
    """The same pipeline forced to one sample per micro-batch and one item per model call."""
    return ["pipeline.micro_batch=1", *(f"pipeline.roles.{role}.batch_size=1" for role in config.pipeline.roles)]


ENCODING_BACKENDS = ("diffusers", "flux_fill", "flux_kontext")
"""Backends with `batch_encode` (datagen/models/options.py): the text once per distinct prompt, SD's masked images
VAE-encoded as one batch."""


def per_item_overrides(config) -> list[str]:
    """The same pipeline with diffusers' own per-item text and VAE encoding (the path before batch_encode)."""
    return [
        f"pipeline.roles.{role}.args.batch_encode=false"
        for role, spec in sorted(config.pipeline.roles.items())
        if spec.backend in ENCODING_BACKENDS
    ]


def _render_run(task: str, pipeline: str, out: Path, n: int, shard_size: int, overrides: list[str]) -> dict[str, Any]:
    """Write every shard, then time the render phase alone (the write phase is not what batching changes)."""
    from datagen.resolve import load_run
    from datagen.runner import execute_all

    config = load_run(task, pipeline, out=str(out), n=n, shard_size=shard_size, overrides=overrides)
    if execute_all([config], "write", workers=0, progress=False)[0].failed:
        raise RuntimeError(f"the benchmark's write phase failed in {out}")
    started = time.perf_counter()
    summary = execute_all([config], "render", workers=0, progress=False)[0]
    wall = time.perf_counter() - started
    if summary.failed:
        raise RuntimeError(f"{len(summary.failed)} shards failed in the benchmark run {out}")
    stages: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    items: Counter[str] = Counter()
    samples = kept = 0
    from datagen.shards import RunFolder

    for shard in RunFolder(out).committed():
        body = shard.stats
        stages.update(body["timings"])
        for stage in body["stages"].values():
            calls.update(stage.get("calls", {}))
            items.update(stage.get("items", {}))
        samples, kept = samples + body["samples"], kept + body["kept"]
    return {
        "micro_batch": config.pipeline.micro_batch,
        "batch_sizes": {role: spec.batch_size for role, spec in sorted(config.pipeline.roles.items())},
        "samples": samples,
        "kept": kept,
        "seconds": wall,
        "samples_s": samples / wall,
        "pairs_s": kept / wall,
        "stages_ms_per_sample": {k: 1000 * v / samples for k, v in sorted(stages.items())},
        "other_ms_per_sample": 1000 * (wall - sum(stages.values())) / samples,
        "model_calls": dict(sorted(calls.items())),
        "model_items": dict(sorted(items.items())),
        "stage_seconds": dict(sorted(stages.items())),
    }


MODEL_SCORERS = ("judge", "reward")
"""The model-sized scorers the render bench times by leaving each out of the same run."""


def bench_render(
    pipeline: str = "local", task: str = "remove", n: int = 100, shard_size: int = 50, where: str | None = None
) -> dict[str, Any]:
    """One pipeline and task inline (one process, models loaded once): the render phase as configured (batched)
    against the same run forced to batch 1, in the same process; per-stage time per sample, pairs/s, and
    `speedup` = batched render samples/s / batch-1 render samples/s. For each model of MODEL_SCORERS the pipeline
    has (the judge, the reward model), also the same batched render without it: its requests/s and its share of the
    render time."""
    from datagen.resolve import load_run

    root = Path(tempfile.mkdtemp(prefix="datagen-bench-", dir=where))
    try:
        warm = load_run(task, pipeline, out=str(root / "warm"), n=2, shard_size=2)
        _timed_run(warm, 0)  # model loading and first-call compilation are not per-sample costs
        single = batch_1_overrides(warm)
        runs = {
            "batch 1": _render_run(task, pipeline, root / "batch-1", n, shard_size, single),
            "batched": _render_run(task, pipeline, root / "batched", n, shard_size, []),
        }
        if per_item := per_item_overrides(warm):
            runs["per-item encode"] = _render_run(task, pipeline, root / "per-item", n, shard_size, per_item)
        for role in MODEL_SCORERS:
            if role in warm.pipeline.roles:
                runs[f"no {role}"] = _render_run(
                    task, pipeline, root / f"no-{role}", n, shard_size, [f"pipeline.roles.{role}=null"]
                )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    base, batched = runs["batch 1"], runs["batched"]
    result = {
        "bench": "render",
        "pipeline": pipeline,
        "task": task,
        "n": n,
        **batched,
        "baseline": base,
        "speedup": batched["samples_s"] / base["samples_s"],
    }
    if "per-item encode" in runs:  # the same batched render before batch_encode, in the same process
        before = runs["per-item encode"]
        result["per_item_encode"] = before
        result["generate_ms_per_sample"] = {
            "before": before["stages_ms_per_sample"].get("generate", 0.0),
            "after": batched["stages_ms_per_sample"].get("generate", 0.0),
        }
    for role in MODEL_SCORERS:
        if f"no {role}" in runs:
            seconds, requests = batched["stage_seconds"].get(role, 0.0), batched["model_items"].get(role, 0)
            result[role] = {
                "requests": requests,
                "requests_s": requests / seconds if seconds else float("nan"),
                "share_of_render": seconds / batched["seconds"],
                "without": runs[f"no {role}"],
            }
    return result


def print_render(r: dict[str, Any]) -> None:
    base = r["baseline"]
    print(f"render: task {r['task']} on pipeline {r['pipeline']}, {r['samples']} samples inline, {r['kept']} kept")
    stages = sorted(set(r["stages_ms_per_sample"]) | set(base["stages_ms_per_sample"]))
    rows = [
        [s, f"{base['stages_ms_per_sample'].get(s, 0):.1f}", f"{r['stages_ms_per_sample'].get(s, 0):.1f}"]
        for s in stages
    ]
    rows.append(
        ["other (manifest, stats, commit)", f"{base['other_ms_per_sample']:.1f}", f"{r['other_ms_per_sample']:.1f}"]
    )
    print(table(rows, ["stage (ms/sample)", "batch 1", f"batched (micro-batch {r['micro_batch']})"]))
    calls = ", ".join(f"{role} {n} vs {base['model_calls'].get(role, 0)}" for role, n in r["model_calls"].items())
    print(f"model calls, batched vs batch 1: {calls}")
    print(
        f"render: {r['samples_s']:.2f} samples/s batched vs {base['samples_s']:.2f} at batch 1: "
        f"speedup {r['speedup']:.2f}x ({r['pairs_s']:.2f} kept pairs/s)"
    )
    if "generate_ms_per_sample" in r:
        generate, before = r["generate_ms_per_sample"], r["per_item_encode"]
        print(
            f"generate stage: {generate['after']:.1f} ms/sample with the text embedded once per prompt and the masked "
            f"images encoded as one batch, {generate['before']:.1f} before (diffusers' per-item encode, the same "
            f"micro-batches); render {r['samples_s']:.2f} vs {before['samples_s']:.2f} samples/s"
        )
    for role in MODEL_SCORERS:
        if role in r:
            scorer, without = r[role], r[role]["without"]
            print(
                f"{role}: {scorer['requests']} requests at {scorer['requests_s']:.1f}/s, "
                f"{scorer['share_of_render']:.0%} of the render time; the same render without it: "
                f"{without['samples_s']:.2f} samples/s"
            )


# ---------------------------------------------------------------------------------------------------- CLI


def add_parser(sub) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "bench",
        help="speed against a baseline measured in the same run (datagen/bench.py)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    benches = parser.add_subparsers(dest="bench", required=True, metavar="BENCH")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
        p.add_argument("--tmp", metavar="DIR", help="where the benchmark writes (default: the system's temp dir)")

    w = benches.add_parser("writer", help="shard writer vs webdataset.TarWriter vs a raw copy")
    w.add_argument("--samples", type=positive, default=200)
    w.add_argument("--size", type=positive, default=512, help="image side in pixels")
    w.add_argument("--repeats", type=positive, default=5)
    common(w)
    e = benches.add_parser("engine", help="local pipeline through Ray on every core vs one plain loop")
    e.add_argument("--n", type=positive, default=1200)
    e.add_argument("--shard-size", type=positive, default=25)
    e.add_argument("--task", default="remove")
    e.add_argument("--workers", type=positive, help="actors (default: one per CPU of the cluster)")
    common(e)
    r = benches.add_parser("render", help="one pipeline and task, batched vs batch 1: per-stage time, speedup")
    r.add_argument("--pipeline", default="local")
    r.add_argument("--task", default="remove")
    r.add_argument("--n", type=positive, default=100)
    r.add_argument("--shard-size", type=positive, default=50)
    common(r)
    from datagen import bench_gpu

    bench_gpu.add_arguments(
        benches.add_parser("gpu", help="the product's render of remove on sd15 at full size, naive vs tuned")
    )
    from datagen import bench_curate, bench_text

    bench_curate.add_arguments(
        benches.add_parser("curate", help="curate's map stage per core with and without NudeNet; dedup recall")
    )
    bench_text.add_arguments(
        benches.add_parser("text", help="text edits on real photos: OCR recall, yields, read-back vs AnyEdit's rule")
    )
    return parser


def run(args: argparse.Namespace) -> int:
    if args.bench == "gpu":
        from datagen import bench_gpu

        return bench_gpu.run(args)
    if args.tmp and not Path(args.tmp).is_dir():
        from datagen.errors import ConfigError

        raise ConfigError(f"--tmp {args.tmp}: no such directory")
    if args.bench == "writer":
        result = bench_writer(args.samples, args.size, args.repeats, args.tmp)
        print_writer(result)
    elif args.bench == "engine":
        result = bench_engine(args.n, args.shard_size, args.task, args.tmp, args.workers)
        print_engine(result)
    elif args.bench == "curate":
        from datagen import bench_curate

        result = bench_curate.bench_curate(args.size, args.hashes, args.ray_hashes, args.repeats, args.tmp)
        bench_curate.print_curate(result)
    elif args.bench == "text":
        from datagen import bench_text

        result = bench_text.bench_text(
            args.pipeline, args.n, args.seed, args.size, args.tmp, args.photo_set, args.keep
        )
        bench_text.print_text(result)
    else:
        result = bench_render(args.pipeline, args.task, args.n, args.shard_size, args.tmp)
        print_render(result)
    result["machine"] = machine()
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0
