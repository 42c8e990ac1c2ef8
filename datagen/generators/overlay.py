"""Vision tasks as edits: the grounded box (detect) or the segmentation mask (segment) drawn onto the image.

The drawing is fixed — colour, line width, overlay opacity from the task file — so a model learns one convention.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from datagen.generators.base import RGB, Outcome, Sample, attempt, candidate, check_args, int_in, number_in, one_of
from datagen.record import EditRecord
from datagen.stages import StageClock

DEFAULTS = {"draw": "box", "color": [255, 0, 0], "width": 2, "opacity": 0.5}


class Overlay:
    @staticmethod
    def roles_for(args: dict[str, Any]) -> tuple[str, ...]:
        return ("grounding",) if {**DEFAULTS, **args}["draw"] == "box" else ("grounding", "segmenter")

    @staticmethod
    def check_args(args: dict[str, Any], where: str) -> None:
        rules = {"draw": one_of("box", "mask"), "color": RGB, "width": int_in(1, 16), "opacity": number_in(0.1, 1.0)}
        check_args(args, DEFAULTS, rules, where)

    def __init__(self, args: dict[str, Any], models):
        self.args = {**DEFAULTS, **args}
        self.roles = self.roles_for(args)
        self.grounding = models["grounding"]
        self.segmenter = models["segmenter"] if self.args["draw"] == "mask" else None

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
        color = np.array(self.args["color"], np.uint8)
        width = max(1, round(self.args["width"] * before.shape[0] / 256))
        if self.args["draw"] == "box":
            drawn = np.zeros(before.shape[:2], np.uint8)
            for x0, y0, x1, y1 in boxes:
                cv2.rectangle(drawn, (int(x0), int(y0)), (int(x1) - 1, int(y1) - 1), 255, width)
            after = before.copy()
            after[drawn > 0] = color
            region = drawn > 0
        else:
            alpha = float(self.args["opacity"])
            blend = before.astype(np.float32) * (1 - alpha) + color.astype(np.float32) * alpha
            after = before.copy()
            after[region] = np.rint(blend[region]).astype(np.uint8)
        mask = np.where(region, 255, 0).astype(np.uint8)
        params = {"draw": self.args["draw"], "color": self.args["color"]}
        return [candidate(sample.record, before, after, mask, params, boxes=boxes)]
