"""The curate phase's look at one input photo: its scores (size, shape, blur, NSFW) and perceptual hashes, and the
pipeline's gates on them (`curate:` in pipelines/*.yaml), each input kept or dropped with a reason like a candidate.

Under way (issue 25): the phase that runs this on every input shard and commits the verdicts, the deduplication
across the whole set (datagen/dedup.py) and the curated source are the next steps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from datagen import dedup
from datagen.scores import CURATION_SCORES

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
        grey = cv2.resize(grey, (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale))),
                          interpolation=cv2.INTER_AREA)  # fmt: skip
    return round(float(crete(grey)), 6)


def measure(image: np.ndarray) -> dict[str, float]:
    """The scores an input's pixels alone give: short_side, aspect, blur."""
    height, width = image.shape[:2]
    return {
        "short_side": float(min(height, width)),
        "aspect": round(max(height, width) / max(1, min(height, width)), 6),
        "blur": blur_effect(image),
    }


def look(images: Sequence[np.ndarray], nsfw=None) -> list[dict[str, Any]]:
    """Each input's scores (with the nsfw role's, one batched call, where the pipeline has one) and hashes."""
    out = [{"scores": measure(image), "hashes": dedup.image_hashes(image)} for image in images]
    if nsfw is not None:
        for item, score in zip(out, nsfw.score_batch(images), strict=True):
            item["scores"]["nsfw"] = score
    return out


def gate(scores: Mapping[str, float], gates: Mapping[str, FilterSpec]) -> str:
    """'' to keep the input, else the reason of the first gate it fails, in the order of CURATION_SCORES (as
    filters.gate does for candidates)."""
    from datagen.filters import gate as gate_scores

    return gate_scores(dict(scores), dict(gates), order=CURATION_SCORES)
