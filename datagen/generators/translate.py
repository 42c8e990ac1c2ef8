"""Image-to-image translation tasks, both directions: depth, surface normals, sketch, segmentation map, pose.

The map comes from a model role (depth: `depth`; segmentation map: `semseg`) or from a classical operator (sketch:
edges; normals: derived from depth; pose: a `pose` role's keypoints on the people grounding finds, drawn as
COCO skeletons). `direction` from the writer says which side is the input: to_map (image ->
map) or from_map (map -> image). Whole-image edits: the mask is all 255.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import cv2
import numpy as np

from datagen.generators.base import GeneratorArgs, NoClassicalMethod, Outcome, Sample, attempt, candidate, full_mask
from datagen.record import EditRecord
from datagen.sources import LoadedInput
from datagen.stages import StageClock

ROLES = {"depth": ("depth",), "normal": ("depth",), "sketch": (), "segmap": ("semseg",), "pose": ("grounding", "pose")}
SKELETON = (
    (0, 1), (0, 2), (1, 3), (2, 4), (5, 6), (5, 7), (7, 9), (6, 8), (8, 10), (5, 11), (6, 12), (11, 12),
    (11, 13), (13, 15), (12, 14), (14, 16),
)  # fmt: skip
"""COCO's 17-keypoint skeleton: the limbs drawn between keypoints."""
DIRECTIONS = ("to_map", "from_map")

PALETTE = np.array(
    [
        [0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180],
        [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128], [220, 190, 255],
        [170, 110, 40], [255, 250, 200], [128, 0, 0], [170, 255, 195], [128, 128, 0], [255, 215, 180],
        [0, 0, 128], [128, 128, 128],
    ],
    np.uint8,
)  # fmt: skip
"""Fixed colours of the segmentation map: class i is PALETTE[i % len]; 0 (background) is black."""


def depth_image(depth: np.ndarray) -> np.ndarray:
    """float depth in [0, 1] (1 nearest) -> grey RGB, near is bright."""
    grey = np.rint(np.clip(depth, 0, 1) * 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def normal_image(depth: np.ndarray) -> np.ndarray:
    """Surface normals from depth as RGB ((n + 1) / 2): x right, y up, z towards the camera."""
    scale = depth.shape[0] / 4.0
    dx = cv2.Sobel(depth.astype(np.float32), cv2.CV_32F, 1, 0, ksize=3) * scale / 8
    dy = cv2.Sobel(depth.astype(np.float32), cv2.CV_32F, 0, 1, ksize=3) * scale / 8
    normal = np.stack([-dx, dy, np.ones_like(dx)], axis=2)
    normal /= np.linalg.norm(normal, axis=2, keepdims=True)
    return np.rint((normal + 1) * 127.5).astype(np.uint8)


def sketch_image(image: np.ndarray) -> np.ndarray:
    """Black edge lines on white (Canny on the smoothed grey image)."""
    grey = cv2.GaussianBlur(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), (3, 3), 0)
    edges = cv2.Canny(grey, 50, 150)
    return np.repeat((255 - edges)[..., None], 3, axis=2)


def segmap_image(classes: np.ndarray) -> np.ndarray:
    return PALETTE[classes.astype(np.int64) % len(PALETTE)]


def pose_image(shape: tuple[int, int], people: list[np.ndarray], min_score: float = 0.3) -> np.ndarray:
    """COCO skeletons ((17, 3) arrays of x, y, score per person) on black, one palette colour per limb."""
    canvas = np.zeros((*shape, 3), np.uint8)
    width = max(1, shape[0] // 128)
    for keypoints in people:
        for n, (a, b) in enumerate(SKELETON):
            if keypoints[a, 2] >= min_score and keypoints[b, 2] >= min_score:
                start, end = keypoints[a, :2].round().astype(int), keypoints[b, :2].round().astype(int)
                colour = tuple(int(c) for c in PALETTE[1 + n % (len(PALETTE) - 1)])
                cv2.line(canvas, tuple(start), tuple(end), colour, width)
        for x, y, score in keypoints:
            if score >= min_score:
                cv2.circle(canvas, (round(x), round(y)), width + 1, (255, 255, 255), -1)
    return canvas


class Translate:
    class Args(GeneratorArgs):
        map: Literal["depth", "normal", "sketch", "segmap", "pose"] = "sketch"
        """The map on the other side of the pair; the roles it needs are ROLES[map]."""

    @classmethod
    def roles_for(cls, args: Args) -> tuple[str, ...]:
        return ROLES[args.map]

    def __init__(self, args: Args, models: Mapping[str, Any]):
        self.args = args
        self.roles = self.roles_for(args)
        self.models = {role: models[role] for role in self.roles}

    def maps(self, items: list[LoadedInput]) -> list[np.ndarray | Exception]:
        """The map of each input: depth and segmentation maps in one batched call of their role, sketches and poses
        one image at a time."""
        if self.args.map == "segmap":
            return [
                c if isinstance(c, Exception) else segmap_image(c) for c in self.models["semseg"].classes_batch(items)
            ]
        if self.args.map in ("depth", "normal"):
            draw = depth_image if self.args.map == "depth" else normal_image
            return [d if isinstance(d, Exception) else draw(d) for d in self.models["depth"].depth_batch(items)]
        return [attempt(self._map, inputs) for inputs in items]

    def _map(self, inputs: LoadedInput) -> np.ndarray:
        if self.args.map == "sketch":
            return sketch_image(inputs.image)
        grounding = self.models["grounding"]
        people = (
            grounding.locate_all(inputs, "person")
            if hasattr(grounding, "locate_all")
            else grounding.locate(inputs, ["person"])
        )
        return pose_image(inputs.image.shape[:2], self.models["pose"].keypoints(inputs, people))

    def render(self, batch: Sequence[Sample], clock: StageClock) -> list[Outcome]:
        out: list[Outcome] = []
        for sample in batch:
            direction = sample.record.params.get("direction")
            bad = direction not in DIRECTIONS
            out.append(NoClassicalMethod(f"direction {direction!r}: allowed {', '.join(DIRECTIONS)}") if bad else [])
        todo = [i for i, outcome in enumerate(out) if not isinstance(outcome, Exception)]
        with clock.stage("generate"):
            for i, rendered in zip(todo, self.maps([batch[i].inputs for i in todo]), strict=True):
                out[i] = rendered if isinstance(rendered, Exception) else self._candidate(batch[i], rendered)
        return out

    def _candidate(self, sample: Sample, rendered: np.ndarray) -> list[EditRecord]:
        record, image = sample.record, sample.inputs.image
        direction = record.params["direction"]
        before, after = (image, rendered) if direction == "to_map" else (rendered, image)
        return [candidate(record, before, after, full_mask(image), {"map": self.args.map, "direction": direction})]
