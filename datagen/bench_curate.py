"""`datagen bench curate`: the curate phase's map stage on one core, and the deduplication of synthetic hashes.

map: scikit-image's photos as 512-px squares, each also as a JPEG (an `images` folder); the product's
`curate_shard` over all of them on one core (NudeNet's session at one thread), and the same stage without the
nsfw role (the baseline, same run): images/s per core, and ms per image of each step (decode, size and blur, hash,
NudeNet) timed by calling the product's own functions.

dedup: `--hashes N` synthetic images (random 64-bit hashes at three views) of which a share are planted copies
(their original's hashes with up to `--flip` bits flipped); `dedup.near_duplicates` in one process: recall of the
planted copies, false merges, seconds and the process's peak memory.

Figures print as a table; `--json FILE` keeps them; docs/benchmarks.md records them.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from datagen.measure import positive, table


def _folder(root: Path, size: int) -> int:
    from PIL import Image

    from datagen.text_photos import PHOTOS, photo

    root.mkdir(parents=True)
    for name in PHOTOS:
        image = photo(name, square=size)
        Image.fromarray(image).save(root / f"{name}.png")
        Image.fromarray(image).save(root / f"{name}.jpg", quality=85)
    return 2 * len(PHOTOS)


def map_stage(size: int = 512, repeats: int = 3, where: str | None = None) -> dict[str, Any]:
    from datagen import curate, dedup, models
    from datagen.config import RoleSpec
    from datagen.resolve import load_pipeline
    from datagen.sources import build_source

    root = Path(tempfile.mkdtemp(prefix="datagen-bench-", dir=where))
    try:
        count = _folder(root / "photos", size)
        pipeline = load_pipeline("local")
        source = build_source("images", pipeline.image_size, str(root / "photos"))
        nsfw = models.build("nsfw", RoleSpec(backend="nudenet", args={"threads": 1}))
        nsfw.load()
        import cv2

        cv2.setNumThreads(1)
        runs = {}
        for label, role in (("with NudeNet", nsfw), ("without NudeNet (baseline)", None)):
            best = float("inf")
            for _ in range(repeats):
                started = time.perf_counter()
                curate.curate_shard(source, 0, count, pipeline.curate, role, 50_000_000)
                best = min(best, time.perf_counter() - started)
            runs[label] = {"seconds": best, "images_s": count / best}
        refs = [source.ref(0, i) for i in range(count)]
        steps = {"decode": 0.0, "size, aspect, blur": 0.0, "hash (3 views)": 0.0, "NudeNet": 0.0}
        for ref in refs:
            started = time.perf_counter()
            image = source.original(ref, 50_000_000)
            steps["decode"] += time.perf_counter() - started
            started = time.perf_counter()
            curate.measure(image)
            steps["size, aspect, blur"] += time.perf_counter() - started
            started = time.perf_counter()
            dedup.image_hashes(image)
            steps["hash (3 views)"] += time.perf_counter() - started
            started = time.perf_counter()
            nsfw.score_batch([image])
            steps["NudeNet"] += time.perf_counter() - started
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {"images": count, "size": size, "runs": runs,
            "ms_per_image": {step: 1000 * s / count for step, s in steps.items()}}  # fmt: skip


def synthetic(n: int, planted: float, flip: int, seed: int = 0) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """n items {key, hashes, rank}: a `planted` share are copies of an earlier original (each view's hash with up
    to `flip` bits flipped); returns the items and copy key -> original key."""
    rng = np.random.default_rng(seed)
    originals = int(n * (1 - planted))
    views = rng.integers(0, 2**63, size=(originals, 3), dtype=np.int64).astype(np.uint64)
    views ^= rng.integers(0, 2, size=(originals, 3), dtype=np.uint64) << np.uint64(63)
    items = [{"key": f"o{i:09d}", "hashes": tuple(int(h) for h in views[i]), "rank": (-2, f"o{i:09d}")}
             for i in range(originals)]  # fmt: skip
    truth = {}
    for j in range(n - originals):
        source = int(rng.integers(originals))
        bits = rng.choice(64, size=int(rng.integers(0, flip + 1)), replace=False)
        mask = sum(1 << int(b) for b in bits)
        key = f"c{j:09d}"
        items.append({"key": key, "hashes": tuple(int(h) ^ mask for h in views[source]), "rank": (-1, key)})
        truth[key] = f"o{source:09d}"
    return items, truth


def dedup_stage(n: int, planted: float = 0.1, flip: int = 6) -> dict[str, Any]:
    from datagen import dedup

    items, truth = synthetic(n, planted, flip)
    started = time.perf_counter()
    found = dedup.near_duplicates(items)
    seconds = time.perf_counter() - started
    hit = sum(1 for copy, original in truth.items() if found.get(copy) == original)
    false = sum(1 for key in found if key not in truth)
    return {"hashes": n, "planted": len(truth), "flip_up_to": flip, "recall": hit / max(1, len(truth)),
            "false_merges": false, "seconds": seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # fmt: skip


def bench_curate(size: int, hashes: int, flip: int, repeats: int, where: str | None) -> dict[str, Any]:
    return {"bench": "curate", "map": map_stage(size, repeats, where), "dedup": dedup_stage(hashes, flip=flip)}


def print_curate(r: dict[str, Any]) -> None:
    m, d = r["map"], r["dedup"]
    print(f"curate map stage: {m['images']} photos of {m['size']} px (PNG and JPEG), one core")
    rows = [[label, f"{run['images_s']:.1f}", f"{1000 / run['images_s']:.1f}"] for label, run in m["runs"].items()]
    print(table(rows, ["run", "images/s per core", "ms per image"]))
    print("ms per image by step: " + ", ".join(f"{k} {v:.1f}" for k, v in m["ms_per_image"].items()))
    print(f"dedup in one process: {d['hashes']} hashes, {d['planted']} planted copies (up to {d['flip_up_to']} bits "
          f"flipped): recall {d['recall']:.4f}, {d['false_merges']} false merges, {d['seconds']:.1f} s, peak RSS "
          f"{d['peak_rss_mb']:.0f} MB")  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", type=positive, default=512, help="side of the square photos (default 512)")
    parser.add_argument("--hashes", type=positive, default=100_000, help="synthetic images to deduplicate")
    parser.add_argument("--flip", type=int, default=6, help="bits a planted copy differs by, at most (default 6)")
    parser.add_argument("--repeats", type=positive, default=3, help="timed passes of the map stage, best kept")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--tmp", metavar="DIR", help="where the benchmark writes (default: the system's temp dir)")
