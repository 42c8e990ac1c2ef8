"""Oracle grounding and segmentation: the masks the source already knows (procedural scenes, annotated images)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from datagen.config import RoleSpec
from datagen.errors import Reject
from datagen.models.batching import Counted, each
from datagen.sources import BadSource, LoadedInput


@dataclass
class Detection:
    name: str
    box: list[float]
    """[x0, y0, x1, y1] in pixels, x1/y1 exclusive."""
    score: float
    mask: np.ndarray | None = None


class GroundingMiss(Reject):
    """A named object was not found; `reason` is counted in the stats."""


def mask_box(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


class OracleGrounding(Counted):
    """Finds named objects by looking them up in the source's own annotations: exact, never wrong."""

    def __init__(self, spec: RoleSpec, **_):
        self.spec = spec
        self.model_id = "oracle"

    def load(self) -> None:
        pass

    def locate(self, inputs: LoadedInput, names: list[str]) -> list[Detection]:
        if not inputs.masks:
            raise GroundingMiss(
                "no_annotations",
                "oracle grounding needs objects the source knows: procedural scenes, or images with a JSON sidecar "
                "naming objects; use a pipeline with a grounding model for plain images",
            )
        found = []
        for name in names:
            mask = inputs.masks.get(name)
            if mask is None:
                raise GroundingMiss("object_not_found", f"{name!r} is not among {sorted(inputs.masks)}")
            if not mask.any():
                raise GroundingMiss("object_not_visible", f"{name!r} has an empty mask")
            found.append(Detection(name=name, box=mask_box(mask), score=1.0, mask=mask))
        return found

    def locate_batch(self, items) -> list[list[Detection] | GroundingMiss]:
        self.counted(len(items))
        return each(self.locate, items)


class OracleSegmenter(Counted):
    """Returns the exact masks the oracle grounding attached to its detections."""

    def __init__(self, spec: RoleSpec, **_):
        self.spec = spec
        self.model_id = "oracle"

    def load(self) -> None:
        pass

    def segment(self, inputs: LoadedInput, detections: list[Detection]) -> list[np.ndarray]:
        return [d.mask if d.mask is not None else inputs.masks[d.name] for d in detections]

    def segment_batch(self, items) -> list[list[np.ndarray]]:
        self.counted(len(items))
        return [self.segment(inputs, detections) for inputs, detections in items]


class SceneDepth(Counted):
    """Depth of a procedural scene from its depth order (local pipeline): the floor recedes, objects are domes."""

    def __init__(self, spec: RoleSpec, **_):
        self.model_id = "scene:depth"

    def load(self) -> None:
        pass

    def depth(self, inputs) -> np.ndarray:
        if inputs.scene is None:
            raise BadSource(
                "needs_scene", "the local pipeline knows depth only for procedural scenes (--source scene)"
            )
        return inputs.scene.depth()

    def depth_batch(self, items: list) -> list[np.ndarray | BadSource]:
        self.counted(len(items))
        return each(self.depth, [(inputs,) for inputs in items])


class SceneClasses(Counted):
    """Semantic classes of a procedural scene (local pipeline): background 0, then one class per shape."""

    def __init__(self, spec: RoleSpec, **_):
        self.model_id = "scene:classes"

    def load(self) -> None:
        pass

    def classes(self, inputs) -> np.ndarray:
        if inputs.scene is None:
            raise BadSource(
                "needs_scene", "the local pipeline knows classes only for procedural scenes (--source scene)"
            )
        return inputs.scene.classes()

    def classes_batch(self, items: list) -> list[np.ndarray | BadSource]:
        self.counted(len(items))
        return each(self.classes, [(inputs,) for inputs in items])
