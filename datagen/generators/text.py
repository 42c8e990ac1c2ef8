"""The text task: a short text added, removed or changed, rendered with a real font into a chosen region.

The font is Pillow's bundled scalable font, so every machine renders the same pixels. Removal and change are exact
too: the text is drawn onto the clean image, so the image without it is known. The mask is the text's pixels,
dilated a little (both texts for a change).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydantic import Field

from datagen.generators.base import GeneratorArgs, NoClassicalMethod, PerSample, candidate
from datagen.record import EditRecord
from datagen.sources import LoadedInput

POSITIONS = {
    "top": (0.5, 0.15),
    "bottom": (0.5, 0.85),
    "center": (0.5, 0.5),
    "top left": (0.28, 0.15),
    "top right": (0.72, 0.15),
    "bottom left": (0.28, 0.85),
    "bottom right": (0.72, 0.85),
}


def draw_text(image: np.ndarray, text: str, position: str, size: float) -> tuple[np.ndarray, np.ndarray]:
    """(image with the text, bool mask of its pixels); the colour contrasts with the region behind it."""
    height, width = image.shape[:2]
    font = ImageFont.load_default(size=max(8, round(size * height)))
    canvas = Image.new("L", (width, height), 0)
    pen = ImageDraw.Draw(canvas)
    fx, fy = POSITIONS[position]
    left, top, right, bottom = pen.textbbox((0, 0), text, font=font)
    span = right - left
    if span > 0.95 * width:  # shrink long texts to fit
        font = ImageFont.load_default(size=max(8, round(size * height * 0.95 * width / span)))
        left, top, right, bottom = pen.textbbox((0, 0), text, font=font)
    x = min(max(0, fx * width - (right - left) / 2 - left), width - (right - left))
    y = min(max(0, fy * height - (bottom - top) / 2 - top), height - (bottom - top))
    pen.text((x, y), text, fill=255, font=font)
    ink = np.asarray(canvas) > 127
    behind = image[ink].mean() if ink.any() else 128.0
    colour = np.array([20, 20, 20] if behind > 128 else [245, 245, 245], np.uint8)
    out = image.copy()
    out[ink] = colour
    return out, ink


class TextRender(PerSample):
    class Args(GeneratorArgs):
        size: float = Field(default=0.12, ge=0.03, le=0.4)
        """Font size as a share of the image height (long texts shrink to fit the width)."""

    roles = ()

    @classmethod
    def roles_for(cls, args: Args) -> tuple[str, ...]:
        return cls.roles

    def __init__(self, args: Args, models: Mapping[str, Any]):
        self.args = args

    def candidates(self, record: EditRecord, inputs: LoadedInput, rng: np.random.Generator) -> list[EditRecord]:
        before_text = str(record.params.get("text_before", "")).strip()
        after_text = str(record.params.get("text_after", "")).strip()
        position = str(record.params.get("position", "center"))
        if position not in POSITIONS:
            raise NoClassicalMethod(f"position {position!r}: allowed {', '.join(POSITIONS)}")
        if not before_text and not after_text or before_text == after_text:
            raise NoClassicalMethod(f"text {before_text!r} -> {after_text!r} is no edit")
        clean = inputs.image
        ink = np.zeros(clean.shape[:2], bool)
        before, after = clean, clean
        if before_text:
            before, drawn = draw_text(clean, before_text, position, self.args.size)
            ink |= drawn
        if after_text:
            after, drawn = draw_text(clean, after_text, position, self.args.size)
            ink |= drawn
        grown = cv2.dilate(ink.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        mask = np.where(grown, 255, 0).astype(np.uint8)
        mode = "add" if not before_text else "remove" if not after_text else "change"
        return [candidate(record, before, after, mask, {"mode": mode, "position": position}, object_mask=ink)]
