"""Oracle grounding and segmentation: the masks the source already knows (procedural scenes, annotated images)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from datagen.config import RoleSpec
from datagen.sources import BadSource, LoadedInput


@dataclass
class Detection:
    name: str
    box: list[float]
    """[x0, y0, x1, y1] in pixels, x1/y1 exclusive."""
    score: float
    mask: np.ndarray | None = None


class GroundingMiss(Exception):
    """A named object was not found; `reason` is counted in the stats."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def mask_box(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


class OracleGrounding:
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


class OracleSegmenter:
    """Returns the exact masks the oracle grounding attached to its detections."""

    def __init__(self, spec: RoleSpec, **_):
        self.spec = spec
        self.model_id = "oracle"

    def load(self) -> None:
        pass

    def segment(self, inputs: LoadedInput, detections: list[Detection]) -> list[np.ndarray]:
        return [d.mask if d.mask is not None else inputs.masks[d.name] for d in detections]


class SceneDepth:
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


class SceneClasses:
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
