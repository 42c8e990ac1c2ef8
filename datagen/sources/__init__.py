"""Input sources: procedural scenes, image folders (with optional JSON sidecars naming objects), caption files,
topic lists and WebDataset tar shards.

A source gives the writer phase a `SourceItem` (caption, object names, a reference) and gives the render phase a
`LoadedInput` for that reference (image, object masks where the source knows them, ground truth where it exists).
Text-only sources (captions, topics) give no image: the render phase generates it from the caption.

A new kind of input is one module with a class that keeps `base.Source` (its `kind`, its `input` spec, `from_input`,
`__len__`, `ref`, `item`, `load`) and one line in `SOURCES`; `tests/test_source_contract.py` holds every registered
kind to the protocol.

- `base.py`: the `Source` protocol, `InputSpec`, `SourceItem`, `LoadedInput`, `BadSource`, the checks on input text
  and paths;
- `scene.py`: procedural scenes; `image_folder.py`: image folders with JSON sidecars;
- `text_files.py`: caption files and topic lists; `webdataset.py`: WebDataset tar shards; `curated.py`: a set
  `datagen curate` made, read through the source it was curated from;
- here: the registry, building a source by kind and checking a run's --input before any work starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from datagen.errors import ConfigError
from datagen.sources.base import (
    IMAGE_SUFFIXES,
    INPUT_ERROR,
    MAX_TEXT_CHARS,
    UNCAPTIONED,
    BadSource,
    InputSpec,
    LoadedInput,
    Source,
    SourceItem,
    check_text,
    inside_folder,
    wrong_suffix,
)
from datagen.sources.curated import CuratedSource
from datagen.sources.image_folder import ImageFolderSource
from datagen.sources.scene import SceneSource
from datagen.sources.text_files import CaptionFileSource, TopicSource
from datagen.sources.webdataset import MAX_TEXT_BYTES, WDS_META, WDS_NAME, ShardSource
from datagen.storage import is_url

__all__ = [
    "IMAGE_SUFFIXES",
    "INPUT_ERROR",
    "MAX_TEXT_BYTES",
    "MAX_TEXT_CHARS",
    "SOURCES",
    "WDS_META",
    "WDS_NAME",
    "BadSource",
    "CaptionFileSource",
    "CuratedSource",
    "ImageFolderSource",
    "InputSpec",
    "LoadedInput",
    "SceneSource",
    "ShardSource",
    "Source",
    "SourceItem",
    "TopicSource",
    "build_source",
    "help_text",
    "kinds",
    "describe_unreadable",
    "unreadable_inputs",
    "check_source",
    "UNCAPTIONED",
    "check_text",
    "inside_folder",
    "source_class",
]


SOURCES: dict[str, type[Source]] = {
    cls.kind: cls
    for cls in (SceneSource, ImageFolderSource, CaptionFileSource, TopicSource, ShardSource, CuratedSource)
}
"""Every source kind (`--source KIND`, a task file's `sources`) -> its class, in the order messages list them."""


def kinds(**declared: bool) -> tuple[str, ...]:
    """The registered kinds whose declarations are as given, in registry order: `kinds(photos=True)`,
    `kinds(urls=True)`, `kinds(curates=True)`. Every such list derives from SOURCES, the only one written down."""
    return tuple(kind for kind, cls in SOURCES.items() if all(getattr(cls, k) == v for k, v in declared.items()))


def help_text() -> str:
    """Every kind and what it reads, for --source's help."""
    return "; ".join(f"{kind}: {cls.summary}" for kind, cls in SOURCES.items())


def source_class(kind: str) -> type[Source]:
    """The registered class of a source kind; a ConfigError lists the known kinds."""
    if kind not in SOURCES:
        raise ConfigError(f"--source {kind!r}: unknown source; known: {', '.join(SOURCES)}")
    return SOURCES[kind]


def pipeline_source(kind: str, pipeline, input_dir: str | None) -> Source:
    """The source of a run on `pipeline`: photos in its photo buckets, anything drawn in its buckets."""
    size = pipeline.photo_buckets() if source_class(kind).photos else pipeline.bucket_sizes()
    return build_source(kind, size, input_dir)


def build_source(kind: str, size: int | Sequence[tuple[int, int]], input_dir: str | None) -> Source:
    """The source of this kind; `size` the (width, height) buckets its images are made in (an int: one square,
    datagen/images.py), `input_dir` the --input path (folder, file or tar)."""
    return source_class(kind).from_input(input_dir, size)


def check_source(kind: str, input: str | None, n: int | None = None, repeat: bool = False) -> None:
    """Open and read (or index) the run's input now, so a bad one fails before any work starts; ConfigError.
    With `n`, a kind whose inputs `repeat` guards (an image folder) holding fewer than `n` is refused unless `repeat`
    allows reusing them."""
    spec = source_class(kind).input
    if spec is None:
        if input:
            reading = ", ".join(name for name, cls in SOURCES.items() if cls.input is not None)
            raise ConfigError(f"--input is only used with --source {reading} (source is {kind!r})")
        return
    if not input:
        raise ConfigError(f"--source {kind} needs --input {spec.arg}: {spec.allowed}")
    path = Path(input)
    if is_url(input):
        if not source_class(kind).urls:
            raise ConfigError(
                f"--input {input}: --source {kind} reads a local {spec.where()}; from an object store "
                f"read --source {', '.join(kinds(urls=True))}"
            )
    elif not ((spec.folder and path.is_dir()) or (spec.suffixes and path.is_file())):
        raise ConfigError(f"--input {input!r}: no such {spec.where()}; --source {kind} reads {spec.allowed}")
    elif path.is_file() and not path.name.lower().endswith(spec.suffixes):
        raise wrong_suffix(path, kind, spec)
    source = build_source(kind, 1, input)
    unreadable = _UNREADABLE[(kind, input)] = source.unreadable()
    distinct = len(source) - len(unreadable)
    if distinct <= 0:
        named = "".join(f"; {name}: {reason} ({detail})" for name, reason, detail in unreadable[:5])
        more = f" and {len(unreadable) - 5} more unreadable files" if len(unreadable) > 5 else ""
        raise ConfigError(f"--input {input!r}: {spec.empty}{named}{more}; --source {kind} reads {spec.allowed}")
    if spec.repeat and n is not None and n > distinct and not repeat:
        raise ConfigError(
            f"--input {input!r} holds {distinct} {kind}; --n {n} would reuse them; pass --repeat to allow it, "
            f"or lower --n"
        )


_UNREADABLE: dict[tuple[str, str], list[tuple[str, str, str]]] = {}
"""The unreadable files check_source found, by (kind, input): the summary names them without reading again."""


def unreadable_inputs(kind: str, input: str | None) -> list[tuple[str, str, str]]:
    """(file, reason, detail) of each input file of `--source kind --input input` that cannot be read whole; each
    costs its own samples only (rejected with the reason), never the run."""
    if source_class(kind).input is None or not input:
        return []
    if (kind, input) not in _UNREADABLE:
        _UNREADABLE[(kind, input)] = build_source(kind, 1, input).unreadable()
    return _UNREADABLE[(kind, input)]


def describe_unreadable(unreadable: list[tuple[str, str, str]], shown: int = 10) -> list[str]:
    """Lines naming the unreadable input files, for a run's summary."""
    if not unreadable:
        return []
    lines = [f"  unreadable input files: {len(unreadable)} (each one rejected entry; the rest of the input was read)"]
    lines += [f"    {reason}: {detail}" for _, reason, detail in unreadable[:shown]]
    if len(unreadable) > shown:
        lines.append(f"    ... and {len(unreadable) - shown} more")
    return lines
