"""Near-duplicate inputs on real photos: scikit-image's photos and copies derived from them (resized, re-encoded as
JPEG, cropped by a few percent, brightened) are all found as duplicates of their original, distinct photos never
merged; the kept copy is the best by resolution, whatever the order. (Ray Data's path, dedup.near_duplicates_ray,
is held to this one by tests/test_curate.py: a curation on Ray writes the same duplicates as inline.)"""

from __future__ import annotations

import random

import numpy as np
import pytest

from datagen import dedup
from datagen.text_photos import OVERLAYS, PHOTOS, derived_copies, photo, with_overlay


@pytest.fixture(scope="module")
def items() -> list[dict]:
    """Every photo and its copies, as the curate phase hashes them, in a shuffled order."""
    out = []
    for name in PHOTOS:
        original = photo(name)
        for suffix, image in [("original", original), *derived_copies(original).items()]:
            key = f"{name}/{suffix}"
            out.append({"key": key, "hashes": dedup.image_hashes(image),
                        "rank": dedup.rank(key, image.shape[1], image.shape[0])})  # fmt: skip
    random.Random(3).shuffle(out)
    return out


def test_every_copy_is_found_and_no_distinct_photos_are_merged(items):
    """One kept per photo: of its full-size versions (the original, its JPEGs, the brightened copy: the highest
    resolution), the first by key; every other version names it."""
    dropped = dedup.near_duplicates(items)
    full_size = {}
    for item in items:
        name = item["key"].split("/")[0]
        height, width = photo(name).shape[:2]
        if item["rank"][0] == -height * width:
            full_size.setdefault(name, []).append(item["key"])
    expected = {name: min(keys) for name, keys in full_size.items()}
    assert {item["key"] for item in items} - set(dropped) == set(expected.values())
    assert all(kept == expected[key.split("/")[0]] for key, kept in dropped.items()), dropped
    assert len(dropped) == len(items) - len(PHOTOS)


def test_the_hash_keeps_copies_close_and_photos_apart(items):
    by_photo: dict[str, list] = {}
    for item in items:
        by_photo.setdefault(item["key"].split("/")[0], []).append(item["hashes"])
    originals = {name: dedup.image_hashes(photo(name)) for name in PHOTOS}
    nearest_copy = max(dedup.distance(originals[name], h) for name, hs in by_photo.items() for h in hs)
    distinct = min(dedup.distance(originals[a], originals[b]) for a in PHOTOS for b in PHOTOS if a < b)
    # measured: copies 48 bits at most (the brightened ones; JPEG at quality 30: 30), photos 106 apart or more
    assert nearest_copy <= 48 < dedup.MAX_DISTANCE < 106 <= distinct, (nearest_copy, distinct)


def test_the_kept_copy_does_not_depend_on_the_order(items):
    assert dedup.near_duplicates(items) == dedup.near_duplicates(list(reversed(items)))


def test_banded_pairs_are_the_close_pairs_each_found_once():
    """On synthetic hashes with copies planted at every distance up to MAX_DISTANCE, over several partitions:
    every pair found is within MAX_DISTANCE (against all pairs compared one by one), none twice, and the close ones
    all found."""
    from datagen.bench_curate import synthetic_words

    words, truth = synthetic_words(1200, planted=0.2, seed=5, flips=list(range(0, dedup.MAX_DISTANCE + 1, 4)))
    a, b = dedup.pairs_of_words(words, parts=3)
    found = list(zip(a.tolist(), b.tolist(), strict=True))
    assert len(found) == len(set(found)) and all(x < y for x, y in found)
    i, j = np.triu_indices(len(words), k=1)
    close = dedup.duplicates(words[i], words[j])
    every = set(zip(i[close].tolist(), j[close].tolist(), strict=True))
    assert set(found) <= every
    near = {(min(c, o), max(c, o)) for c, (o, flipped) in truth.items() if flipped <= 16}
    assert near and near <= set(found)  # farther copies are found less often: the bench measures how often


def test_mirrored_copies_are_found():
    """pHash is not flip-invariant (a mirrored copy is 112-126 bits from its original): the mirrored view meets it."""
    for name in PHOTOS:
        original = photo(name)
        mirrored = np.ascontiguousarray(original[:, ::-1])
        assert dedup.is_duplicate(dedup.image_hashes(original), dedup.image_hashes(mirrored)), name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_distinct_photos_sharing_an_overlay_are_never_merged(overlay):
    """The same banner, disc, logo or border on 14 distinct photos: some pairs' pHashes fall within MAX_DISTANCE
    (the overlay dominates the low frequencies; measured 56-62 bits for the disc), their cells stay unrelated."""
    hashes = {name: dedup.image_hashes(with_overlay(photo(name), overlay)) for name in PHOTOS}
    items = [{"key": name, "hashes": h, "rank": dedup.rank(name, 1, 1)} for name, h in hashes.items()]
    assert dedup.near_duplicates(items) == {}
    if overlay == "disc":  # the case the second signal is for: the pHash alone would merge three pairs
        close = [(a, b) for a in PHOTOS for b in PHOTOS if a < b and dedup.distance(hashes[a], hashes[b]) <= 64]
        assert len(close) >= 2, close


def test_copies_of_a_shared_overlay_photo_are_still_found():
    """The second signal does not cost the copies of an overlaid photo: each is found as its original's."""
    items = []
    for name in ("astronaut", "brick", "moon", "grass"):
        original = with_overlay(photo(name), "disc")
        for suffix, image in [("original", original), *derived_copies(original).items()]:
            key = f"{name}/{suffix}"
            items.append(
                {
                    "key": key,
                    "hashes": dedup.image_hashes(image),
                    "rank": dedup.rank(key, image.shape[1], image.shape[0]),
                }
            )
    dropped = dedup.near_duplicates(items)
    assert all(kept.split("/")[0] == key.split("/")[0] for key, kept in dropped.items()), dropped
    assert len(dropped) == len(items) - 4


def test_a_copy_is_dropped_only_for_an_image_it_is_close_to_never_through_a_chain():
    """a ~ b and b ~ c but not a ~ c: b is dropped for a (the best), c is kept; the kept image is the best by rank
    whatever order the pairs come in."""
    ranks = {0: (-4, "a"), 1: (-3, "b"), 2: (-2, "c"), 3: (-1, "d")}
    keys = {i: key for i, (_, key) in ranks.items()}
    for order in ([(0, 1), (1, 2), (2, 3)], [(2, 3), (1, 2), (0, 1)]):
        a, b = (np.array(side) for side in zip(*order, strict=True))
        assert dedup.resolve(a, b, ranks, keys) == {"b": "a", "d": "c"}


def test_distinct_photos_whose_bands_collide_are_compared_without_error():
    """Twelve distinct photos under one dark banner share buckets (the banner's bits agree), yet no pair is close:
    the verification step gets no close pair from a partition and must still answer (it once crashed)."""
    words = np.array([dedup.to_words(dedup.image_hashes(with_overlay(photo(name), "banner"))) for name in PHOTOS[:12]])
    buckets, rows = dedup.bucket_rows(words, dedup.band_bits(len(words)))
    _, counts = np.unique(buckets, return_counts=True)
    assert counts.max() > 1, "the set must put two photos in one bucket"
    a, b = dedup.pairs_of_words(words)
    assert len(a) == len(b) == 0
