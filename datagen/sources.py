"""Input sources: procedural scenes and image folders (with optional JSON sidecars naming objects).

A source gives the writer phase a `SourceItem` (caption, object names, a reference) and gives the render phase a
`LoadedInput` for that reference (image, object masks where the source knows them, ground truth where it exists).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from datagen import images, scenes

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


class BadSource(Exception):
    """A source item that cannot become a sample; `reason` is counted in the stats."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass
class SourceItem:
    ref: dict[str, Any]
    """How the render phase finds this input again (JSON-serialisable)."""
    caption: str
    objects: list[str]
    """Names of the objects the source knows are in the image."""
    setting: str | None = None
    """For composed captions ('on a tiled floor'): lets the writer rebuild the caption without an object."""


@dataclass
class LoadedInput:
    image: np.ndarray
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    """Object name -> exact bool mask, where the source knows it (scenes, annotated images)."""
    scene: scenes.Scene | None = None

    def ground_truth(self, removed: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray] | None:
        """(exact image with these objects removed, mask of the objects still in it), where the source can
        render it; None otherwise."""
        if self.scene is None:
            return None
        image = self.scene.render(exclude=removed)
        others = np.zeros(image.shape[:2], bool)
        for mask in self.scene.masks.values():
            others |= mask
        return image, others


class SceneSource:
    kind = "scene"

    def __init__(self, size: int):
        self.size = size

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


class ImageFolderSource:
    """Images under a folder, sorted by path. `photo.jpg` may have `photo.json`:
    {"caption": "...", "objects": [{"name": "red mug", "box": [x0, y0, x1, y1]} | {"name": ..., "mask": "m.png"}]}
    in the original image's pixel coordinates.
    """

    kind = "images"

    def __init__(self, root: str, size: int):
        self.root = Path(root)
        self.size = size
        self._files: list[str] | None = None

    @property
    def files(self) -> list[str]:
        if self._files is None:
            found = []
            for dirpath, dirnames, filenames in os.walk(self.root):
                dirnames.sort()
                for name in sorted(filenames):
                    if name.lower().endswith(IMAGE_SUFFIXES) and ".mask" not in name:
                        found.append(os.path.relpath(os.path.join(dirpath, name), self.root))
            self._files = found
        return self._files

    def __len__(self) -> int:
        return len(self.files)

    def _sidecar(self, rel: str) -> dict[str, Any]:
        path = (self.root / rel).with_suffix(".json")
        if not path.exists():
            return {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise BadSource("bad_annotation", f"{path.name}: {e}") from None
        if not isinstance(data, dict) or not isinstance(data.get("objects", []), list):
            raise BadSource("bad_annotation", f"{path.name}: expected {{'caption': str, 'objects': [...]}}")
        return data

    def ref(self, seed: int, index: int) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.files[index % len(self.files)]}

    def item(self, ref: dict[str, Any]) -> SourceItem:
        rel = str(ref["path"])
        sidecar = self._sidecar(rel)
        caption = sidecar.get("caption", "")
        if not isinstance(caption, str):
            raise BadSource("bad_annotation", f"caption must be a string, got {type(caption).__name__}")
        names = []
        for obj in sidecar.get("objects", []):
            if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not obj["name"].strip():
                raise BadSource("bad_annotation", f"object without a name: {obj!r:.80}")
            names.append(obj["name"].strip())
        return SourceItem(ref=ref, caption=caption.strip(), objects=names)

    def load(self, ref: dict[str, Any], max_pixels: int) -> LoadedInput:
        rel = str(ref["path"])
        path = self.root / rel
        try:
            data = path.read_bytes()
        except OSError as e:
            raise images.BadImage("unreadable", str(e)) from None
        original = images.decode_image(data, max_pixels)
        height, width = original.shape[:2]
        masks = {}
        for obj in self._sidecar(rel).get("objects", []):
            mask = self._object_mask(obj, height, width)
            masks[obj["name"].strip()] = images.fit_square(mask.astype(np.uint8), self.size, nearest=True) > 0
        return LoadedInput(image=images.fit_square(original, self.size), masks=masks)

    def _object_mask(self, obj: dict[str, Any], height: int, width: int) -> np.ndarray:
        mask = np.zeros((height, width), bool)
        if "mask" in obj:
            mask_path = (self.root / str(obj["mask"])).resolve()
            if self.root.resolve() not in mask_path.parents:
                raise BadSource("bad_annotation", f"mask path {obj['mask']!r} leaves the input folder")
            try:
                decoded = images.decode_image(mask_path.read_bytes(), height * width * 4)
            except (OSError, images.BadImage) as e:
                raise BadSource("bad_annotation", f"mask {obj['mask']!r}: {e}") from None
            if decoded.shape[:2] != (height, width):
                raise BadSource("bad_annotation", f"mask {obj['mask']!r} is {decoded.shape[1]}x{decoded.shape[0]}")
            return decoded.max(axis=2) > 127
        box = obj.get("box")
        if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, int | float) for v in box)):
            raise BadSource("bad_annotation", f"object {obj.get('name')!r} needs 'box': [x0, y0, x1, y1] or 'mask'")
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        mask[max(0, y0) : min(height, y1), max(0, x0) : min(width, x1)] = True
        return mask


def build_source(kind: str, size: int, input_dir: str | None) -> SceneSource | ImageFolderSource:
    if kind == "scene":
        return SceneSource(size)
    if kind == "images":
        return ImageFolderSource(str(input_dir), size)
    raise ValueError(f"unknown source {kind!r}")
