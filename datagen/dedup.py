"""Near-duplicate inputs: perceptual hashes per image, candidates found by banding, each pair verified, one kept.

The hash is a 256-bit pHash (the 16x16 lowest frequencies of the DCT of a 32x32 grey thumbnail, each bit above or
below their median) taken at four views — the whole image, its central 94% and 88%, and the whole image mirrored —
so that a copy cropped by a few percent (as a crawl holds them) meets its original at some pair of views, and a
mirrored copy meets it at the mirrored one. Measured on scikit-image's 14 photos against copies resized (0.5,
0.75x), re-encoded as JPEG (quality 30-90), cropped (3% and 6% a side), brightened, rotated by 2 degrees, watermarked
and mirrored: most copies 0 bits from their original at the closest pair of views, JPEG at quality 30 up to 30 bits,
the brightened copies (clipped highlights) up to 48; distinct photos 106 bits apart or more. MAX_DISTANCE sits
between. (The 64-bit pHash the first version used kept copies within 8 bits and photos 20 apart, but among 100,000
random hashes it merged 292 distinct images: 64 bits are too few for a crawl.)

A second signal settles what pHash alone gets wrong: an overlay shared by distinct photos (a stock banner, a logo,
a sticker) dominates the low frequencies and brings them within MAX_DISTANCE (56-62 bits for a disc in a corner).
Each view also keeps a cell signature (`cells`: 16 bits for each of a 4x4 grid of cells); a pair is a duplicate
only where few cells are unrelated (`MAX_UNRELATED_CELLS`): an overlay agrees in its own cells, a copy in nearly all.

Candidates: two images are compared only when some view of each agrees on every bit of a band — `band_bits(n)`
bits sampled from the 256 by a fixed permutation, TABLES bands — so the work grows with the number of images, not
its square. The band is as wide as the set needs to keep its buckets small (about log2 n + 2 bits): a pair far
apart is a candidate less often in a large set, and the recall that costs is measured (`datagen bench curate`).
A band is a key a distributed shuffle partitions on (`near_duplicates_ray`); each partition finds its candidate
pairs with arrays, not per item, and emits a duplicate pair only from the first band it shares, so every pair
reaches the driver once. The kept image is the best by `rank` (highest resolution first, then what the caller adds,
then key), and an image is dropped only for a kept image it is itself a duplicate of, never through a chain of
copies (`resolve`): deterministic whatever the order they come in.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import cv2
import numpy as np

VIEWS = ((1.0, False), (0.94, False), (0.88, False), (1.0, True))
"""Views hashed: (centred share of each side, mirrored left to right). The mirrored whole image meets a mirrored
copy's whole image (pHash is not flip-invariant: a mirrored copy is 112-126 bits from its original)."""
SIDE = 16
"""The hash keeps the SIDE x SIDE lowest DCT frequencies: SIDE**2 bits per view."""
BITS = SIDE * SIDE
WORDS = BITS // 64
"""A view's hash as WORDS 64-bit words (most significant first), as the curated inputs store it."""
HASHES = 2 * len(VIEWS)
"""An image's hashes: each view's pHash, then each view's cell signature (`cells`)."""
IMAGE_WORDS = HASHES * WORDS
"""An image's hashes as 64-bit words: what the curated inputs store and the arrays below hold per row."""
PHASH_WORDS = len(VIEWS) * WORDS
"""The first PHASH_WORDS of a row are the pHashes (banded and measured); the rest the cell signatures."""
MAX_DISTANCE = 64
"""Hamming distance (of 256 bits) at or under which two images are duplicates, at their closest pair of views."""
TABLES = 48
"""Bands per view: recall of the far copies against time (docs/benchmarks.md). On ten million synthetic hashes
(26-bit bands) with copies planted at the distances the test photos' copies have: 32 tables found 98.87% of them
in 844 s, 40 tables 98.96% in 1,118 s, 48 tables 99.04% in 1,589 s; every copy within 16 bits is found in each,
the misses are the copies 30 and 48 bits away (JPEG at quality 30, clipped brightening)."""
MIN_BAND_BITS, MAX_BAND_BITS = 12, 32


def band_bits(n: int) -> int:
    """Bits per band for a set of n images (a multiple of UNIT): a band's bucket holds a random image of a view one
    time in four or less."""
    wanted = math.ceil(math.log2(max(n, 2))) + 2
    return min(MAX_BAND_BITS, max(MIN_BAND_BITS, -(-wanted // UNIT) * UNIT))


def _view(grey: np.ndarray, share: float, mirrored: bool) -> np.ndarray:
    if mirrored:
        grey = grey[:, ::-1]
    if share >= 1:
        return grey
    height, width = grey.shape
    dy, dx = int(height * (1 - share) / 2), int(width * (1 - share) / 2)
    return grey[dy : height - dy, dx : width - dx]


def phash(small: np.ndarray) -> int:
    """256-bit pHash of a 32x32 grey thumbnail (float32)."""
    low = cv2.dct(small)[:SIDE, :SIDE].ravel()
    return int.from_bytes(np.packbits(low > np.median(low[1:])).tobytes(), "big")


CELLS = 4
"""The cell signature cuts the 32x32 thumbnail into CELLS x CELLS cells of 8x8 pixels."""
FLAT = 3.0
"""A cell whose 4x4 means vary less than this (grey levels, standard deviation) is flat: its bits are all 0."""


def cells(small: np.ndarray) -> int:
    """256-bit cell signature of a 32x32 grey thumbnail: for each of the 16 cells (row by row), 16 bits, each of
    its 4x4 blocks of 2x2 pixels brighter than the cell's mean. Where pHash sums the whole image, this keeps each
    region apart: a large overlay shared by two distinct photos (a banner, a logo, a sticker) dominates the low DCT
    frequencies and brings their pHashes close, but it agrees in its own cells only (`unrelated_cells`)."""
    blocks = small.reshape(CELLS, 8, CELLS, 8).transpose(0, 2, 1, 3).reshape(CELLS * CELLS, 4, 2, 4, 2)
    means = blocks.mean(axis=(2, 4)).reshape(CELLS * CELLS, 16)
    bits = means > means.mean(axis=1, keepdims=True)
    bits[means.std(axis=1) < FLAT] = False
    return int.from_bytes(np.packbits(bits.ravel()).tobytes(), "big")


def image_hashes(image: np.ndarray) -> tuple[int, ...]:
    """HASHES ints of an RGB (or grey) uint8 image: the pHash of each of VIEWS, then the cell signature of each."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    grey = grey.astype(np.float32)
    smalls = [
        cv2.resize(np.ascontiguousarray(_view(grey, share, mirrored)), (32, 32), interpolation=cv2.INTER_AREA)
        for share, mirrored in VIEWS
    ]
    return tuple(phash(small) for small in smalls) + tuple(cells(small) for small in smalls)


def distance(a: Sequence[int], b: Sequence[int]) -> int:
    """Hamming distance of two images' pHashes at their closest pair of views."""
    views = len(VIEWS)
    return min((x ^ y).bit_count() for x in a[:views] for y in b[:views])


def is_duplicate(a: Sequence[int], b: Sequence[int], max_distance: int = MAX_DISTANCE) -> bool:
    """Whether two images' hashes (`image_hashes`) make them near-duplicates: their pHashes within `max_distance`
    and their cells related (`unrelated_cells`)."""
    words = np.array([to_words(a), to_words(b)], dtype=np.int64)
    return bool(duplicates(words[:1], words[1:], max_distance)[0])


def to_words(hashes: Sequence[int]) -> list[int]:
    """An image's HASHES hashes as IMAGE_WORDS int64 (the bit patterns Arrow's int64 holds)."""
    raw = b"".join(h.to_bytes(BITS // 8, "big") for h in hashes)
    return np.frombuffer(raw, dtype=">i8").astype(np.int64).tolist()


def from_words(words: Sequence[int]) -> tuple[int, ...]:
    raw = np.asarray(words, dtype=np.int64).astype(">i8").tobytes()
    step = BITS // 8
    return tuple(int.from_bytes(raw[i : i + step], "big") for i in range(0, len(raw), step))


def rank(key: str, width: int, height: int, *better: float) -> tuple:
    """Sort key of a duplicate group, best first: highest resolution, then `better` (e.g. the aesthetic score),
    higher first, then the key."""
    return (-width * height, *(-value for value in better), key)


# ------------------------------------------------------------------------------------------- arrays of hashes


UNIT = 2
"""A band is gathered in units of this many bits (2: a band may be any even width)."""
UNITS = BITS // UNIT


def _permutations(tables: int = TABLES, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(UNITS) for _ in range(tables)])


PERMUTATIONS = _permutations()
"""Each band's order of the hash's 2-bit units (fixed: the same bands on every worker and every run); a band of b
bits keeps the first b/2 of its row. (Units, not single bits: a band is gathered half as often, and a copy's flipped
bits miss b bits of it about as likely either way.)"""


def _units(words: np.ndarray) -> np.ndarray:
    """(n, IMAGE_WORDS) int64 -> (n, views, UNITS) uint8 of the pHashes, most significant first."""
    raw = np.ascontiguousarray(words[:, :PHASH_WORDS].astype(">i8")).view(np.uint8)
    raw = raw.reshape(len(words), len(VIEWS), BITS // 8)
    shifts = np.arange(8 - UNIT, -1, -UNIT, dtype=np.uint8)
    units = (raw[..., None] >> shifts) & np.uint8((1 << UNIT) - 1)
    return units.reshape(len(words), len(VIEWS), UNITS)


def bands(words: np.ndarray, bits: int) -> np.ndarray:
    """(n, TABLES, views) band values (uint64) of n images' hashes; `bits` a multiple of UNIT."""
    units = _units(words)
    values = np.zeros((len(words), len(VIEWS), TABLES), dtype=np.uint64)
    for position in range(bits // UNIT):  # one unit of every band at a time: (n, views, tables) each
        values <<= np.uint64(UNIT)
        values |= units[:, :, PERMUTATIONS[:, position]].astype(np.uint64)
    return values.transpose(0, 2, 1)


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """np.unique by sorting (numpy 2's np.unique hashes, several times slower on millions of uint64)."""
    values = np.sort(values)
    return values[np.concatenate([[True], values[1:] != values[:-1]])] if len(values) else values


def bucket_rows(words: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Every (bucket, row) of n images' hashes, a bucket being (table, band value) as one uint64; one per bucket an
    image is in (its views often agree)."""
    values = bands(words, bits)
    tables = np.arange(TABLES, dtype=np.uint64)[None, :, None] << np.uint64(bits)
    buckets = (values | tables).reshape(len(words), -1)
    row_bits = max(1, int(len(words) - 1).bit_length())
    assert bits + (TABLES - 1).bit_length() + row_bits <= 64, "a batch too large to key its rows"
    rows = np.repeat(np.arange(len(words), dtype=np.uint64), buckets.shape[1])
    unique = _sorted_unique((buckets.ravel() << np.uint64(row_bits)) | rows)  # by bucket, then row
    return unique >> np.uint64(row_bits), (unique & np.uint64((1 << row_bits) - 1)).astype(np.int64)


def partition_of(buckets: np.ndarray, parts: int) -> np.ndarray:
    """Which of `parts` partitions a bucket goes to (its bits mixed, so that neighbouring values spread)."""
    mixed = (buckets * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(40)
    return (mixed % np.uint64(parts)).astype(np.int64)


def distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """pHash Hamming distance at the closest pair of views, for rows of words a and b (n, IMAGE_WORDS); one pair of
    views at a time, so that n pairs take a few bytes each beyond their words."""
    views = len(VIEWS)
    a = np.ascontiguousarray(a[:, :PHASH_WORDS]).reshape(len(a), views, WORDS).view(np.uint64)
    b = np.ascontiguousarray(b[:, :PHASH_WORDS]).reshape(len(b), views, WORDS).view(np.uint64)
    best = np.full(len(a), BITS, dtype=np.int32)
    for i in range(views):
        for j in range(views):
            np.minimum(best, np.bitwise_count(a[:, i] ^ b[:, j]).sum(axis=-1, dtype=np.int32), out=best)
    return best


UNRELATED_BITS = 5
"""A cell is unrelated to the other image's when 5 or more of its 16 bits differ."""
MAX_UNRELATED_CELLS = 6
"""Near-duplicates have at most this many unrelated cells (of 16) at their most alike pair of views. Measured on
scikit-image's 14 photos: their copies (resized, JPEG at quality 30-90, cropped 3-6%, brightened, rotated 2 degrees,
watermarked) have 4 or fewer; distinct photos that share an overlay (a banner, a disc, a logo, a black border) and
whose pHashes fall within MAX_DISTANCE have 9 or more (tests/test_dedup.py, docs/benchmarks.md)."""


def _cell_bits(words: np.ndarray) -> np.ndarray:
    """(n, IMAGE_WORDS) int64 -> (n, views, cells) uint16: each cell's 16 bits."""
    cell_words = np.ascontiguousarray(words[:, PHASH_WORDS:].astype(">i8"))
    return cell_words.view(">u2").astype(np.uint16).reshape(len(words), len(VIEWS), CELLS * CELLS)


def unrelated_cells(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """For rows of words a and b (n, IMAGE_WORDS): the fewest unrelated cells over every pair of views."""
    views = len(VIEWS)
    a, b = _cell_bits(a), _cell_bits(b)
    best = np.full(len(a), CELLS * CELLS, dtype=np.int32)
    for i in range(views):
        for j in range(views):
            far = (np.bitwise_count(a[:, i] ^ b[:, j]) >= UNRELATED_BITS).sum(axis=-1, dtype=np.int32)
            np.minimum(best, far, out=best)
    return best


def duplicates(a: np.ndarray, b: np.ndarray, max_distance: int = MAX_DISTANCE) -> np.ndarray:
    """For rows of words a and b: whether each pair is a near-duplicate. pHash alone is the first test; the cells
    are the second signal, where pHash is ambiguous (a shared overlay)."""
    close = distances(a, b) <= max_distance
    if close.any():  # most candidates are far apart: the cells are compared for the close ones only
        close[close] = unrelated_cells(a[close], b[close]) <= MAX_UNRELATED_CELLS
    return close


def _first_shared(words_a: np.ndarray, words_b: np.ndarray, bits: int) -> np.ndarray:
    """For candidate pairs: the smallest bucket they share (a pair shares several when they are close)."""
    band_a, band_b = bands(words_a, bits), bands(words_b, bits)  # (n, tables, views)
    shared = band_a[:, :, :, None] == band_b[:, :, None, :]
    tables = np.arange(TABLES, dtype=np.uint64)[None, :, None, None] << np.uint64(bits)
    buckets = np.where(shared, band_a[:, :, :, None] | tables, np.uint64(np.iinfo(np.uint64).max))
    return buckets.reshape(len(buckets), -1).min(axis=1)


VERIFY_CHUNK = 1_000_000
"""Candidate pairs verified at once (their words gathered: about 200 bytes a pair)."""


def pairs_in_partition(
    buckets: np.ndarray,
    ids: np.ndarray,
    words_of: Callable[[np.ndarray], np.ndarray],
    bits: int,
    part: int = 0,
    parts: int = 1,
    max_distance: int = MAX_DISTANCE,
) -> tuple[np.ndarray, np.ndarray]:
    """The duplicate pairs (id a < id b) among the rows (bucket, id) of partition `part`: ids in one bucket are
    candidates (`words_of(ids)` gives their hashes); a pair is kept if it is within `max_distance` and the first
    bucket the two share is in this partition, so that a pair is found in one partition only."""
    if not len(ids):
        return np.empty(0, np.int64), np.empty(0, np.int64)
    id_bits = max(1, int(ids.max()).bit_length())
    assert bits + (TABLES - 1).bit_length() + id_bits <= 64, "ids too large to key the rows"
    keyed = np.sort((buckets << np.uint64(id_bits)) | ids.astype(np.uint64))  # by bucket, then id
    buckets = keyed >> np.uint64(id_bits)
    ids = (keyed & np.uint64((1 << id_bits) - 1)).astype(np.int64)
    del keyed
    a_ids, b_ids = [], []
    step = 1
    while step < len(buckets):  # rows i and i+step of one bucket: every pair in a bucket, a step at a time
        same = np.flatnonzero(buckets[:-step] == buckets[step:])
        if not len(same):
            break
        a_ids.append(ids[same])  # the smaller id: a bucket's ids are sorted
        b_ids.append(ids[same + step])
        step += 1
    if not a_ids:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    assert int(ids.max()) < 1 << 32, "ids must fit in 32 bits"
    pair = _sorted_unique(
        (np.concatenate(a_ids).astype(np.uint64) << np.uint64(32)) | np.concatenate(b_ids).astype(np.uint64)
    )
    a, b = (pair >> np.uint64(32)).astype(np.int64), (pair & np.uint64(0xFFFFFFFF)).astype(np.int64)
    del pair, a_ids, b_ids  # each pair once: close pairs share many buckets
    found_a, found_b = [], []
    for start in range(0, len(a), VERIFY_CHUNK):  # the candidates' words gathered a chunk at a time: flat memory
        at_a, at_b = a[start : start + VERIFY_CHUNK], b[start : start + VERIFY_CHUNK]
        words_a, words_b = words_of(at_a), words_of(at_b)
        close = duplicates(words_a, words_b, max_distance)
        if not close.any():
            continue
        at_a, at_b, words_a, words_b = at_a[close], at_b[close], words_a[close], words_b[close]
        mine = partition_of(_first_shared(words_a, words_b, bits), parts) == part
        found_a.append(at_a[mine])
        found_b.append(at_b[mine])
    if not found_a:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(found_a), np.concatenate(found_b)


def resolve(a: np.ndarray, b: np.ndarray, ranks: dict[int, tuple], keys: dict[int, str]) -> dict[str, str]:
    """dropped key -> the key it duplicates. The images in pairs are taken best first (by rank); each is dropped for
    the best kept image it is itself a near-duplicate of, or else kept. So a copy is always close to the photo it is
    dropped for, never joined to it through a chain of copies (A like B, B like C, C unlike A: C is kept), and the
    kept image of each group is the best by rank whatever the order the pairs come in."""
    neighbours: dict[int, list[int]] = {}
    for x, y in zip(a.tolist(), b.tolist(), strict=True):
        neighbours.setdefault(x, []).append(y)
        neighbours.setdefault(y, []).append(x)
    kept: set[int] = set()
    dropped = {}
    for i in sorted(neighbours, key=lambda i: ranks[i]):
        best = min((j for j in neighbours[i] if j in kept), key=lambda j: ranks[j], default=None)
        if best is None:
            kept.add(i)
        else:
            dropped[keys[i]] = keys[best]
    return dict(sorted(dropped.items()))


def partitions_for(n: int, rows: int = 2_000_000) -> int:
    """Partitions of the shuffle, so that each holds about `rows` bucket rows."""
    return max(1, math.ceil(n * TABLES * len(VIEWS) / rows))


# ------------------------------------------------------------------------------------------------ the two paths


def near_duplicates(items: Iterable[dict[str, Any]], max_distance: int = MAX_DISTANCE) -> dict[str, str]:
    """One process: items {key, hashes, rank} -> {dropped key: kept key}. The buckets are built one partition at a
    time, so the process holds one partition's rows besides the hashes."""
    items = list(items)
    n = len(items)
    words = np.array([to_words(item["hashes"]) for item in items], dtype=np.int64).reshape(n, IMAGE_WORDS)
    a, b = pairs_of_words(words, max_distance)
    return resolve(
        a,
        b,
        {i: tuple(item["rank"]) for i, item in enumerate(items)},
        {i: item["key"] for i, item in enumerate(items)},
    )


ROWS_IN_MEMORY = 40_000_000
"""One process holds this many bucket rows at once (16 bytes each, a few times that while sorting); a larger set's
rows are spilled to partition files on disk first, as a shuffle would, and each partition is read back alone."""


def pairs_of_words(
    words: np.ndarray, max_distance: int = MAX_DISTANCE, chunk: int = 50_000, parts: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The duplicate pairs (a < b) of an array of hashes (ids: row numbers), one partition at a time."""
    import tempfile
    from pathlib import Path

    n, bits = len(words), band_bits(len(words))
    parts = parts or partitions_for(n, rows=ROWS_IN_MEMORY)
    found_a, found_b = [], []
    with tempfile.TemporaryDirectory(prefix="datagen-dedup-") as tmp:
        files = [(Path(tmp) / f"{part}.buckets", Path(tmp) / f"{part}.ids") for part in range(parts)]
        for start in range(0, n, chunk):
            buckets, rows = bucket_rows(words[start : start + chunk], bits)
            where = partition_of(buckets, parts)
            order = np.argsort(where, kind="stable")
            cuts = np.searchsorted(where[order], np.arange(1, parts))
            for (bucket_file, id_file), mine in zip(files, np.split(order, cuts), strict=True):
                with open(bucket_file, "ab") as f:
                    buckets[mine].tofile(f)
                with open(id_file, "ab") as f:
                    (rows[mine] + start).tofile(f)
        for part, (bucket_file, id_file) in enumerate(files):
            if not bucket_file.exists():
                continue
            buckets, ids = np.fromfile(bucket_file, dtype=np.uint64), np.fromfile(id_file, dtype=np.int64)
            bucket_file.unlink()
            id_file.unlink()
            a, b = pairs_in_partition(buckets, ids, words.__getitem__, bits, part, parts, max_distance)
            found_a.append(a)
            found_b.append(b)
    if not found_a:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(found_a), np.concatenate(found_b)


def near_duplicates_ray(dataset, max_distance: int = MAX_DISTANCE) -> dict[str, str]:
    """`near_duplicates` on Ray Data across the cluster: `dataset` holds rows {id (int64, unique), key, words
    (`to_words`), rank (`rank` without its key, as float64)}. Each image's
    buckets are partitioned by a shuffle; each partition finds its duplicate pairs with arrays. The driver collects
    only the pairs and the ranks and keys of the images in them — never every hash."""
    n = dataset.count()
    if n < 2:
        return {}
    bits, parts = band_bits(n), partitions_for(n)

    def to_buckets(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        words = np.stack(batch["words"]).astype(np.int64)
        buckets, rows = bucket_rows(words, bits)
        ids = batch["id"].astype(np.int64)[rows]
        return {"part": partition_of(buckets, parts), "bucket": buckets, "id": ids, "words": words[rows]}

    def compare(group: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ids = group["id"].astype(np.int64)
        known, first = np.unique(ids, return_index=True)  # an id's rows carry the same words: its first row's
        words = np.stack(group["words"]).astype(np.int64)[first]
        a, b = pairs_in_partition(
            group["bucket"].astype(np.uint64),
            ids,
            lambda wanted: words[np.searchsorted(known, wanted)],
            bits,
            int(group["part"][0]),
            parts,
            max_distance,
        )
        return {"a": a, "b": b}

    pairs = (
        dataset.map_batches(to_buckets, batch_format="numpy").groupby("part").map_groups(compare, batch_format="numpy")
    )
    found = [(batch["a"], batch["b"]) for batch in pairs.iter_batches(batch_format="numpy", batch_size=None)]
    a = np.concatenate([x for x, _ in found]) if found else np.empty(0, np.int64)
    b = np.concatenate([y for _, y in found]) if found else np.empty(0, np.int64)
    involved = np.unique(np.concatenate([a, b]))
    ranks, keys = {}, {}
    if len(involved):

        def in_pairs(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            mine = np.isin(batch["id"], involved)
            return {"id": batch["id"][mine], "key": batch["key"][mine], "rank": batch["rank"][mine]}

        for batch in dataset.map_batches(in_pairs, batch_format="numpy").iter_batches(batch_format="numpy"):
            for i, key, value in zip(batch["id"], batch["key"], batch["rank"], strict=True):
                keys[int(i)] = str(key)
                ranks[int(i)] = (*(float(v) for v in value), str(key))
    return resolve(a, b, ranks, keys)
