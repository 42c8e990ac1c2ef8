"""Near-duplicate inputs: a perceptual hash per image, candidates found by banding, duplicates grouped, one kept.

The hash is pHash (the 8x8 lowest frequencies of the DCT of a 32x32 grey thumbnail, each bit above or below their
median) taken at three centred views — the whole image, its central 94% and 88% — so that a copy cropped by a few
percent (as a crawl holds them) meets its original at some pair of views. Measured on scikit-image's 14 photos
against copies resized (0.5-1.5x), re-encoded as JPEG (quality 30-90), cropped (3% and 6% a side) and brightened:
every copy within 8 bits of its original at the closest pair of views (most within 2), distinct photos 20 bits
apart or more. MAX_DISTANCE sits between.

Candidates: two images are compared only when some view of each agrees on every bit of a band — BAND_BITS bits
sampled from the 64 by a fixed permutation, TABLES bands — so the work grows with the number of images, not its
square; a band is a key a distributed group-by can shuffle on (`near_duplicates_ray`). Within a group of
duplicates the kept image is the best by `rank` (highest resolution first, then what the caller adds, then key):
deterministic whatever the order they come in.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import cv2
import numpy as np

VIEWS = (1.0, 0.94, 0.88)
"""Centred views hashed, as shares of each side."""
MAX_DISTANCE = 10
"""Hamming distance (of 64 bits) at or under which two images are duplicates, at their closest pair of views."""
BAND_BITS = 16
TABLES = 24
"""Bands: each TABLES band samples BAND_BITS of the 64 bits. A pair at distance d shares a given band with
probability C(64-d, 16)/C(64, 16): 0.31 at d=4, 0.085 at d=8; over 24 bands and the 9 pairs of views, copies
(distance 0-2 at their closest views) are candidates with certainty and a pair 8 bits apart with 88%."""


def _centre(grey: np.ndarray, share: float) -> np.ndarray:
    if share >= 1:
        return grey
    height, width = grey.shape
    dy, dx = int(height * (1 - share) / 2), int(width * (1 - share) / 2)
    return grey[dy : height - dy, dx : width - dx]


def phash(grey: np.ndarray) -> int:
    """64-bit pHash of a grey image (float32)."""
    small = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA)
    low = cv2.dct(small)[:8, :8].ravel()
    return int(np.packbits(low > np.median(low[1:])).view(">u8")[0])


def image_hashes(image: np.ndarray) -> tuple[int, ...]:
    """The pHash of each of VIEWS of an RGB (or grey) uint8 image."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    grey = grey.astype(np.float32)
    return tuple(phash(_centre(grey, share)) for share in VIEWS)


def distance(a: Sequence[int], b: Sequence[int]) -> int:
    """Hamming distance of two images' hashes at their closest pair of views."""
    return min((x ^ y).bit_count() for x in a for y in b)


def _band_masks(tables: int = TABLES, bits: int = BAND_BITS, seed: int = 0) -> list[int]:
    rng = np.random.default_rng(seed)
    return [sum(1 << int(bit) for bit in rng.permutation(64)[:bits]) for _ in range(tables)]


BAND_MASKS = _band_masks()
"""The bits each band keeps (fixed: the same bands on every worker and every run)."""


def band_keys(hashes: Sequence[int]) -> set[tuple[int, int]]:
    """(band, the image's bits there) for every view and band: two images sharing one are compared."""
    return {(n, h & mask) for h in hashes for n, mask in enumerate(BAND_MASKS)}


def rank(key: str, width: int, height: int, *better: float) -> tuple:
    """Sort key of a duplicate group, best first: highest resolution, then `better` (e.g. the aesthetic score),
    higher first, then the key."""
    return (-width * height, *(-value for value in better), key)


def pairs_in_bucket(members: Sequence[tuple[str, tuple[int, ...]]], max_distance: int = MAX_DISTANCE):
    """The duplicate pairs (key, key) among images that share a band, each pair once (sorted)."""
    for i, (key_a, hashes_a) in enumerate(members):
        for key_b, hashes_b in members[i + 1 :]:
            if key_a != key_b and distance(hashes_a, hashes_b) <= max_distance:
                yield (key_a, key_b) if key_a < key_b else (key_b, key_a)


def groups(pairs: Iterable[tuple[str, str]]) -> list[set[str]]:
    """Connected groups of the duplicate pairs (union-find): a copy of a copy is a copy."""
    parent: dict[str, str] = {}

    def root(key: str) -> str:
        parent.setdefault(key, key)
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    for a, b in pairs:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    found: dict[str, set[str]] = defaultdict(set)
    for key in parent:
        found[root(key)].add(key)
    return sorted(found.values(), key=min)


def resolve(found: list[set[str]], ranks: dict[str, tuple]) -> dict[str, str]:
    """dropped key -> the key it duplicates (the best of its group by rank)."""
    dropped = {}
    for group in found:
        kept = min(group, key=lambda key: ranks[key])
        dropped.update({key: kept for key in group if key != kept})
    return dict(sorted(dropped.items()))


def near_duplicates(items: Iterable[dict[str, Any]], max_distance: int = MAX_DISTANCE) -> dict[str, str]:
    """One process: items {key, hashes, rank} -> {dropped key: kept key}."""
    buckets: dict[tuple[int, int], list[tuple[str, tuple[int, ...]]]] = defaultdict(list)
    ranks = {}
    for item in items:
        ranks[item["key"]] = tuple(item["rank"])
        for band in band_keys(item["hashes"]):
            buckets[band].append((item["key"], tuple(item["hashes"])))
    pairs = {
        pair for members in buckets.values() if len(members) > 1 for pair in pairs_in_bucket(members, max_distance)
    }
    return resolve(groups(pairs), ranks)


def signed(value: int) -> int:
    """A 64-bit pattern as Arrow's int64 holds it."""
    return value - (1 << 64) if value >= 1 << 63 else value


def unsigned(value: int) -> int:
    return value + (1 << 64) if value < 0 else value


def near_duplicates_ray(dataset, max_distance: int = MAX_DISTANCE) -> dict[str, str]:
    """`near_duplicates` on Ray Data across the cluster: `dataset` holds rows {key, hashes (int64 bit patterns),
    rank}. Every (band, bits) is a group-by key, shuffled across the workers; each group compares its members and
    emits the duplicate pairs. The driver collects only the pairs and the ranks of the keys in them — never every
    hash."""

    def bands(row: dict[str, Any]) -> list[dict[str, Any]]:
        hashes = [unsigned(int(h)) for h in row["hashes"]]
        return [{"band": n, "bits": signed(bits), "key": row["key"], "hashes": row["hashes"]}
                for n, bits in sorted(band_keys(hashes))]  # fmt: skip

    def compare(group: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        members = [(str(key), tuple(unsigned(int(h)) for h in hashes))
                   for key, hashes in zip(group["key"], group["hashes"], strict=True)]  # fmt: skip
        found = sorted(set(pairs_in_bucket(members, max_distance))) if len(members) > 1 else []
        return {"a": np.array([a for a, _ in found], dtype=object), "b": np.array([b for _, b in found], dtype=object)}

    pairs = dataset.flat_map(bands).groupby(["band", "bits"]).map_groups(compare, batch_format="numpy")
    edges = {(str(row["a"]), str(row["b"])) for row in pairs.iter_rows()}
    involved = {key for edge in edges for key in edge}
    ranks = {str(row["key"]): tuple(row["rank"])
             for row in dataset.filter(lambda row: row["key"] in involved).iter_rows()}  # fmt: skip
    return resolve(groups(edges), ranks)


def as_rows(items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Items {key, hashes, rank} as Ray Data rows (hashes as int64 bit patterns)."""
    return [{"key": item["key"], "hashes": [signed(h) for h in item["hashes"]], "rank": list(item["rank"])}
            for item in items]  # fmt: skip
