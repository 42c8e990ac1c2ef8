"""Procedural scenes: one seed, one scene with its caption, exact object masks and ground truth."""

from __future__ import annotations

import sys
from typing import Any

from datagen import scenes
from datagen.sources.base import LoadedInput, SourceItem


class SceneSource:
    kind = "scene"

    def __init__(self, size: int):
        self.size = size

    def __len__(self) -> int:
        """Procedural: as many scenes as there are seeds."""
        return sys.maxsize

    def ref(self, seed: int, index: int) -> dict[str, Any]:
        return {"kind": self.kind, "seed": seed}

    def item(self, ref: dict[str, Any]) -> SourceItem:
        scene = scenes.make_scene(int(ref["seed"]), self.size)
        return SourceItem(
            ref=ref,
            caption=scene.caption(),
            objects=[o.name for o in scene.objects],
            setting=scene.setting,
        )

    def load(self, ref: dict[str, Any], max_pixels: int) -> LoadedInput:
        scene = scenes.make_scene(int(ref["seed"]), self.size)
        image = scene.render()
        return LoadedInput(image=image, masks=dict(scene.masks), scene=scene)
