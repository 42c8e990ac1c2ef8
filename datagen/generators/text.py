"""The text task: a short text added, removed or changed.

Two paths, chosen by what the writer wrote:
- drawn text (scenes, sources without images, and `add` everywhere): the text is drawn with Pillow's bundled
  scalable font onto the clean image, so add, remove and change are exact (the image without it is known); the mask
  is the text's pixels, dilated a little (both texts for a change).
- a line that is really there (photos: `images`, `shards`), which the OCR role read at write time: remove inpaints
  the line's quadrilateral, dilated (OpenCV on `local`, the pipeline's inpainter elsewhere); replace
  remove it, then render the new string into the same quadrilateral — height and angle from the box, colour from
  the old glyphs, the installed font that best matches the old glyphs (datagen/glyphs.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydantic import Field

from datagen import glyphs
from datagen.errors import Reject
from datagen.generators.base import GeneratorArgs, NoClassicalMethod, PerSample, candidate
from datagen.record import EditRecord
from datagen.sources import BadSource, LoadedInput

PHOTO_SOURCES = ("images", "shards")
"""Sources whose inputs are photos: their text task edits the lines the OCR role reads in them."""

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
        min_text_height: int = Field(default=16, ge=6, le=512)
        """A line read in a photo is editable from this height in pixels (below it, detection and recognition
        are unreliable: the detector finds under 90% of lines 12 px high, see docs/benchmarks.md)."""
        dilate: int = Field(default=3, ge=0, le=64)
        """Pixels the removed line's quadrilateral grows by before it is inpainted (the glyphs' anti-aliased rims
        and shadows spill past the detector's box)."""

    roles = ()

    @classmethod
    def roles_for(cls, args: Args) -> tuple[str, ...]:
        return cls.roles

    @classmethod
    def roles_for_source(cls, args: Args, source: str) -> tuple[str, ...]:
        """On photos, the inpainter removes a line that is really there."""
        return ("inpaint",) if source in PHOTO_SOURCES else cls.roles

    @classmethod
    def write_roles(cls, args: Args, source: str) -> tuple[str, ...]:
        """On photos, the write phase reads the input's lines first (the writer edits one of them)."""
        return ("ocr",) if source in PHOTO_SOURCES else ()

    @classmethod
    def look(cls, args: Args, roles: Mapping[str, Any], images: list[np.ndarray]) -> list[dict[str, Any] | Reject]:
        """The write phase's look at photos, one batched OCR call: each input's legible lines (at least
        min_text_height high) for the writer, or the input rejected when it has none."""
        out: list[dict[str, Any] | Reject] = []
        for lines in roles["ocr"].read_batch(images):
            legible = [line.as_dict() for line in lines if line.height >= args.min_text_height and line.text.strip()]
            if legible:
                out.append({"text_lines": legible})
            else:
                out.append(BadSource("no_legible_text", f"the OCR read {len(lines)} line(s) in the input, none at "
                                     f"least {args.min_text_height} px high: no text to edit"))  # fmt: skip
        return out

    @classmethod
    def with_seen(cls, seen: dict[str, Any], edit: dict[str, Any]) -> dict[str, Any] | Reject:
        """The writer's edit with what the look saw: every legible line, and the one the instruction quotes (found
        by its text) for a remove or a replace."""
        lines = seen.get("text_lines") or []
        edit = {**edit, "lines": lines}
        if edit.get("text_before"):  # about a line that is there: remove it, or replace it
            edit["mode"] = "replace" if edit.get("text_after") else "remove"
            line = next((line for line in lines if line["text"] == edit.get("text_before")), None)
            if line is None:
                read = ", ".join(repr(x["text"]) for x in lines)
                quoted = edit.get("text_before")
                return BadSource("text_not_read", f"the instruction quotes {quoted!r}, which the OCR did not read in "
                                 f"the input (it read {read})")  # fmt: skip
            edit["line"] = line
        return edit

    def __init__(self, args: Args, models: Mapping[str, Any]):
        self.args = args
        self.models = models

    def candidates(self, record: EditRecord, inputs: LoadedInput, rng: np.random.Generator) -> list[EditRecord]:
        if record.params.get("line"):
            return [self._edit_line(record, inputs)]
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

    def _edit_line(self, record: EditRecord, inputs: LoadedInput) -> EditRecord:
        """Remove or replace a line the OCR read in the photo (record.params['line'])."""
        params = record.params
        line, mode = params["line"], str(params.get("mode", ""))
        if mode not in ("remove", "replace"):
            raise NoClassicalMethod(f"mode {mode!r} for a line read in the photo: allowed remove, replace")
        image = inputs.image  # the same pixels the OCR read at write time: the source loads an input one way
        quad = np.asarray(line["quad"], np.float32)
        mask = glyphs.quad_mask(image.shape, quad, dilate=self.args.dilate)
        inpainter = self.models["inpaint"]
        removed = inpainter.inpaint_batch([image], [mask], [str(record.output_caption or "")], [record.seed])[0]
        if isinstance(removed, Exception):
            raise removed
        extra: dict[str, Any] = {"mode": mode, "line_text": line["text"]}
        after = removed
        if mode != "remove":
            new_text = str(params.get("text_after") or "")
            if not new_text:
                raise NoClassicalMethod(f"{mode} without the new text")
            seen = glyphs.read_glyphs(image, quad, line["text"])
            after, _ = glyphs.draw(removed, quad, new_text, seen.font, seen.colour, fit="keep")
            extra.update(font=seen.font, font_overlap=seen.overlap, colour=list(seen.colour))
        return candidate(record, image, after, mask, extra)
