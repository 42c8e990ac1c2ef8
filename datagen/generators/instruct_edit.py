"""Instruction editing: an editing model (the `editor` role, e.g. FLUX.1 Kontext) takes the input image and the
instruction and draws the output, as the datasets after Emu Edit make their pairs (OmniEdit, ImgEdit, Pico-Banana).

Every sample gets one candidate per (seed, guidance): `seeds` seeds for each value in `guidance`; the filters and
the judge choose among them. `region: image` keeps the editor's whole image (the mask is all white). `region:
object` is Emu Edit's grounded guard: the named objects are located and segmented (grounded_inpaint's stages,
shared) and the edit is composited back inside their mask (a variant of it: dilated and soft-edged by default), so
every pixel outside stays the input's own; `region: background` guards the other way, the objects kept exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from datagen.generators.base import GeneratorArgs, Outcome, Sample, candidate, full_mask
from datagen.generators.grounded_inpaint import composite, ground_and_segment, region_masks
from datagen.stages import StageClock

Guidance = Annotated[float, Field(ge=0.0, le=100.0)]


class InstructEdit:
    class Args(GeneratorArgs):
        seeds: int = Field(default=2, ge=1, le=16)
        """Seeds per guidance value; each (seed, guidance) is one candidate."""
        guidance: list[Guidance] = Field(default=[], max_length=8)
        """Guidance values tried on every sample; empty: the editor's own (`roles.editor.args.guidance`)."""
        region: Literal["image", "object", "background"] = "image"
        """What the edit may change: the whole image; only the named objects (the grounded guard: grounding and
        segmenter roles needed); everything but them."""
        mask_variant: Literal["exact", "dilated", "bbox"] = "dilated"
        """The guard's mask (region object or background), as grounded_inpaint draws them: the exact mask, dilated
        (and soft-edged), the bounding boxes."""
        dilate_px: int = Field(default=6, ge=0, le=64)
        """Radius in pixels of the dilated mask's growth."""
        blur_px: int = Field(default=5, ge=0, le=64)
        """Radius in pixels of the dilated mask's soft edge (0: hard)."""

    @classmethod
    def roles_for(cls, args: Args) -> tuple[str, ...]:
        return ("editor",) if args.region == "image" else ("editor", "grounding", "segmenter")

    def __init__(self, args: Args, models: Mapping[str, Any]):
        self.args = args
        self.roles = self.roles_for(args)
        self.editor = models["editor"]
        self.guarded = args.region != "image"
        self.grounding = models["grounding"] if self.guarded else None
        self.segmenter = models["segmenter"] if self.guarded else None

    def render(self, batch: Sequence[Sample], clock: StageClock) -> list[Outcome]:
        """Regions first (guarded runs), then every candidate of every sample through the editor in one call."""
        if self.guarded:
            out, located = ground_and_segment(batch, self.grounding, self.segmenter, clock)
            regions = {i: self._guard(detections, masks) for i, detections, masks in located}
        else:
            out: list[Outcome] = [[] for _ in batch]  # every sample gets its candidates below
            regions = {i: (full_mask(sample.inputs.image), None, []) for i, sample in enumerate(batch)}
        scales = self.args.guidance or [self.editor.guidance]
        draws = [(offset, g) for g in scales for offset in range(self.args.seeds)]
        with clock.stage("generate"):
            jobs = [(i, number, offset, g) for i in regions for number, (offset, g) in enumerate(draws)]
            edited = self.editor.edit_batch(
                [batch[i].inputs.image for i, _, _, _ in jobs],
                [batch[i].record.instruction for i, _, _, _ in jobs],
                [batch[i].record.seed + offset for i, _, offset, _ in jobs],
                [g for _, _, _, g in jobs],
            )
            candidates: dict[int, list] = {i: [] for i in regions}
            for (i, number, offset, g), image in zip(jobs, edited, strict=True):
                candidates[i].append(self._candidate(batch[i], regions[i], number, offset, g, image))
        for i, records in candidates.items():
            out[i] = records
        return out

    def _guard(self, detections: list, masks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, list]:
        """(the guard's uint8 mask, the region the edit is about, the boxes) of a grounded sample."""
        boxes = [d.box for d in detections]
        region, variants = region_masks(masks, boxes, self.args.region, self.args.dilate_px, self.args.blur_px)
        return variants[self.args.mask_variant], region, boxes

    def _candidate(self, sample: Sample, guard: tuple, number: int, offset: int, guidance: float, edited: np.ndarray):
        mask, region, boxes = guard
        before = sample.inputs.image
        after = composite(before, edited, mask) if self.guarded else edited
        params: dict[str, Any] = {
            "edit_seed": sample.record.seed + offset,
            "guidance": guidance,
            "region": self.args.region,
            "guarded": self.guarded,
        }
        if self.guarded:
            args = self.args
            params.update(mask_variant=args.mask_variant, dilate_px=args.dilate_px, blur_px=args.blur_px)
        return candidate(sample.record, before, after, mask, params, object_mask=region, boxes=boxes, number=number)
