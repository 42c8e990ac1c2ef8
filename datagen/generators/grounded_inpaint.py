"""Grounded inpainting (Emu Edit's add/remove): masks first, then inpaint, then composite.

The named objects are located (grounding) and segmented (segmenter); each mask variant — exact, dilated and
blurred, bounding box — gives one candidate; the inpainted region is composited back so that pixels outside the
mask are the input's own. `direction: add` is the same removal with input and output swapped: the image without
the object becomes the input, the original the output. `direction: replace` repaints the region from the output
caption (local: another object; texture: the same object in a new material); `region: background` repaints
everything but the named objects (background).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import cv2
import numpy as np

from datagen.config import ConfigError
from datagen.filters import pixel_scores
from datagen.models.oracle import GroundingMiss
from datagen.record import EditRecord
from datagen.sources import LoadedInput

VARIANTS = ("exact", "dilated", "bbox")
DIRECTIONS = ("remove", "add", "replace")
REGIONS = ("object", "background")
DEFAULTS = {"mask_variants": list(VARIANTS), "dilate_px": 6, "blur_px": 5, "direction": "remove", "region": "object"}


def mask_variants(mask: np.ndarray, boxes: list[list[float]], dilate_px: int, blur_px: int):
    """bool object mask -> {variant: uint8 mask}; the soft (blurred) variant is 0 only where nothing may change."""
    exact = mask.astype(np.uint8) * 255
    out = {"exact": exact}
    size = 2 * dilate_px + 1
    dilated = cv2.dilate(exact, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)))
    if blur_px > 0:
        k = 2 * blur_px + 1
        dilated = np.maximum(dilated, cv2.GaussianBlur(dilated, (k, k), 0))
    out["dilated"] = dilated
    box_mask = np.zeros_like(exact)
    for x0, y0, x1, y1 in boxes:
        box_mask[int(y0) : int(y1), int(x0) : int(x1)] = 255
    out["bbox"] = box_mask
    return out


def composite(image: np.ndarray, edited: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """edited where mask is 255, image where it is 0, a linear blend between; exact outside the mask."""
    alpha = mask.astype(np.float32)[:, :, None] / 255.0
    blend = edited.astype(np.float32) * alpha + image.astype(np.float32) * (1.0 - alpha)
    out = np.clip(np.rint(blend), 0, 255).astype(np.uint8)
    out[mask == 0] = image[mask == 0]
    return out


class GroundedInpaint:
    roles = ("grounding", "segmenter", "inpaint")

    @staticmethod
    def check_args(args: dict[str, Any], where: str) -> None:
        unknown = set(args) - set(DEFAULTS)
        if unknown:
            raise ConfigError(
                f"{where}: field `generator.args`: unknown {sorted(unknown)}; allowed: {', '.join(DEFAULTS)}"
            )
        variants = args.get("mask_variants", DEFAULTS["mask_variants"])
        if not isinstance(variants, list) or not variants or any(v not in VARIANTS for v in variants):
            raise ConfigError(
                f"{where}: field `generator.args.mask_variants`: {variants!r}; allowed: a non-empty list of "
                f"{', '.join(VARIANTS)}"
            )
        direction = args.get("direction", DEFAULTS["direction"])
        if direction not in DIRECTIONS:
            raise ConfigError(
                f"{where}: field `generator.args.direction`: {direction!r}; allowed: {', '.join(DIRECTIONS)}"
            )
        if args.get("region", "object") not in REGIONS:
            raise ConfigError(
                f"{where}: field `generator.args.region`: {args['region']!r}; allowed: {', '.join(REGIONS)}"
            )
        for name in ("dilate_px", "blur_px"):
            value = args.get(name, DEFAULTS[name])
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 64:
                raise ConfigError(f"{where}: field `generator.args.{name}`: {value!r}; allowed: an integer in [0, 64]")

    def __init__(self, args: dict[str, Any], models: dict[str, Any]):
        self.args = {**DEFAULTS, **args}
        self.grounding = models["grounding"]
        self.segmenter = models["segmenter"]
        self.inpainter = models["inpaint"]

    def candidates(self, record: EditRecord, inputs: LoadedInput, rng: np.random.Generator) -> list[EditRecord]:
        if not record.objects:
            raise GroundingMiss("no_objects", "the instruction names no object to find")
        detections = self.grounding.locate(inputs, record.objects)
        masks = self.segmenter.segment(inputs, detections)
        object_mask = np.logical_or.reduce(masks)
        boxes = [d.box for d in detections]
        variants = mask_variants(object_mask, boxes, self.args["dilate_px"], self.args["blur_px"])
        if self.args["region"] == "background":
            variants = {name: 255 - mask for name, mask in variants.items()}
            object_mask = ~object_mask
        truth = inputs.ground_truth(tuple(record.objects)) if self.args["direction"] != "replace" else None
        add = self.args["direction"] == "add"
        prompt = record.input_caption if add else record.output_caption  # the caption of the repainted image
        out = []
        for number, name in enumerate(self.args["mask_variants"]):
            mask = variants[name]
            filled = self.inpainter.inpaint(inputs.image, mask, prompt, seed=record.seed + number)
            removed = composite(inputs.image, filled, mask)
            candidate = replace(
                record,
                candidate=number,
                params={
                    **record.params,
                    "mask_variant": name,
                    "dilate_px": self.args["dilate_px"],
                    "blur_px": self.args["blur_px"],
                    "direction": self.args["direction"],
                    "region": self.args["region"],
                },
                input_image=removed if add else inputs.image,
                output_image=inputs.image if add else removed,
                mask=mask,
                boxes=boxes,
                scores=pixel_scores(inputs.image, removed, object_mask, mask, truth),  # the removal either way
            )
            out.append(candidate)
        return out
