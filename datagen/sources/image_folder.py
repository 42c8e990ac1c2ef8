"""Image folders, local or in an object store: every image under a folder, with an optional JSON sidecar naming its
objects (boxes or masks) or a .txt caption (img2dataset's layout, its parquet sidecars too); each image fitted to its
nearest bucket, its objects' masks with it."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from datagen import images
from datagen.sources.base import (
    IMAGE_SUFFIXES,
    BadSource,
    InputSpec,
    LoadedInput,
    SourceItem,
    inside_folder,
    load_sidecar,
    parquet_captions,
)
from datagen.storage import Folder, is_url, retrying


def _walk_order(rel: str) -> list[tuple[int, str]]:
    """Sort key of a listed path in os.walk's order, as a local folder is read: a folder's files (sorted) before its
    sub-folders (sorted), so that one folder gives the same inputs in the same order on disk and in an object store."""
    *folders, name = rel.split("/")
    return [(1, folder) for folder in folders] + [(0, name)]


class ImageFolderSource:
    """Images under a folder (a path, or an object-store URL: s3://, gs://, az://), sorted by path. `photo.jpg` may
    have `photo.json`: {"caption": "...", "objects": [{"name": "red mug", "box": [x0, y0, x1, y1]} | {"name": ...,
    "mask": "m.png"}]} in the original image's pixel coordinates, or its caption in `photo.txt`; img2dataset's
    `files` layout (00000/000000000.jpg with .txt and .json {url, width, height, ...}, and 00000.parquet beside each
    folder holding every key's caption) is read as it is. `size`: the (width, height) buckets an image is fitted to,
    the one nearest its aspect ratio (an int: one square bucket of that side).
    """

    kind: ClassVar[str] = "images"
    summary: ClassVar[str] = "a folder of images, local or on an object store"
    photos: ClassVar[bool] = True
    text_only: ClassVar[bool] = False
    urls: ClassVar[bool] = True
    curates: ClassVar[bool] = True
    caption_where: ClassVar[str] = 'a sidecar PHOTO.json beside it, {"caption": "..."}, or PHOTO.txt'
    fills: ClassVar[tuple[str, ...]] = ("caption", "objects")
    input: ClassVar[InputSpec | None] = InputSpec(
        arg="DIR",
        allowed="a folder of images (with optional .json or .txt sidecars), local or in an object store",
        folder=True,
        suffixes=(),
        empty=f"no images found (looked for {' '.join(IMAGE_SUFFIXES)})",
        repeat=True,
    )

    def __init__(self, root: str, size: int | Sequence[tuple[int, int]]):
        self.store = Folder(root) if is_url(root) else None
        """Where the images are when --input is a URL: read through fsspec."""
        self.root = Path(root) if self.store is None else Path(".")
        self.buckets = images.bucket_list(size)
        self._files: list[str] | None = None
        self._listed: set[str] = set()
        """Every file found (images and sidecars), for a folder in an object store."""
        self._captions: dict[str, dict[str, str]] = {}
        """A parquet sidecar's captions, by its folder: img2dataset's 00000.parquet for 00000/."""

    @classmethod
    def from_input(cls, input: str | None, size: int | Sequence[tuple[int, int]]) -> ImageFolderSource:
        return cls(str(input), size)

    @property
    def files(self) -> list[str]:
        if self._files is None:
            found = []
            if self.store is not None:
                base = self.store.path.rstrip("/") + "/"
                listed = retrying(lambda: self.store.fs.find(self.store.path), "list")
                self._listed = {path[len(base) :] for path in listed if path.startswith(base)}
                names = sorted(self._listed, key=_walk_order)
                found = [rel for rel in names if rel.lower().endswith(IMAGE_SUFFIXES) and ".mask" not in rel]
            else:
                for dirpath, dirnames, filenames in os.walk(self.root):
                    dirnames.sort()
                    for name in sorted(filenames):
                        if name.lower().endswith(IMAGE_SUFFIXES) and ".mask" not in name:
                            found.append(os.path.relpath(os.path.join(dirpath, name), self.root))
            self._files = found
        return self._files

    def unreadable(self) -> list[tuple[str, str, str]]:
        return []

    def __len__(self) -> int:
        return len(self.files)

    def _exists(self, rel: str) -> bool:
        if self.store is not None:
            return rel in self._listed
        return (self.root / rel).is_file()

    def _read(self, rel: str, what: str) -> bytes:
        """A file of the folder; a local one only inside it (a link or '..' is refused)."""
        if self.store is not None:
            if rel.startswith("/") or ".." in rel.split("/"):
                raise BadSource("path_outside_input", f"{what} {rel!r} leaves the input folder")
            return self.store.read_bytes(rel)
        return inside_folder(self.root, rel, what).read_bytes()

    def _sidecar(self, rel: str) -> dict[str, Any]:
        name = str(Path(rel).with_suffix(".json"))
        if not self._exists(name):
            return {}
        try:
            data = load_sidecar(self._read(name, "sidecar"), Path(name).name)
        except OSError as e:
            raise BadSource("bad_annotation", f"{Path(name).name}: {e}") from None
        if not isinstance(data.get("objects") or [], list):
            raise BadSource("bad_annotation", f"{Path(name).name}: expected {{'caption': str, 'objects': [...]}}")
        return data

    def _caption(self, rel: str, sidecar: dict[str, Any]) -> str:
        """The sidecar's caption, else PHOTO.txt, else the caption img2dataset's parquet beside the folder holds."""
        caption = sidecar.get("caption")
        if caption is not None:
            if not isinstance(caption, str):
                raise BadSource("bad_annotation", f"caption must be a string, got {type(caption).__name__}")
            return caption
        text = str(Path(rel).with_suffix(".txt"))
        if self._exists(text):
            try:
                return self._read(text, "caption").decode("utf-8")
            except UnicodeDecodeError as e:
                raise BadSource("bad_annotation", f"{Path(text).name}: not UTF-8 ({e.reason})") from None
        folder = str(Path(rel).parent)
        return self._parquet_captions(folder).get(Path(rel).stem, "") if folder != "." else ""

    def _parquet_captions(self, folder: str) -> dict[str, str]:
        """img2dataset's FOLDER.parquet: key -> caption ({} when there is none)."""
        if folder not in self._captions:
            name = f"{folder}.parquet"
            found = parquet_captions(self._read(name, "parquet sidecar"), name) if self._exists(name) else {}
            self._captions[folder] = found
        return self._captions[folder]

    def ref(self, seed: int, index: int) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.files[index % len(self.files)]}

    def item(self, ref: dict[str, Any]) -> SourceItem:
        rel = str(ref["path"])
        if self.store is None:
            inside_folder(self.root, rel, "image")
        sidecar = self._sidecar(rel)
        caption = self._caption(rel, sidecar)
        names = []
        for obj in sidecar.get("objects") or []:
            if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not obj["name"].strip():
                raise BadSource("bad_annotation", f"object without a name: {obj!r:.80}")
            names.append(obj["name"].strip())
        return SourceItem(ref=ref, caption=caption.strip(), objects=names)

    def original(self, ref: dict[str, Any], max_pixels: int) -> np.ndarray:
        """The image as stored, decoded (no larger than max_pixels), before it is fitted to a bucket: what the curate
        phase measures."""
        try:
            data = self._read(str(ref["path"]), "image")
        except OSError as e:
            raise images.BadImage("unreadable", str(e)) from None
        return images.decode_image(data, max_pixels)

    def load(self, ref: dict[str, Any], max_pixels: int) -> LoadedInput:
        rel = str(ref["path"])
        original = self.original(ref, max_pixels)
        height, width = original.shape[:2]
        bucket = images.nearest_bucket(width, height, self.buckets)
        masks = {}
        for obj in self._sidecar(rel).get("objects") or []:  # boxes and masks are in the original's pixels
            mask = self._object_mask(obj, height, width)
            masks[obj["name"].strip()] = images.fit_to_bucket(mask.astype(np.uint8), bucket, nearest=True) > 0
        return LoadedInput(image=images.fit_to_bucket(original, bucket), masks=masks)

    def _object_mask(self, obj: dict[str, Any], height: int, width: int) -> np.ndarray:
        mask = np.zeros((height, width), bool)
        if "mask" in obj:
            try:
                data = self._read(str(obj["mask"]), "mask")
            except BadSource:
                raise BadSource("bad_annotation", f"mask path {obj['mask']!r} leaves the input folder") from None
            except OSError as e:
                raise BadSource("bad_annotation", f"mask {obj['mask']!r}: {e}") from None
            try:
                decoded = images.decode_image(data, height * width * 4)
            except images.BadImage as e:
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
