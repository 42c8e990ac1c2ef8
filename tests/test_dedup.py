"""Near-duplicate inputs on real photos: scikit-image's photos and copies derived from them (resized, re-encoded as
JPEG, cropped by a few percent, brightened) are all found as duplicates of their original, distinct photos never
merged; the kept copy is the best by resolution, whatever the order. (Ray Data's path, dedup.near_duplicates_ray,
is held to this one by tests/test_curate.py: a curation on Ray writes the same duplicates as inline.)"""

from __future__ import annotations

import random

import cv2
import numpy as np
import pytest

from datagen import dedup
from datagen.text_photos import PHOTOS, photo


def copies(image: np.ndarray) -> dict[str, np.ndarray]:
    height, width = image.shape[:2]
    out = {}
    for scale in (0.5, 0.75):
        out[f"resized-{scale}"] = cv2.resize(image, (int(width * scale), int(height * scale)),
                                             interpolation=cv2.INTER_AREA)  # fmt: skip
    for quality in (30, 60, 90):
        _, data = cv2.imencode(".jpg", np.ascontiguousarray(image[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
        out[f"jpeg-{quality}"] = cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1]
    for share in (0.03, 0.06):
        dy, dx = int(height * share), int(width * share)
        out[f"cropped-{share}"] = image[dy : height - dy, dx : width - dx]
    out["brightened"] = np.clip(image.astype(np.int16) + 30, 0, 255).astype(np.uint8)
    return out


@pytest.fixture(scope="module")
def items() -> list[dict]:
    """Every photo and its copies, as the curate phase hashes them, in a shuffled order."""
    out = []
    for name in PHOTOS:
        original = photo(name)
        for suffix, image in [("original", original), *copies(original).items()]:
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
    assert nearest_copy <= 8 < dedup.MAX_DISTANCE < distinct, (nearest_copy, distinct)


def test_the_kept_copy_does_not_depend_on_the_order(items):
    assert dedup.near_duplicates(items) == dedup.near_duplicates(list(reversed(items)))
