"""Input sources: procedural scenes, image folders (with optional JSON sidecars naming objects), caption files,
topic lists and WebDataset tar shards.

A source gives the writer phase a `SourceItem` (caption, object names, a reference) and gives the render phase a
`LoadedInput` for that reference (image, object masks where the source knows them, ground truth where it exists).
Text-only sources (captions, topics) give no image: the render phase generates it from the caption.
"""

from __future__ import annotations

import bisect
import itertools
import json
import os
import re
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from datagen import images, scenes
from datagen.errors import ConfigError, Reject

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
INPUTS = {
    "images": ("DIR", "a folder of images (with optional .json sidecars)"),
    "captions": (
        "FILE",
        'captions as .txt (one per line), .jsonl (one {"caption": "...", "objects": ["..."]} per line, objects '
        "optional) or .parquet (a string column `caption`, an optional list-of-strings column `objects`)",
    ),
    "topics": ("FILE", "topics as .txt (one per line) or .yaml (a list of strings)"),
    "shards": (
        "DIR or FILE.tar",
        'WebDataset .tar shards: KEY.jpg (or .png, ...) with KEY.txt or KEY.json {"caption": "...", "objects": [...]}',
    ),
}
"""Source kind -> (what --input is, what it may hold): the text of every input error."""
MAX_TEXT_BYTES = 1 << 20
"""A caption or annotation member larger than this is a broken sample, not text worth reading."""


MAX_TEXT_CHARS = {"caption": 2000, "topic": 500, "object": 200, "instruction": 1000}
"""Longest caption, topic and object name taken: Emu Edit's captions are a sentence or two; longer text is a
scraped page or an attack, and would crowd the writer's context."""
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
"""Control characters, bidirectional overrides (text that reads differently than it is) and lone surrogates."""
_INJECTION = re.compile(
    r"\[/?INST\]|<</?SYS>>|</?s>|<\|[a-z_]+\|>|\b(ignore|disregard|forget)\b.{0,30}\b(instructions?|prompts?|rules)\b"
    r"|\bsystem prompt\b",
    re.IGNORECASE | re.DOTALL,
)
"""Chat-template tokens and the usual phrasings of text addressed to the writer LLM rather than describing an image."""


def inside_folder(root: Path, rel: str, what: str) -> Path:
    """`root/rel` with symbolic links and `..` resolved; BadSource `path_outside_input` when that lies outside
    `root`, so a link in an input folder never brings an outside file into the dataset."""
    path = (root / rel).resolve()
    if root.resolve() not in path.parents:
        raise BadSource("path_outside_input", f"{what} {rel!r} leaves the input folder (a symbolic link or '..')")
    return path


def check_text(text: str, what: str = "caption", injection: bool = True) -> str:
    """A caption, topic, object name or instruction fit for a prompt and a dataset, whitespace runs (tabs, newlines)
    made one space; BadSource with reason `{what}_empty`, `_too_long`, `_control_characters` or (text from a source,
    `injection`) `_injection` otherwise."""
    text = " ".join(text.split())
    if not text:
        raise BadSource(f"{what}_empty", f"the {what} is empty")
    if len(text) > MAX_TEXT_CHARS[what]:
        raise BadSource(f"{what}_too_long", f"{len(text)} characters > {MAX_TEXT_CHARS[what]}: {text[:80]!r}...")
    bad = _CONTROL.search(text)
    if bad:
        raise BadSource(f"{what}_control_characters", f"U+{ord(bad.group()):04X} at {bad.start()}: {text[:80]!r}")
    injected = _INJECTION.search(text) if injection else None
    if injected:
        raise BadSource(f"{what}_injection", f"{injected.group()!r} addresses the writer: {text[:80]!r}")
    return text


class BadSource(Reject):
    """A source item that cannot become a sample; `reason` is counted in the stats."""


@dataclass
class SourceItem:
    ref: dict[str, Any]
    """How the render phase finds this input again (JSON-serialisable)."""
    caption: str
    objects: list[str]
    """Names of the objects the source knows are in the image."""
    setting: str | None = None
    """For composed captions ('on a tiled floor'): lets the writer rebuild the caption without an object."""
    topic: str | None = None
    """For LLM-written captions: the writer writes the caption first, on this topic."""


@dataclass
class LoadedInput:
    image: np.ndarray | None
    """None for a text-only source: generate the input image from the caption."""
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    """Object name -> exact bool mask, where the source knows it (scenes, annotated images)."""
    scene: scenes.Scene | None = None
    found: dict[str, float] | None = None
    """Object name -> a detector's confidence that it is in `image`, when a generator located the objects with one:
    the detector gate reuses it instead of running the detector on this image again."""

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

    def load(self, ref: dict[str, Any], max_pixels: int) -> LoadedInput:
        rel = str(ref["path"])
        path = inside_folder(self.root, rel, "image")
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


def _object_names(objects: Any) -> list[str]:
    """Names from a list of strings or of {"name": ...} dicts; BadSource otherwise."""
    if objects is None:
        return []
    if not isinstance(objects, list):
        raise BadSource("bad_annotation", f"objects must be a list, got {type(objects).__name__}")
    names = []
    for obj in objects:
        name = obj.get("name") if isinstance(obj, dict) else obj
        if not isinstance(name, str) or not name.strip():
            raise BadSource("bad_annotation", f"object without a name: {obj!r:.80}")
        names.append(name.strip())
    return names


def _text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, stripped text) of every non-blank line of a UTF-8 file."""
    try:
        with path.open("rb") as f:
            for lineno, raw in enumerate(f, 1):
                try:
                    text = raw.decode("utf-8-sig" if lineno == 1 else "utf-8").strip()
                except UnicodeDecodeError as e:
                    raise ConfigError(f"{path}:{lineno}: not UTF-8 ({e.reason}); save the file as UTF-8") from None
                if text:
                    yield lineno, text
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e})") from None


def _is_text(arrow_type: Any) -> bool:
    import pyarrow as pa

    return pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)


def _wrong_suffix(path: Path, kind: str, suffixes: tuple[str, ...]) -> ConfigError:
    found = repr(path.suffix) if path.suffix else "a file without a suffix"
    return ConfigError(f"{path}: --source {kind} reads {', '.join(suffixes)} files, not {found}; {INPUTS[kind][1]}")


class CaptionFileSource:
    """Captions from a .txt, .jsonl or .parquet file, one sample per row; text-only: the render phase generates
    each input image from its caption. Rows are the file's non-blank lines (or the table's rows)."""

    kind = "captions"
    SUFFIXES = (".txt", ".jsonl", ".parquet")

    def __init__(self, path: str):
        self.path = Path(path)
        self._rows: list[tuple[Any, Any]] | None = None

    @property
    def rows(self) -> list[tuple[Any, Any]]:
        """(caption, objects) per row as read; each row is checked when it becomes an item."""
        if self._rows is None:
            self._rows = self._read()
        return self._rows

    def _read(self) -> list[tuple[Any, Any]]:
        suffix = self.path.suffix.lower()
        if suffix == ".txt":
            return [(text, None) for _, text in _text_lines(self.path)]
        if suffix == ".jsonl":
            return [self._jsonl_row(lineno, text) for lineno, text in _text_lines(self.path)]
        if suffix == ".parquet":
            return self._parquet_rows()
        raise _wrong_suffix(self.path, self.kind, self.SUFFIXES)

    def _jsonl_row(self, lineno: int, text: str) -> tuple[Any, Any]:
        line = '{"caption": "...", "objects": ["...", ...]} (objects optional)'
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{self.path}:{lineno}: not valid JSON ({e.msg}); each line must be {line}") from None
        if not isinstance(data, dict) or not isinstance(data.get("caption"), str):
            raise ConfigError(f"{self.path}:{lineno}: no string field `caption`; each line must be {line}")
        return data["caption"], data.get("objects")

    def _parquet_rows(self) -> list[tuple[Any, Any]]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        allowed = "a captions table has a string column `caption` and an optional list-of-strings column `objects`"
        try:
            table = pq.ParquetFile(self.path)
            schema = table.schema_arrow
        except (OSError, pa.ArrowException) as e:
            raise ConfigError(f"{self.path}: not a readable Parquet file ({e}); {allowed}") from None
        if "caption" not in schema.names:
            columns = ", ".join(schema.names) or "none"
            raise ConfigError(f"{self.path}: no column `caption` (it has: {columns}); {allowed}")
        caption_type = schema.field("caption").type
        if not _is_text(caption_type):
            raise ConfigError(f"{self.path}: column `caption` is {caption_type}; {allowed}")
        columns = ["caption"]
        if "objects" in schema.names:
            objects_type = schema.field("objects").type
            is_list = pa.types.is_list(objects_type) or pa.types.is_large_list(objects_type)
            if not (is_list and _is_text(objects_type.value_type)):
                raise ConfigError(f"{self.path}: column `objects` is {objects_type}; {allowed}")
            columns.append("objects")
        try:
            data = table.read(columns=columns, use_threads=False)
        except (OSError, pa.ArrowException) as e:
            raise ConfigError(f"{self.path}: not a readable Parquet file ({e}); {allowed}") from None
        captions = data.column("caption").to_pylist()
        objects = data.column("objects").to_pylist() if "objects" in columns else [None] * len(captions)
        return list(zip(captions, objects, strict=True))

    def __len__(self) -> int:
        return len(self.rows)

    def ref(self, seed: int, index: int) -> dict[str, Any]:
        return {"kind": self.kind, "row": index % len(self.rows)}

    def item(self, ref: dict[str, Any]) -> SourceItem:
        row = int(ref["row"])
        caption, objects = self.rows[row]
        if not isinstance(caption, str) or not caption.strip():
            raise BadSource("empty_caption", f"{self.path.name} row {row}")
        return SourceItem(ref=ref, caption=caption.strip(), objects=_object_names(objects))

    def load(self, ref: dict[str, Any], max_pixels: int) -> LoadedInput:
        return LoadedInput(image=None)


class TopicSource:
    """Topics from a .txt (one per line) or .yaml (a list of strings) file, cycled through; the writer writes a
    caption on the topic, the render phase generates the image from it."""

    kind = "topics"
    SUFFIXES = (".txt", ".yaml", ".yml")

    def __init__(self, path: str):
        self.path = Path(path)
        self._topics: list[str] | None = None

    @property
    def topics(self) -> list[str]:
        if self._topics is None:
            self._topics = self._read()
        return self._topics

    def _read(self) -> list[str]:
        suffix = self.path.suffix.lower()
        if suffix == ".txt":
            return [text for _, text in _text_lines(self.path)]
        if suffix in (".yaml", ".yml"):
            return self._yaml_topics()
        raise _wrong_suffix(self.path, self.kind, self.SUFFIXES)

    def _yaml_topics(self) -> list[str]:
        allowed = "a YAML topics file is a list of strings, one `- topic` per line"
        try:
            data = yaml.safe_load(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{self.path}: cannot read ({e})") from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"{self.path}:{mark.line + 1}" if mark else str(self.path)
            raise ConfigError(f"{where}: not valid YAML ({getattr(e, 'problem', e)}); {allowed}") from None
        if data is None:
            return []
        if not isinstance(data, list):
            raise ConfigError(f"{self.path}: expected a list, got a {type(data).__name__}; {allowed}")
        for number, topic in enumerate(data, 1):
            if not isinstance(topic, str) or not topic.strip():
                raise ConfigError(f"{self.path}: list item {number} is {topic!r:.60}, not a topic; {allowed}")
        return [topic.strip() for topic in data]

    def __len__(self) -> int:
        return len(self.topics)

    def ref(self, seed: int, index: int) -> dict[str, Any]:
        return {"kind": self.kind, "topic": index % len(self.topics), "index": index}

    def item(self, ref: dict[str, Any]) -> SourceItem:
        return SourceItem(ref=ref, caption="", objects=[], topic=self.topics[int(ref["topic"])])

    def load(self, ref: dict[str, Any], max_pixels: int) -> LoadedInput:
        return LoadedInput(image=None)


WDS_NAME = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")
"""WebDataset's split of a member name into key (up to the base name's first dot) and extension."""
WDS_META = re.compile(r"__[^/]*__($|/)")
"""WebDataset skips members named like this (shard metadata)."""


@dataclass
class _TarIndex:
    rel: str
    """Path of the tar relative to the input folder."""
    keys: list[str]
    """Keys of the samples that have an image, in tar order."""
    members: dict[str, dict[str, tuple[int, int]]]
    """Key -> extension -> (data offset, size) in the tar file."""
    outside: str = ""
    """For a tar outside the input folder (a symbolic link), never read: why; it stands for one sample, rejected as
    `path_outside_input`."""


def _index_tar(root: Path, rel: str) -> _TarIndex:
    """One pass over the tar's headers: where each sample's members lie."""
    path = root / rel
    members: dict[str, dict[str, tuple[int, int]]] = {}
    try:
        with tarfile.open(path, "r:") as tar:
            for info in tar:
                match = WDS_NAME.match(info.name)
                if not info.isreg() or info.issparse() or not match or WDS_META.match(info.name):
                    continue
                key, ext = match.group(1), match.group(2).lower()
                members.setdefault(key, {}).setdefault(ext, (info.offset_data, info.size))
    except (OSError, tarfile.TarError) as e:
        raise ConfigError(f"{path}: not a readable uncompressed tar file ({e}); {INPUTS['shards'][1]}") from None
    keys = [key for key, exts in members.items() if _image_ext(exts)]
    return _TarIndex(rel, keys, {key: members[key] for key in keys})


def _image_ext(exts: dict[str, tuple[int, int]]) -> str | None:
    return next((suffix[1:] for suffix in IMAGE_SUFFIXES if suffix[1:] in exts), None)


class ShardSource:
    """WebDataset tar shards (a folder of .tar files, sorted by path, or one .tar): members grouped by key, each
    sample an image (KEY.jpg, KEY.png, ...) with a caption in KEY.txt or KEY.json {"caption": ..., "objects": [names
    or {"name": ...}]}. The tars are indexed once; members are read in place by offset, never extracted."""

    kind = "shards"

    def __init__(self, input: str, size: int):
        path = Path(input)
        self.root = path if path.is_dir() else path.parent
        self.single = None if path.is_dir() else path.name
        self.size = size
        self._tars: dict[str, _TarIndex] | None = None
        self._order: list[_TarIndex] = []
        self._starts: list[int] = []

    @property
    def tars(self) -> dict[str, _TarIndex]:
        """Relative tar path -> its index, in sorted path order."""
        if self._tars is None:
            self._order = [self._index(rel) for rel in self._tar_paths()]
            self._starts = [0, *itertools.accumulate(len(tar.keys) for tar in self._order)][:-1]
            self._tars = {tar.rel: tar for tar in self._order}
        return self._tars

    def _index(self, rel: str) -> _TarIndex:
        if self.single is None:  # a tar named by --input itself is the user's choice, wherever it lies
            try:
                inside_folder(self.root, rel, "tar")
            except BadSource as e:
                return _TarIndex(rel, [""], {}, outside=e.detail)
        return _index_tar(self.root, rel)

    def _tar_paths(self) -> list[str]:
        if self.single is not None:
            return [self.single]
        found = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames.sort()
            for name in sorted(filenames):
                if name.lower().endswith(".tar"):
                    found.append(os.path.relpath(os.path.join(dirpath, name), self.root))
        return found

    def __len__(self) -> int:
        return sum(len(tar.keys) for tar in self.tars.values())

    def ref(self, seed: int, index: int) -> dict[str, Any]:
        position = index % len(self)
        number = bisect.bisect_right(self._starts, position) - 1
        tar = self._order[number]
        return {"kind": self.kind, "tar": tar.rel, "key": tar.keys[position - self._starts[number]]}

    def _sample(self, ref: dict[str, Any]) -> dict[str, tuple[int, int]]:
        tar = self.tars.get(str(ref["tar"]))
        if tar is not None and tar.outside:
            raise BadSource("path_outside_input", tar.outside)
        exts = tar.members.get(str(ref["key"])) if tar else None
        if exts is None:
            raise BadSource("missing_sample", f"{ref['tar']}: no sample with key {ref['key']!r}")
        return exts

    def _read(self, ref: dict[str, Any], ext: str, offset: int, size: int) -> bytes:
        try:
            with open(self.root / str(ref["tar"]), "rb") as f:
                f.seek(offset)
                data = f.read(size)
        except OSError as e:
            raise BadSource("unreadable", f"{ref['tar']}: {ref['key']}.{ext}: {e}") from None
        if len(data) != size:
            raise BadSource("unreadable", f"{ref['tar']}: {ref['key']}.{ext} is cut short (the tar changed?)")
        return data

    def _text(self, ref: dict[str, Any], exts: dict[str, tuple[int, int]], ext: str) -> str:
        offset, size = exts[ext]
        if size > MAX_TEXT_BYTES:
            raise BadSource("bad_annotation", f"{ref['key']}.{ext} is {size} bytes, over {MAX_TEXT_BYTES}")
        try:
            return self._read(ref, ext, offset, size).decode("utf-8")
        except UnicodeDecodeError as e:
            raise BadSource("bad_annotation", f"{ref['key']}.{ext}: not UTF-8 ({e.reason})") from None

    def _meta(self, ref: dict[str, Any], exts: dict[str, tuple[int, int]]) -> dict[str, Any]:
        if "json" not in exts:
            return {}
        try:
            data = json.loads(self._text(ref, exts, "json"))
        except json.JSONDecodeError as e:
            raise BadSource("bad_annotation", f"{ref['key']}.json: {e}") from None
        if not isinstance(data, dict):
            raise BadSource("bad_annotation", f"{ref['key']}.json: expected {{'caption': str, 'objects': [...]}}")
        return data

    def item(self, ref: dict[str, Any]) -> SourceItem:
        exts = self._sample(ref)
        meta = self._meta(ref, exts)
        caption = self._text(ref, exts, "txt") if "txt" in exts else meta.get("caption", "")
        if not isinstance(caption, str):
            raise BadSource("bad_annotation", f"caption must be a string, got {type(caption).__name__}")
        return SourceItem(ref=ref, caption=caption.strip(), objects=_object_names(meta.get("objects")))

    def load(self, ref: dict[str, Any], max_pixels: int) -> LoadedInput:
        exts = self._sample(ref)
        ext = _image_ext(exts)
        offset, size = exts[ext]
        image = images.decode_image(self._read(ref, ext, offset, size), max_pixels)
        return LoadedInput(image=images.fit_square(image, self.size))


Source = SceneSource | ImageFolderSource | CaptionFileSource | TopicSource | ShardSource


def build_source(kind: str, size: int, input_dir: str | None) -> Source:
    """The source of this kind; `input_dir` is the --input path (folder, file or tar)."""
    if kind == "scene":
        return SceneSource(size)
    if kind == "images":
        return ImageFolderSource(str(input_dir), size)
    if kind == "captions":
        return CaptionFileSource(str(input_dir))
    if kind == "topics":
        return TopicSource(str(input_dir))
    if kind == "shards":
        return ShardSource(str(input_dir), size)
    raise ValueError(f"unknown source {kind!r}")


def check_source(kind: str, input: str | None, n: int | None = None, repeat: bool = False) -> None:
    """Open and read (or index) the run's input now, so a bad one fails before any work starts; ConfigError.
    With `n`, an image folder holding fewer images than `n` samples is refused unless `repeat` allows reusing them."""
    if kind not in INPUTS:
        if input:
            raise ConfigError(f"--input is only used with --source {', '.join(INPUTS)} (source is {kind!r})")
        return
    arg, allowed = INPUTS[kind]
    if not input:
        raise ConfigError(f"--source {kind} needs --input {arg}: {allowed}")
    path = Path(input)
    if kind == "images" and not path.is_dir():
        raise ConfigError(f"--input {input!r}: no such directory")
    if kind in ("captions", "topics") and not path.is_file():
        raise ConfigError(f"--input {input!r}: no such file; --source {kind} reads {allowed}")
    if kind == "shards" and not path.is_dir():
        if not path.is_file():
            raise ConfigError(f"--input {input!r}: no such directory or .tar file; --source shards reads {allowed}")
        if path.suffix.lower() != ".tar":
            raise _wrong_suffix(path, kind, (".tar",))
    distinct = len(build_source(kind, 1, input))
    if distinct == 0:
        raise ConfigError(f"--input {input!r}: {_nothing_found(kind)}; --source {kind} reads {allowed}")
    if kind == "images" and n is not None and n > distinct and not repeat:
        raise ConfigError(
            f"--input {input!r} holds {distinct} images; --n {n} would reuse them; pass --repeat to allow it, "
            f"or lower --n"
        )


def _nothing_found(kind: str) -> str:
    return {
        "images": f"no images found (looked for {' '.join(IMAGE_SUFFIXES)})",
        "captions": "no captions in it (blank lines are skipped)",
        "topics": "no topics in it (blank lines are skipped)",
        "shards": f"no samples with an image member ({' '.join(IMAGE_SUFFIXES)}) in any .tar file",
    }[kind]
