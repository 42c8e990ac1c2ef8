"""Vision tasks as edits: the grounded box (detect) or the segmentation mask (segment) drawn onto the image.

The drawing is fixed — colour, line width, overlay opacity from the task file — so a model learns one convention.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

import cv2
import numpy as np
from pydantic import Field

from datagen.generators.base import GeneratorArgs, Outcome, Sample, attempt, candidate
from datagen.record import EditRecord
from datagen.stages import StageClock


class Overlay:
    class Args(GeneratorArgs):
        draw: Literal["box", "mask"] = "box"
        """box: the outline of every grounded box (detect); mask: the segmented region tinted (segment)."""
        color: list[Annotated[int, Field(ge=0, le=255)]] = Field(default=[255, 0, 0], min_length=3, max_length=3)
        """[r, g, b] of the outline or the tint."""
        width: int = Field(default=2, ge=1, le=16)
        """Outline width in pixels at 256 px, scaled with the image side."""
        opacity: float = Field(default=0.5, ge=0.1, le=1.0)
        """Share of the tint in a masked pixel (draw: mask)."""

    @classmethod
    def roles_for(cls, args: Args) -> tuple[str, ...]:
        return ("grounding",) if args.draw == "box" else ("grounding", "segmenter")

    def __init__(self, args: Args, models: Mapping[str, Any]):
        self.args = args
        self.roles = self.roles_for(args)
        self.grounding = models["grounding"]
        self.segmenter = models["segmenter"] if args.draw == "mask" else None

    def render(self, batch: Sequence[Sample], clock: StageClock) -> list[Outcome]:
        with clock.stage("ground"):
            found = self.grounding.locate_batch([(sample.inputs, sample.record.objects) for sample in batch])
        located = [i for i, detections in enumerate(found) if not isinstance(detections, Exception)]
        regions: dict[int, np.ndarray] = {}
        if self.segmenter is not None:
            with clock.stage("segment"):
                masks = self.segmenter.segment_batch([(batch[i].inputs, found[i]) for i in located])
            regions = {i: np.logical_or.reduce(m) for i, m in zip(located, masks, strict=True)}
        out: list[Outcome] = list(found)
        with clock.stage("generate"):
            for i in located:
                out[i] = attempt(self._draw, batch[i], found[i], regions.get(i))
        return out

    def _draw(self, sample: Sample, detections: list, region: np.ndarray | None) -> list[EditRecord]:
        boxes = [d.box for d in detections]
        before = sample.inputs.image
        color = np.array(self.args.color, np.uint8)
        width = max(1, round(self.args.width * before.shape[0] / 256))
        if self.args.draw == "box":
            drawn = np.zeros(before.shape[:2], np.uint8)
            for x0, y0, x1, y1 in boxes:
                cv2.rectangle(drawn, (int(x0), int(y0)), (int(x1) - 1, int(y1) - 1), 255, width)
            after = before.copy()
            after[drawn > 0] = color
            region = drawn > 0
        else:
            alpha = self.args.opacity
            blend = before.astype(np.float32) * (1 - alpha) + color.astype(np.float32) * alpha
            after = before.copy()
            after[region] = np.rint(blend[region]).astype(np.uint8)
        mask = np.where(region, 255, 0).astype(np.uint8)
        params = {"draw": self.args.draw, "color": self.args.color}
        return [candidate(sample.record, before, after, mask, params, boxes=boxes)]
