"""Procedural scenes: one seed, one scene with its caption, exact object masks and ground truth, drawn in a bucket
chosen from the seed."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, ClassVar

from datagen import scenes
from datagen.images import bucket_list, draw_bucket
from datagen.sources.base import InputSpec, LoadedInput, SourceItem


class SceneSource:
    """`size`: the (width, height) buckets a scene may be drawn in, one drawn per seed (an int: one square)."""

    kind: ClassVar[str] = "scene"
    summary: ClassVar[str] = "procedural scenes with exact masks and ground truth"
    photos: ClassVar[bool] = False
    text_only: ClassVar[bool] = False
    urls: ClassVar[bool] = False
    curates: ClassVar[bool] = False
    caption_where: ClassVar[str] = "the scene's own caption"
    fills: ClassVar[tuple[str, ...]] = ("caption", "objects", "setting")
    input: ClassVar[InputSpec | None] = None

    def __init__(self, size: int | Sequence[tuple[int, int]]):
        self.buckets = bucket_list(size)

    @classmethod
    def from_input(cls, input: str | None, size: int | Sequence[tuple[int, int]]) -> SceneSource:
        return cls(size)

    def unreadable(self) -> list[tuple[str, str, str]]:
        return []

    def __len__(self) -> int:
        """Procedural: as many scenes as there are seeds."""
        return sys.maxsize

    def ref(self, seed: int, index: int) -> dict[str, Any]:
        return {"kind": self.kind, "seed": seed}

    def scene(self, ref: dict[str, Any]) -> scenes.Scene:
        seed = int(ref["seed"])
        return scenes.make_scene(seed, *draw_bucket(seed, self.buckets))

    def item(self, ref: dict[str, Any]) -> SourceItem:
        scene = self.scene(ref)
        return SourceItem(
            ref=ref,
            caption=scene.caption(),
            objects=[o.name for o in scene.objects],
            setting=scene.setting,
        )

    def load(self, ref: dict[str, Any], max_pixels: int) -> LoadedInput:
        scene = self.scene(ref)
        image = scene.render()
        return LoadedInput(image=image, masks=dict(scene.masks), scene=scene)
