"""Input sources: procedural scenes, image folders (with optional JSON sidecars naming objects), caption files,
topic lists and WebDataset tar shards.

A source gives the writer phase a `SourceItem` (caption, object names, a reference) and gives the render phase a
`LoadedInput` for that reference (image, object masks where the source knows them, ground truth where it exists).
Text-only sources (captions, topics) give no image: the render phase generates it from the caption.

- `base.py`: `SourceItem`, `LoadedInput`, `BadSource`, the table of --input kinds, the checks on input text and paths;
- `scene.py`: procedural scenes; `image_folder.py`: image folders with JSON sidecars;
- `text_files.py`: caption files and topic lists; `webdataset.py`: WebDataset tar shards;
- here: building a source by kind and checking a run's --input before any work starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from datagen.errors import ConfigError
from datagen.sources.base import (
    IMAGE_SUFFIXES,
    INPUTS,
    MAX_TEXT_CHARS,
    BadSource,
    LoadedInput,
    SourceItem,
    check_text,
    inside_folder,
    wrong_suffix,
)
from datagen.sources.image_folder import ImageFolderSource
from datagen.sources.scene import SceneSource
from datagen.sources.text_files import CaptionFileSource, TopicSource
from datagen.sources.webdataset import MAX_TEXT_BYTES, WDS_META, WDS_NAME, ShardSource

__all__ = [
    "IMAGE_SUFFIXES",
    "INPUTS",
    "MAX_TEXT_BYTES",
    "MAX_TEXT_CHARS",
    "WDS_META",
    "WDS_NAME",
    "BadSource",
    "CaptionFileSource",
    "ImageFolderSource",
    "LoadedInput",
    "SceneSource",
    "ShardSource",
    "Source",
    "SourceItem",
    "TopicSource",
    "build_source",
    "check_source",
    "check_text",
    "inside_folder",
]


Source = SceneSource | ImageFolderSource | CaptionFileSource | TopicSource | ShardSource


def build_source(kind: str, size: int | Sequence[tuple[int, int]], input_dir: str | None) -> Source:
    """The source of this kind; `size` the (width, height) buckets its images are made in (an int: one square,
    datagen/images.py), `input_dir` the --input path (folder, file or tar)."""
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
            raise wrong_suffix(path, kind, (".tar",))
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
