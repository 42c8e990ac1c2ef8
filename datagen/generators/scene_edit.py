"""Region edits on the local pipeline by changing the scene and re-rendering it: the output is exact.

`local` replaces the named object by another (colour and shape), `texture` gives it another pattern, `background`
puts the objects on another background. The mask is where pixels may change: the old and new object (replace,
retexture) or everything but the objects (background).
"""

from __future__ import annotations

import copy
from typing import Literal

import numpy as np

from datagen import scenes
from datagen.generators.base import Classical, GeneratorArgs, NoClassicalMethod, candidate
from datagen.record import EditRecord
from datagen.sources import BadSource, LoadedInput


class SceneEdit(Classical):
    class Args(GeneratorArgs):
        edit: Literal["replace", "retexture", "background"] = "replace"
        """replace the named object by another (local), give it another pattern (texture), or put the objects on
        another background (background)."""

    @classmethod
    def follows_edits(cls, args: Args, source: str) -> bool:
        """No: it re-renders the procedural scene, and an image an earlier turn of a session edited is no scene
        (datagen/sessions.py)."""
        return False

    def candidates(self, record: EditRecord, inputs: LoadedInput, rng: np.random.Generator) -> list[EditRecord]:
        if inputs.scene is None:
            raise BadSource(
                "needs_scene",
                "the local pipeline makes region edits by re-rendering procedural scenes (--source scene)",
            )
        scene = inputs.scene
        before = scene.render()
        old_masks = dict(scene.masks)
        edited = copy.deepcopy(scene)
        if self.args.edit == "background":
            value = str(record.params.get("background", "")).strip().lower()
            if value not in scenes.BACKGROUNDS:
                raise NoClassicalMethod(f"background {value!r}: scenes have {', '.join(scenes.BACKGROUNDS)}")
            edited.background = value
            after = edited.render()
            foreground = (
                np.logical_or.reduce([m for m in old_masks.values()])
                if old_masks
                else np.zeros_like(before[..., 0], bool)
            )
            mask = np.where(foreground, 0, 255).astype(np.uint8)
            return [candidate(record, before, after, mask, {"edit": "background", "background": value})]
        target = record.objects[0] if record.objects else ""
        obj = next((o for o in edited.objects if o.name == target), None)
        if obj is None:
            raise BadSource("object_not_found", f"{target!r} is not in the scene")
        if self.args.edit == "replace":
            parts = scenes.parse_name(str(record.params.get("new_object", "")))
            if parts is None:
                raise NoClassicalMethod(f"new object {record.params.get('new_object')!r} is not a scene object name")
            obj.color, obj.pattern, obj.shape = parts
        else:
            pattern = str(record.params.get("texture", "")).strip().lower()
            if pattern not in scenes.PATTERNS:
                raise NoClassicalMethod(f"texture {pattern!r}: scenes have {', '.join(scenes.PATTERNS)}")
            obj.pattern = pattern
        obj.name = scenes.object_name(obj.color, obj.pattern, obj.shape)
        if obj.name != target and obj.name in old_masks:
            raise NoClassicalMethod(f"{obj.name!r} is already in the scene")
        after = edited.render()
        changed = old_masks[target] | edited.masks[obj.name]
        mask = np.where(changed, 255, 0).astype(np.uint8)
        box = edited.box(obj.name)
        return [candidate(record, before, after, mask, {"edit": self.args.edit, "new_object": obj.name}, boxes=[box])]
