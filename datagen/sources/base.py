"""What every input source shares: the `Source` protocol a kind keeps, the `SourceItem` it gives the writer phase,
the `LoadedInput` it gives the render phase, the `BadSource` reject, the `InputSpec` saying what its --input is, and
the checks on text (captions, topics, object names, instructions) and paths that come from an input."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from datagen import scenes
from datagen.errors import ConfigError, Reject

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


@dataclass(frozen=True)
class InputSpec:
    """What --input is for a source kind that reads one: the text of its input errors, and what `check_source`
    checks before any work starts."""

    arg: str
    """How --input is shown in messages: DIR, FILE, DIR or FILE.tar."""
    allowed: str
    """What it may hold, in a sentence."""
    folder: bool
    """Whether --input may be a folder."""
    suffixes: tuple[str, ...]
    """The endings of the files --input may be (none: only a folder): `.tar`, `.tar.gz`."""
    empty: str
    """What was looked for, for the error when the input holds nothing."""
    repeat: bool = False
    """Whether more samples than distinct inputs needs --repeat (images: each sample would reuse a photo)."""

    def where(self) -> str:
        """What --input must exist as: 'directory', 'file' or 'directory or .tar file'."""
        if not self.suffixes:
            return "directory"
        return f"directory or {', '.join(self.suffixes)} file" if self.folder else "file"


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


def parquet_captions(data: bytes, name: str) -> dict[str, str]:
    """img2dataset's parquet sidecar (one per shard: key, caption, status, url, width, height, ...): key -> caption
    of its rows that succeeded."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(pa.BufferReader(data))
    except (OSError, pa.ArrowException) as e:
        raise BadSource("bad_annotation", f"{name}: {e}") from None
    if not {"key", "caption"} <= set(table.column_names):
        return {}
    keys, captions = table.column("key").to_pylist(), table.column("caption").to_pylist()
    ok = table.column("status").to_pylist() if "status" in table.column_names else ["success"] * len(keys)
    return {
        key: caption
        for key, caption, status in zip(keys, captions, ok, strict=True)
        if isinstance(key, str) and isinstance(caption, str) and status == "success"
    }


MAX_SIDECAR_BYTES = 1 << 20
"""A JSON sidecar (or .json member) larger than this is a broken sample, not an annotation worth parsing."""
MAX_JSON_DEPTH = 32
"""Deepest nesting of arrays and objects a sidecar may have: an annotation is two or three levels deep, and a
deeper one would exhaust the parser's recursion (measured: 200,000 levels raise RecursionError)."""
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number a box or a score may hold")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        repeated = next(key for key in keys if keys.count(key) > 1)
        raise ValueError(f"the key {repeated!r:.60} is repeated (which value is meant?)")
    return dict(pairs)


def load_sidecar(data: bytes, name: str) -> dict[str, Any]:
    """A sidecar's JSON object ({"caption": ..., "objects": [...]}), bounded before it is parsed (size, nesting
    depth) and held to plain JSON (no NaN or Infinity, no repeated key); BadSource `bad_annotation` otherwise."""
    import numpy as np

    if len(data) > MAX_SIDECAR_BYTES:
        raise BadSource("bad_annotation", f"{name} is {len(data)} bytes, over {MAX_SIDECAR_BYTES}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadSource("bad_annotation", f"{name}: not UTF-8 ({e.reason})") from None
    brackets = np.frombuffer(_JSON_STRING.sub("", text).encode(), np.uint8)
    steps = np.isin(brackets, (ord("["), ord("{"))).astype(np.int32) - np.isin(brackets, (ord("]"), ord("}")))
    depth = int(np.cumsum(steps).max()) if len(steps) else 0
    if depth > MAX_JSON_DEPTH:
        raise BadSource("bad_annotation", f"{name} is nested {depth} levels deep, over {MAX_JSON_DEPTH}")
    try:
        loaded = json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=_unique_keys)
    except (ValueError, RecursionError) as e:
        raise BadSource("bad_annotation", f"{name}: {e}"[:500]) from None
    if not isinstance(loaded, dict):
        raise BadSource("bad_annotation", f"{name}: expected {{'caption': str, 'objects': [...]}}")
    return loaded


UNCAPTIONED = "a photo"
"""The caption of a photo that came without one, for a task that needs none (TaskSpec.needs_caption) where no
vision-language writer can caption it."""


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


INPUT_ERROR = "input_error"
"""The reason of an input whose reading raised something no source check names (RecursionError, MemoryError, a
decoder's bug): the sample is rejected with the exception's name in its detail, and the shard goes on."""


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
    image: np.ndarray | None = field(default=None, repr=False)
    """The input image, loaded in the write phase only for a writer that sees it (`roles.llm.args.see_image`) or a
    task that reads it first (the text task's OCR)."""
    text_lines: list[dict[str, Any]] | None = None
    """The legible lines the OCR read in the image (quad, text, confidence, height): the text task edits one."""
    history: list[str | None] | None = None
    """In a multi-turn session (datagen/session_shard.py), the captions of its images so far, its input first, None
    for an earlier image that is the current one again (after an undo): what a backtracking turn may go back to.
    None outside sessions."""


@dataclass
class LoadedInput:
    image: np.ndarray | None
    """None for a text-only source: generate the input image from the caption."""
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    """Object name -> exact bool mask, where the source knows it (scenes, annotated images)."""
    neighbours: dict[str, np.ndarray] = field(default_factory=dict)
    """Object name -> bool mask of the other objects its caption names that the source has no mask for, as a
    grounded generator located them (datagen/generators/grounded_inpaint.py): an edit spares their pixels too."""
    scene: scenes.Scene | None = None
    found: dict[str, float] | None = None
    """Object name -> a detector's confidence that it is in `image`, when a generator located the objects with one:
    the detector gate reuses it instead of running the detector on this image again."""
    bucket: tuple[int, int] | None = None
    """(width, height) to draw the image in, where the pipeline draws it (text-only sources, prompt-to-prompt's
    pairs): the render sets it from the sample's seed (datagen/images.py)."""
    history: list[np.ndarray] | None = None
    """In a multi-turn session, its images so far, its input first (the last is `image`): what a backtracking turn
    goes back to (datagen/generators/backtrack.py). None outside sessions."""

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


@runtime_checkable
class Source(Protocol):
    """One kind of input (`--source KIND`): a registry line in datagen/sources/__init__.py's SOURCES and one module.

    A source is built from the run's --input and image buckets; it says how many distinct inputs it holds, gives
    each sample a JSON reference from its seed and index (the write phase stores it), turns a reference into the
    writer's `SourceItem`, and into the render's `LoadedInput` (an image no larger than `max_pixels` when decoded,
    fitted to a bucket; None for text-only sources). Anything wrong with one input is a `BadSource` for that sample.
    """

    kind: ClassVar[str]
    """Its name on the command line and in task files' `sources`, and each reference's "kind"."""
    summary: ClassVar[str]
    """What it reads, in a few words (the --source help lists every kind's)."""
    input: ClassVar[InputSpec | None]
    """What its --input is; None for a source that reads none (procedural scenes)."""
    photos: ClassVar[bool]
    """Whether its inputs are photos: kept in their shape (the pipeline's photo buckets), read by the text task's
    OCR, captioned from the image by a vision-language model where they come without a caption."""
    text_only: ClassVar[bool]
    """Whether it gives text only (captions, topics): the render draws each input with the `t2i` role."""
    urls: ClassVar[bool]
    """Whether its --input may be an object-store URL (s3://, gs://, az://: fsspec), as OUT may be."""
    curates: ClassVar[bool]
    """Whether `datagen curate` reads it (photos, not already a curated set)."""
    caption_where: ClassVar[str]
    """Where an input's caption comes from, in words (what a photo without one is told to add)."""
    fills: ClassVar[tuple[str, ...]]
    """The `SourceItem` fields it fills from its input: caption, objects, setting, topic."""

    @classmethod
    def from_input(cls, input: str | None, size: int | Sequence[tuple[int, int]]) -> Source:
        """The source reading `input` (None where `input` is None), its images made in the buckets `size`."""
        ...

    def __len__(self) -> int: ...

    def unreadable(self) -> list[tuple[str, str, str]]:
        """(file, reason, detail) of each input file that cannot be read whole (a truncated or broken tar): each
        stands in `len` for one input, rejected with that reason; a run is refused only when nothing else is left."""
        ...

    def ref(self, seed: int, index: int) -> dict[str, Any]: ...

    def item(self, ref: dict[str, Any]) -> SourceItem: ...

    def load(self, ref: dict[str, Any], max_pixels: int) -> LoadedInput: ...


def object_names(objects: Any) -> list[str]:
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


def wrong_suffix(path: Path, kind: str, spec: InputSpec) -> ConfigError:
    """The error for an --input file whose suffix `--source kind` does not read."""
    found = repr(path.suffix) if path.suffix else "a file without a suffix"
    return ConfigError(f"{path}: --source {kind} reads {', '.join(spec.suffixes)} files, not {found}; {spec.allowed}")
