"""Image folders: every image under a folder, with an optional JSON sidecar naming its objects (boxes or masks);
each image fitted to its nearest bucket, its objects' masks with it."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from datagen import images
from datagen.sources.base import IMAGE_SUFFIXES, BadSource, InputSpec, LoadedInput, SourceItem, inside_folder


class ImageFolderSource:
    """Images under a folder, sorted by path. `photo.jpg` may have `photo.json`:
    {"caption": "...", "objects": [{"name": "red mug", "box": [x0, y0, x1, y1]} | {"name": ..., "mask": "m.png"}]}
    in the original image's pixel coordinates. `size`: the (width, height) buckets an image is fitted to, the one
    nearest its aspect ratio (an int: one square bucket of that side).
    """

    kind: ClassVar[str] = "images"
    input: ClassVar[InputSpec | None] = InputSpec(
        arg="DIR",
        allowed="a folder of images (with optional .json sidecars)",
        folder=True,
        suffixes=(),
        empty=f"no images found (looked for {' '.join(IMAGE_SUFFIXES)})",
        repeat=True,
    )

    def __init__(self, root: str, size: int | Sequence[tuple[int, int]]):
        self.root = Path(root)
        self.buckets = images.bucket_list(size)
        self._files: list[str] | None = None

    @classmethod
    def from_input(cls, input: str | None, size: int | Sequence[tuple[int, int]]) -> ImageFolderSource:
        return cls(str(input), size)

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
        inside_folder(self.root, str(Path(rel).with_suffix(".json")), "sidecar")
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
        inside_folder(self.root, rel, "image")
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

    def original(self, ref: dict[str, Any], max_pixels: int) -> np.ndarray:
        """The image as stored, decoded (no larger than max_pixels), before it is fitted to a bucket: what the curate
        phase measures."""
        path = inside_folder(self.root, str(ref["path"]), "image")
        try:
            data = path.read_bytes()
        except OSError as e:
            raise images.BadImage("unreadable", str(e)) from None
        return images.decode_image(data, max_pixels)

    def load(self, ref: dict[str, Any], max_pixels: int) -> LoadedInput:
        rel = str(ref["path"])
        original = self.original(ref, max_pixels)
        height, width = original.shape[:2]
        bucket = images.nearest_bucket(width, height, self.buckets)
        masks = {}
        for obj in self._sidecar(rel).get("objects", []):  # boxes and masks are in the original's pixels
            mask = self._object_mask(obj, height, width)
            masks[obj["name"].strip()] = images.fit_to_bucket(mask.astype(np.uint8), bucket, nearest=True) > 0
        return LoadedInput(image=images.fit_to_bucket(original, bucket), masks=masks)

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
