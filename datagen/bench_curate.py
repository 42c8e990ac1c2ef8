"""`datagen bench curate`: the curate phase's map stage on one core, and the deduplication of synthetic hashes.

map: scikit-image's photos as 512-px squares, each also as a JPEG (an `images` folder); the product's
`curate_shard` over all of them on one core (NudeNet's session at one thread), and the same stage without the
nsfw role (the baseline, same run): images/s per core, and ms per image of each step (decode, size and blur, hash,
NudeNet) timed by calling the product's own functions.

photos: scikit-image's 14 photos with their derived copies (resized, JPEG, cropped, brightened, rotated,
watermarked, mirrored) and under shared overlays (banner, disc, logo, border): recall by transform and false merges
of the product's deduplication, beside the pHash alone with connected components (the baseline, same run).

dedup: synthetic sets of `--hashes N ...` images (random 256-bit hashes at four views, made from the ids), 10% of
them planted copies of a random original, each k bits from it, k drawn from how far the test photos' derived copies
are from theirs (`measured_flips`); deduplicated by the product's own code in one process (the baseline: arrays,
partitions spilled to disk when large) and on Ray Data (`--ray-hashes N ...`, whose workers make the hashes: the
driver never holds them): recall of the planted copies, overall and by bits flipped, false merges, seconds, and
the peak memory of the driver and of the Ray workers on this machine.

Figures print as a table; `--json FILE` keeps them; docs/benchmarks.md records them.
"""

from __future__ import annotations

import argparse
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
        for label, roles in (("with NudeNet", {"nsfw": nsfw}), ("without NudeNet (baseline)", {})):
            best = float("inf")
            for _ in range(repeats):
                started = time.perf_counter()
                curate.curate_shard(source, 0, count, pipeline.curate, roles, 50_000_000)
                best = min(best, time.perf_counter() - started)
            runs[label] = {"seconds": best, "images_s": count / best}
        refs = [source.ref(0, i) for i in range(count)]
        steps = {"decode": 0.0, "size, aspect, blur": 0.0, "hashes (4 views, cells)": 0.0, "NudeNet": 0.0}
        for ref in refs:
            started = time.perf_counter()
            image = source.original(ref, 50_000_000)
            steps["decode"] += time.perf_counter() - started
            started = time.perf_counter()
            curate.measure(image)
            steps["size, aspect, blur"] += time.perf_counter() - started
            started = time.perf_counter()
            dedup.image_hashes(image)
            steps["hashes (4 views, cells)"] += time.perf_counter() - started
            started = time.perf_counter()
            nsfw.score_batch([image])
            steps["NudeNet"] += time.perf_counter() - started
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {
        "images": count,
        "size": size,
        "runs": runs,
        "ms_per_image": {step: 1000 * s / count for step, s in steps.items()},
    }


def _mix(values: np.ndarray) -> np.ndarray:
    """splitmix64 of each uint64: the synthetic set is a function of its ids, so any worker makes any part of it."""
    with np.errstate(over="ignore"):
        z = values + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _draw(ids: np.ndarray, stream: int, seed: int, width: int = 1) -> np.ndarray:
    base = (ids.astype(np.uint64) * np.uint64(1 << 12) + np.uint64(stream)) ^ (np.uint64(seed) << np.uint64(52))
    return _mix(base[:, None] + np.arange(width, dtype=np.uint64)[None, :])


def _originals(n: int, planted: float) -> int:
    return n - int(n * planted)


def synthetic_batch(ids: np.ndarray, n: int, planted: float, seed: int, flips: list[int]):
    """Hashes (len(ids), IMAGE_WORDS int64) of ids of a synthetic set of n: the first (1 - planted) share are
    originals (random bits at each view), the rest copies of a random original with k of the 256 bits of its pHash
    flipped at every view, k drawn from `flips` (its cell signatures kept: the banding, measured here, reads the
    pHashes only; the cells are measured on real photos). Returns the words, each id's original (itself for an
    original) and k."""
    from datagen import dedup

    originals = _originals(n, planted)
    copy = ids >= originals
    source = np.where(copy, (_draw(ids, 12, seed)[:, 0] % np.uint64(originals)).astype(np.int64), ids)
    width = dedup.IMAGE_WORDS
    words = _draw(source, 0, seed, width)
    k = np.where(copy, np.asarray(flips)[_draw(ids, 13, seed)[:, 0] % np.uint64(len(flips))], 0)
    order = np.argsort(_draw(ids, 256, seed, dedup.BITS), axis=1)  # a random order of the bits, per id
    flipped = np.zeros((len(ids), dedup.BITS), dtype=np.uint8)
    np.put_along_axis(flipped, order, (np.arange(dedup.BITS)[None, :] < k[:, None]).astype(np.uint8), axis=1)
    mask = np.packbits(flipped, axis=1).view(">u8").astype(np.uint64)  # (m, WORDS)
    words[:, : dedup.PHASH_WORDS] ^= np.tile(mask, len(dedup.VIEWS))
    return words.view(np.int64), source, k


def synthetic_words(n: int, planted: float, seed: int, flips: list[int], chunk: int = 100_000):
    """The whole synthetic set in one array, and copy id -> (its original, bits flipped)."""
    parts = [synthetic_batch(np.arange(s, min(n, s + chunk)), n, planted, seed, flips) for s in range(0, n, chunk)]
    words = np.concatenate([w for w, _, _ in parts])
    source, k = np.concatenate([x for _, x, _ in parts]), np.concatenate([y for _, _, y in parts])
    copies = np.flatnonzero(source != np.arange(n))
    return words, {int(c): (int(source[c]), int(k[c])) for c in copies}


def measured_flips() -> list[int]:
    """How far each derived copy of the test photos is from its original (bits, at the closest views): the planted
    copies are drawn from these (random bits flipped, which bands find less often than a real copy's)."""
    from datagen import dedup
    from datagen.text_photos import PHOTOS, derived_copies, photo

    out = []
    for name in PHOTOS:
        original = photo(name)
        hashes = dedup.image_hashes(original)
        out += [dedup.distance(hashes, dedup.image_hashes(copy)) for copy in derived_copies(original).values()]
    return sorted(out)


class PeakMemory:
    """Peak resident memory of this process and, separately, of the Ray worker processes on this machine
    (sampled every 50 ms: their sum), while the `with` block runs."""

    def __init__(self):
        import threading

        self.driver = self.workers = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.is_set():
            self.driver = max(self.driver, me.memory_info().rss)
            total = 0
            for proc in psutil.process_iter(["name", "cmdline"]):
                try:
                    if (proc.info["cmdline"] or [""])[0].startswith("ray::"):
                        total += proc.memory_info().rss
                except psutil.Error:
                    continue
            self.workers = max(self.workers, total)
            self._stop.wait(0.05)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _score(dropped: dict[str, str], n: int, planted: float, seed: int, flips: list[int]) -> dict[str, Any]:
    """Recall of the planted copies (a copy found names its original), by bits flipped; false merges (an original
    dropped, or a copy said to duplicate another original)."""
    hits, totals, false = np.zeros(257, int), np.zeros(257, int), 0
    for start in range(0, n, 100_000):
        ids = np.arange(start, min(n, start + 100_000))
        _, source, k = synthetic_batch(ids, n, planted, seed, flips)
        for i, original, bits in zip(ids.tolist(), source.tolist(), k.tolist(), strict=True):
            kept = dropped.get(f"{i:09d}")
            if original == i:
                false += kept is not None
            else:
                totals[bits] += 1
                hits[bits] += kept == f"{original:09d}"
                false += kept is not None and kept != f"{original:09d}"
    by_bits = {int(b): round(float(hits[b] / totals[b]), 4) for b in np.flatnonzero(totals)}
    return {
        "planted": int(totals.sum()),
        "recall": float(hits.sum() / max(1, totals.sum())),
        "recall_by_bits": by_bits,
        "false_merges": false,
    }


def dedup_stage(n: int, planted: float, flips: list[int], on_ray: bool, seed: int = 0) -> dict[str, Any]:
    """Deduplicate n synthetic hashes in this process (`dedup.near_duplicates` on arrays) or on Ray Data, whose
    workers make the hashes from the ids (the driver never holds them)."""
    from datagen import dedup

    started = time.perf_counter()
    with PeakMemory() as memory:
        if on_ray:
            import ray

            from datagen.distribute import init_ray

            init_ray(None)
            started = time.perf_counter()

            def rows(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
                ids = batch["id"].astype(np.int64)
                words, source, _ = synthetic_batch(ids, n, planted, seed, flips)
                return {
                    "id": ids,
                    "key": np.array([f"{i:09d}" for i in ids], dtype=object),
                    "words": words,
                    "rank": np.where(source == ids, -2.0, -1.0)[:, None],
                }

            dataset = ray.data.range(n, override_num_blocks=max(2, n // 100_000)).map_batches(
                rows, batch_format="numpy", batch_size=100_000
            )
            dropped = dedup.near_duplicates_ray(dataset)
        else:
            words, truth = synthetic_words(n, planted, seed, flips)
            a, b = dedup.pairs_of_words(words)
            del words
            ranks = {i: (-1.0 if i in truth else -2.0, f"{i:09d}") for i in np.unique(np.concatenate([a, b])).tolist()}
            dropped = dedup.resolve(a, b, ranks, {i: f"{i:09d}" for i in ranks})
        seconds = time.perf_counter() - started
    result = {
        "hashes": n,
        "where": "Ray Data" if on_ray else "one process",
        "seconds": seconds,
        "driver_peak_mb": memory.driver / 2**20,
        "workers_peak_mb": memory.workers / 2**20,
    }
    return {**result, **_score(dropped, n, planted, seed, flips)}


def photo_stage() -> dict[str, Any]:
    """Precision and recall on real photos, by the product's `near_duplicates`: scikit-image's 14 photos with their
    derived copies (recall by transform, false merges), and the same photos under each shared overlay (false merges:
    every pair merged is distinct). Beside it, the baseline in the same run: the pHash alone, grouped by connected
    components (the method before the cell signature and the chain-free grouping)."""
    from datagen import dedup
    from datagen.text_photos import OVERLAYS, PHOTOS, derived_copies, photo, with_overlay

    def phash_alone(items: list[dict[str, Any]]) -> dict[str, str]:
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        views = len(dedup.VIEWS)
        pairs = [
            (i, j)
            for i in range(len(items))
            for j in range(i + 1, len(items))
            if dedup.distance(items[i]["hashes"][: views - 1], items[j]["hashes"][: views - 1]) <= dedup.MAX_DISTANCE
        ]
        rows, cols = zip(*pairs, strict=True) if pairs else ((), ())
        graph = coo_matrix(([1] * len(pairs), (rows, cols)), shape=(len(items), len(items)))
        _, labels = connected_components(graph, directed=False)
        best: dict[int, int] = {}
        for i, label in enumerate(labels):
            if label not in best or items[i]["rank"] < items[best[label]]["rank"]:
                best[label] = i
        return {items[i]["key"]: items[best[label]]["key"] for i, label in enumerate(labels) if best[label] != i}

    derived = []
    for name in PHOTOS:
        original = photo(name)
        for suffix, image in [("original", original), *derived_copies(original).items()]:
            key = f"{name}/{suffix}"
            derived.append(
                {
                    "key": key,
                    "hashes": dedup.image_hashes(image),
                    "rank": dedup.rank(key, image.shape[1], image.shape[0]),
                }
            )
    overlaid = {
        overlay: [
            {
                "key": name,
                "hashes": dedup.image_hashes(with_overlay(photo(name), overlay)),
                "rank": dedup.rank(name, 1, 1),
            }
            for name in PHOTOS
        ]
        for overlay in OVERLAYS
    }
    out = {}
    for method, find in (("shipped", dedup.near_duplicates), ("pHash alone, connected", phash_alone)):
        dropped = find(derived)
        same = {key: kept for key, kept in dropped.items() if key.split("/")[0] == kept.split("/")[0]}
        kept = {item["key"] for item in derived} - set(dropped)
        transforms = sorted({item["key"].split("/")[1] for item in derived} - {"original"})
        recall = {}
        for transform in transforms:  # a copy is found when it, or the original, is dropped for the other
            found = sum(
                1
                for name in PHOTOS
                if f"{name}/{transform}" in same
                or (f"{name}/{transform}" in kept and same.get(f"{name}/original") == f"{name}/{transform}")
            )
            recall[transform] = round(found / len(PHOTOS), 4)
        out[method] = {
            "recall_by_transform": recall,
            "derived_false_merges": len(dropped) - len(same),
            "overlay_false_merges": {overlay: len(find(items)) for overlay, items in overlaid.items()},
        }
    return {"photos": len(PHOTOS), "copies_per_photo": len(derived) // len(PHOTOS) - 1, "methods": out}


def bench_curate(
    size: int, hashes: list[int], ray_hashes: list[int], repeats: int, where: str | None
) -> dict[str, Any]:
    flips = measured_flips()
    runs = [dedup_stage(n, PLANTED, flips, on_ray=False) for n in hashes]
    runs += [dedup_stage(n, PLANTED, flips, on_ray=True) for n in ray_hashes]
    return {
        "bench": "curate",
        "photos": photo_stage(),
        "map": map_stage(size, repeats, where),
        "dedup": {"planted_share": PLANTED, "flips": flips, "runs": runs},
    }


PLANTED = 0.1
"""Share of the synthetic set that are planted copies."""


def print_curate(r: dict[str, Any]) -> None:
    m, d, p = r["map"], r["dedup"], r["photos"]
    print(
        f"near-duplicates on real photos: {p['photos']} photos, {p['copies_per_photo']} derived copies each, and "
        f"the photos under each shared overlay"
    )
    methods = p["methods"]
    transforms = list(next(iter(methods.values()))["recall_by_transform"])
    overlays = list(next(iter(methods.values()))["overlay_false_merges"])
    rows = [
        [
            method,
            *(f"{v['recall_by_transform'][t]:.2f}" for t in transforms),
            str(v["derived_false_merges"]),
            *(str(v["overlay_false_merges"][o]) for o in overlays),
        ]
        for method, v in methods.items()
    ]
    print(table(rows, ["method", *transforms, "false merges (copies)", *(f"merged ({o})" for o in overlays)]))
    print(f"curate map stage: {m['images']} photos of {m['size']} px (PNG and JPEG), one core")
    rows = [[label, f"{run['images_s']:.1f}", f"{1000 / run['images_s']:.1f}"] for label, run in m["runs"].items()]
    print(table(rows, ["run", "images/s per core", "ms per image"]))
    print("ms per image by step: " + ", ".join(f"{k} {v:.1f}" for k, v in m["ms_per_image"].items()))
    print(
        f"dedup: {d['planted_share']:.0%} planted copies, each {min(d['flips'])}-{max(d['flips'])} bits from its "
        f"original as the test photos' derived copies are (median {int(np.median(d['flips']))})"
    )
    far = sorted({bits for run in d["runs"] for bits in run["recall_by_bits"]})
    rows = [
        [
            f"{run['hashes']:,}",
            run["where"],
            f"{run['seconds']:.1f}",
            f"{run['recall']:.4f}",
            *(f"{run['recall_by_bits'].get(bits, float('nan')):.3f}" for bits in far if bits >= 16),
            str(run["false_merges"]),
            f"{run['driver_peak_mb']:.0f}",
            f"{run['workers_peak_mb']:.0f}",
        ]
        for run in d["runs"]
    ]
    heads = [
        "hashes",
        "where",
        "seconds",
        "recall",
        *(f"at {bits} bits" for bits in far if bits >= 16),
        "false merges",
        "driver peak MB",
        "Ray workers peak MB",
    ]
    print(table(rows, heads))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", type=positive, default=512, help="side of the square photos (default 512)")
    parser.add_argument(
        "--hashes",
        type=positive,
        nargs="+",
        default=[100_000],
        help="synthetic set sizes to deduplicate in one process (default 100000)",
    )
    parser.add_argument(
        "--ray-hashes",
        type=positive,
        nargs="*",
        default=[100_000],
        help="the same on Ray Data, its workers making the hashes (default 100000)",
    )
    parser.add_argument("--repeats", type=positive, default=3, help="timed passes of the map stage, best kept")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--tmp", metavar="DIR", help="where the benchmark writes (default: the system's temp dir)")
