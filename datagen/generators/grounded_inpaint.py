"""Grounded inpainting (Emu Edit's add/remove): masks first, then inpaint, then composite.

The named objects are located (grounding) and segmented (segmenter); each mask variant — exact, dilated and
blurred, bounding box — gives one candidate; the inpainted region is composited back so that pixels outside the
mask are the input's own. `direction: add` is the same removal with input and output swapped: the image without
the object becomes the input, the original the output. `direction: replace` repaints the region from the output
caption (local: another object; texture: the same object in a new material); `region: background` repaints
everything but the named objects (background).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Literal

import cv2
import numpy as np
from pydantic import Field

from datagen.filters import pixel_scores, pixel_scores_on_device
from datagen.generators.base import GeneratorArgs, Outcome, Sample
from datagen.models.oracle import GroundingMiss
from datagen.record import EditRecord
from datagen.stages import StageClock


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


def composite_on_device(image, filled, masks):
    """composite of K fills of one image where the tensors are (the inpainter's device): image uint8 (H, W, 3),
    filled uint8 (K, H, W, 3), masks uint8 (K, H, W) -> uint8 (K, H, W, 3); float32 blend rounded half to even,
    exact outside the masks: what `composite` makes, byte for byte."""
    import torch

    alpha = masks.to(torch.float32)[..., None] / 255.0
    blend = filled.to(torch.float32) * alpha + image.to(torch.float32) * (1.0 - alpha)
    out = blend.round().clamp(0, 255).to(torch.uint8)
    return torch.where((masks == 0)[..., None], image, out)


def region_masks(
    masks: list[np.ndarray], boxes: list[list[float]], region: str, dilate_px: int, blur_px: int
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(the bool region an edit is about, its mask variants: uint8, 255 where pixels may change) of the objects'
    masks: their union (region `object`) or everything but it (`background`)."""
    object_mask = np.logical_or.reduce(masks)
    variants = mask_variants(object_mask, boxes, dilate_px, blur_px)
    if region == "background":
        return ~object_mask, {name: 255 - mask for name, mask in variants.items()}
    return object_mask, variants


NEIGHBOUR_MARGIN_PX = 8
"""Another object within this many pixels of a mask variant is left out of what the fill is made from."""


def spare_neighbours(
    variants: dict[str, np.ndarray], others: np.ndarray | None
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(the variants with every pixel of another object the source knows taken out: what may change, what the
    inpainter fills from the variants plus those neighbours, so that their colour is not dragged into the fill).
    Without such objects both are the variants as they are."""
    if others is None or not others.any():
        return variants, variants
    size = 2 * NEIGHBOUR_MARGIN_PX + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    labels_count, labels = cv2.connectedComponents(others.astype(np.uint8))
    keep, paint = {}, {}
    for name, mask in variants.items():
        spared = np.where(others, 0, mask).astype(np.uint8)
        near = cv2.dilate((spared > 0).astype(np.uint8), kernel) > 0
        touched = np.unique(labels[near & others])
        neighbours = np.isin(labels, touched[touched > 0]) if labels_count > 1 else np.zeros_like(others)
        keep[name] = spared
        paint[name] = np.where(neighbours, 255, spared).astype(np.uint8)
    return keep, paint


MAX_NEIGHBOURS = 6
"""Other objects of a caption grounded per sample, at most."""
_SPLIT = re.compile(r",|;|\.|\b(?:and|with|next to|beside|near|behind|in front of|on top of|on|in|under|over|by|of)\b")
_LEADING = re.compile(r"^(?:a|an|the|some|two|three|four|several|many|one|this|that|its|their|his|her)\s+")


def caption_objects(caption: str, exclude: Sequence[str] = ()) -> list[str]:
    """The objects a caption names, as short phrases ('a red mug on a desk next to a laptop' -> red mug, desk,
    laptop): the caption split at commas and the words that join objects, articles and counts dropped, phrases of
    one to four words kept, those naming an excluded object (the edit's own) left out."""
    named = {e.lower().strip() for e in exclude}
    out: list[str] = []
    for part in _SPLIT.split(caption.lower()):
        phrase = _LEADING.sub("", " ".join(part.split())).strip()
        words = phrase.split()
        if not 1 <= len(words) <= 4 or not any(c.isalpha() for c in phrase) or phrase in out:
            continue
        if any(phrase in e or e in phrase for e in named):
            continue
        if phrase in ("image", "picture", "photo", "background", "scene", "it"):
            continue
        out.append(phrase)
    return out[:MAX_NEIGHBOURS]


def ground_neighbours(
    batch: Sequence[Sample], located: list[int], grounding: Any, segmenter: Any, clock: StageClock, caption_of
) -> None:
    """For every sample found, the other objects its caption names that the source has no mask for, each located
    on its own (one grounding call for the micro-batch; a name not found is left out) and segmented (one segmenter
    call): into the sample's `inputs.neighbours`, so the edit spares them."""
    queries = []
    for i in located:
        sample = batch[i]
        if sample.inputs.scene is not None:  # a scene's masks are every object it has
            continue
        known = set(sample.inputs.masks) | set(sample.record.objects)
        names = [n for n in caption_objects(caption_of(sample.record), sample.record.objects) if n not in known]
        queries += [(i, name) for name in names]
    if not queries:
        return
    with clock.stage("ground"):
        found = grounding.locate_batch([(batch[i].inputs, [name]) for i, name in queries])
    hits: dict[int, list] = {}
    for (i, _), detections in zip(queries, found, strict=True):
        if not isinstance(detections, Exception):
            hits.setdefault(i, []).extend(detections)
    order = sorted(hits)
    with clock.stage("segment"):
        masks = segmenter.segment_batch([(batch[i].inputs, hits[i]) for i in order])
    for i, sample_masks in zip(order, masks, strict=True):
        for detection, mask in zip(hits[i], sample_masks, strict=True):
            batch[i].inputs.neighbours[detection.name] = np.asarray(mask, bool)


Located = tuple[int, list, list[np.ndarray]]
"""A sample found: its index in the micro-batch, its detections, one bool mask per detection."""


def ground_and_segment(
    batch: Sequence[Sample], grounding: Any, segmenter: Any, clock: StageClock
) -> tuple[list[Outcome], list[Located]]:
    """Every sample's named objects located (one grounding call) and segmented (one segmenter call) for the whole
    micro-batch: (each sample's outcome so far: the reason it has no region, overwritten by the caller for samples
    found; the samples found). A detector's scores of the input are kept for the detector gate."""
    out: list[Outcome] = [GroundingMiss("no_objects", "the instruction names no object to find")] * len(batch)
    named = [i for i, sample in enumerate(batch) if sample.record.objects]
    with clock.stage("ground"):
        found = grounding.locate_batch([(batch[i].inputs, batch[i].record.objects) for i in named])
    located = []
    for i, detections in zip(named, found, strict=True):
        if isinstance(detections, Exception):
            out[i] = detections
        else:
            located.append((i, detections))
            if getattr(grounding, "scores_presence", False):  # the detector gate reuses these scores
                batch[i].inputs.found = {d.name: d.score for d in detections}
    with clock.stage("segment"):
        masks = segmenter.segment_batch([(batch[i].inputs, detections) for i, detections in located])
    return out, [(i, detections, m) for (i, detections), m in zip(located, masks, strict=True)]


class GroundedInpaint:
    class Args(GeneratorArgs):
        mask_variants: list[Literal["exact", "dilated", "bbox"]] = Field(
            default=["exact", "dilated", "bbox"], min_length=1
        )
        """One candidate per variant of the object mask, in this order (Emu Edit): exact, dilated (and blurred),
        the bounding boxes."""
        dilate_px: int = Field(default=6, ge=0, le=64)
        """Radius in pixels of the dilated variant's growth."""
        blur_px: int = Field(default=5, ge=0, le=64)
        """Radius in pixels of the dilated variant's soft edge (0: hard)."""
        direction: Literal["remove", "add", "replace"] = "remove"
        """remove the object; add it (a removal with input and output swapped); replace it from the output caption."""
        region: Literal["object", "background"] = "object"
        """What is repainted: the named objects, or everything but them."""

    roles = ("grounding", "segmenter", "inpaint")

    @classmethod
    def roles_for(cls, args: Args) -> tuple[str, ...]:
        return cls.roles

    def __init__(self, args: Args, models: Mapping[str, Any]):
        self.args = args
        self.grounding = models["grounding"]
        self.segmenter = models["segmenter"]
        self.inpainter = models["inpaint"]

    def render(self, batch: Sequence[Sample], clock: StageClock) -> list[Outcome]:
        """Masks first, then one candidate per mask variant: every stage one call of its role for the whole
        micro-batch (all (image, name) queries grounded together, all mask variants of all samples inpainted
        together)."""
        out, located = ground_and_segment(batch, self.grounding, self.segmenter, clock)
        if self.args.region == "object":  # the caption's other objects, where the source knows none of them
            add = self.args.direction == "add"
            ground_neighbours(
                batch,
                [i for i, _, _ in located],
                self.grounding,
                self.segmenter,
                clock,
                lambda record: record.output_caption if add else record.input_caption,
            )
        with clock.stage("generate"):
            plans = [self._plan(batch[i], detections, masks) for i, detections, masks in located]
            jobs = [(plan, number, name) for plan in plans for number, name in enumerate(self.args.mask_variants)]
            inpaint = getattr(self.inpainter, "inpaint_batch_on_device", None) or self.inpainter.inpaint_batch
            filled = inpaint(
                [plan["inputs"].image for plan, _, _ in jobs],
                [plan["paint"][name] for plan, _, name in jobs],
                [plan["prompt"] for plan, _, _ in jobs],
                [plan["record"].seed + number for plan, number, _ in jobs],
            )
            results = iter(filled)
            names = self.args.mask_variants
            for (i, _, _), plan in zip(located, plans, strict=True):
                fills = [next(results) for _ in names]
                if isinstance(fills[0], np.ndarray):
                    out[i] = [
                        self._candidate(plan, number, name, fill)
                        for number, (name, fill) in enumerate(zip(names, fills, strict=True))
                    ]
                else:  # left on the inpainter's device: composited and scored there, one transfer back
                    out[i] = self._candidates_on_device(plan, fills)
        return out

    def _candidates_on_device(self, plan: dict[str, Any], fills: list) -> list[EditRecord]:
        """The candidates of one sample from fills left on the inpainter's device: composited and pixel-scored
        there for all mask variants at once, the composites brought back in one transfer."""
        import torch

        device = fills[0].device
        image = torch.from_numpy(plan["inputs"].image).to(device)
        masks = torch.from_numpy(np.stack([plan["variants"][name] for name in self.args.mask_variants])).to(device)
        removed = composite_on_device(image, torch.stack(fills), masks)
        truth = plan["truth"]
        if truth is not None:
            truth = (torch.from_numpy(truth[0]).to(device), torch.from_numpy(truth[1]).to(device))
        scores = pixel_scores_on_device(image, removed, torch.from_numpy(plan["object_mask"]).to(device), masks, truth)
        return [
            self._candidate(plan, number, name, None, composited, entry)
            for number, (name, composited, entry) in enumerate(
                zip(self.args.mask_variants, removed.cpu().numpy(), scores, strict=True)
            )
        ]

    def _plan(self, sample: Sample, detections: list, masks: list[np.ndarray]) -> dict[str, Any]:
        """What one sample's candidates share: its masks (`variants`: where each candidate may change; `paint`: what
        the inpainter fills, with the neighbours the variants spare), the prompt of the repainted image, its
        ground truth."""
        record, inputs = sample.record, sample.inputs
        boxes = [d.box for d in detections]
        object_mask, variants = region_masks(masks, boxes, self.args.region, self.args.dilate_px, self.args.blur_px)
        add = self.args.direction == "add"
        paint = variants
        if self.args.region == "object":  # never paint another object the source knows is there
            known = {**(inputs.masks or {}), **(inputs.neighbours or {})}
            others = [m for name, m in known.items() if name not in record.objects]
            spared, paint = spare_neighbours(variants, np.logical_or.reduce(others) & ~object_mask if others else None)
            variants = spared
            if self.args.direction == "replace":  # the new object is drawn in its own region only
                paint = variants
        return {
            "record": record,
            "inputs": inputs,
            "object_mask": object_mask,
            "boxes": boxes,
            "variants": variants,
            "paint": paint,
            "truth": inputs.ground_truth(tuple(record.objects)) if self.args.direction != "replace" else None,
            "prompt": record.input_caption if add else record.output_caption,  # the caption of the repainted image
        }

    def _candidate(
        self,
        plan: dict[str, Any],
        number: int,
        name: str,
        filled: np.ndarray | None,
        removed: np.ndarray | None = None,
        scores: dict[str, float] | None = None,
    ) -> EditRecord:
        """A candidate from its fill (composited and scored here), or from its composite and scores made on the
        inpainter's device."""
        image, mask = plan["inputs"].image, plan["variants"][name]
        if removed is None:
            removed = composite(image, filled, mask)
            scores = pixel_scores(image, removed, plan["object_mask"], mask, plan["truth"])  # the removal either way
        add = self.args.direction == "add"
        return replace(
            plan["record"],
            candidate=number,
            params={
                **plan["record"].params,
                "mask_variant": name,
                "dilate_px": self.args.dilate_px,
                "blur_px": self.args.blur_px,
                "direction": self.args.direction,
                "region": self.args.region,
            },
            input_image=removed if add else image,
            output_image=image if add else removed,
            mask=mask,
            boxes=plan["boxes"],
            width=image.shape[1],
            height=image.shape[0],
            scores=scores,
        )
