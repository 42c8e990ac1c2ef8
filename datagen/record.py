"""The sample record, declared once: `FIELDS` names every field of a sample, its type and where it goes, and every
place a sample is written derives from it.

    FIELDS               each field: its Python type, its manifest column (Arrow type and encoding), how the tar's
                         `.json` member holds it, whether the instruction record and the exports carry it
    EditRecord           one candidate in memory; `text_fields()` (the `.json` member), `candidate_fields()` (a
                         rejected candidate's) and `manifest_row()` (its parquet row) are derived from FIELDS, as are
                         `manifest_schema()`, `export_columns()` and `exported()` (the columns `datagen export` takes
                         from a json member)
    InstructionRecord    phase 1's record of a sample, one line of `texts/*.jsonl`: made by `new_instruction()`,
                         turned into a candidate by `EditRecord.from_instruction()`; its `source` is a `SourceRef`

Adding a field: add it to FIELDS and to EditRecord (and InstructionRecord when phase 1 writes it); tests/test_record.py
fails while the two disagree. Field order is the manifest's column order, so it must not change for existing fields.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypedDict

import numpy as np

from datagen.scores import SCORE_PREFIX, SCORES

if TYPE_CHECKING:
    import pyarrow as pa

KEY_RE = re.compile(r"^[a-z][a-z0-9_]*_\d{6}_\d{5}$")


def sample_key(task: str, shard: int, index: int) -> str:
    """Globally unique, dot-free WebDataset key: {task}_{shard:06d}_{index:05d}."""
    return f"{task}_{shard:06d}_{index:05d}"


def sample_seed(run_seed: int, task: str, shard: int, index: int) -> int:
    """Seed of one sample, derived from the run seed and the sample key (stable across Python versions)."""
    digest = hashlib.sha256(f"{run_seed}/{sample_key(task, shard, index)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


# ------------------------------------------------------------------------------------------- the declaration

Encoding = Literal["plain", "list", "json text", "scores"]
"""How a place holds a field's value: as it is; as a list; as JSON text with sorted keys (task-specific mappings,
so that every sample of every task has one schema); or, for the scores, one value per score of datagen.scores.SCORES
(None where not measured, rounded to 6 places): a mapping in the json member, columns `score_<name>` in the manifest
and the exports."""
PLAIN: Encoding = "plain"
LIST: Encoding = "list"
JSON_TEXT: Encoding = "json text"
PER_SCORE: Encoding = "scores"


class SourceRef(TypedDict, total=False):
    """Where a sample's input lies in its source, as the source's `ref()` gives it (datagen/sources/): `kind` is the
    source kind and says which other keys there are. The render phase hands it back to the source to load the input.
    Empty for a record made without a source (benchmarks, tests)."""

    kind: str
    """scene, images, captions, topics, shards or curated."""
    seed: int
    """scene: the scene's seed."""
    path: str
    """images: the image's path in the input folder."""
    row: int
    """captions: the caption's row in the file."""
    topic: int
    """topics: the topic's line in the file (and `index`: the sample's index in the run)."""
    index: int
    tar: str
    """shards: the tar's path under --input (and `key`: the sample's key in it)."""
    key: str
    of: dict[str, Any]
    """curated: the input's reference in the source it was curated from (and `key`: its curated key, `scores`: its
    curation scores)."""
    scores: dict[str, float]


@dataclass(frozen=True)
class Field:
    """One field of a sample and where it goes."""

    name: str
    type: Any
    """Its Python type, as EditRecord (or, for a field of phase 1 only, InstructionRecord) declares it."""
    arrow: str | None
    """The Arrow type of its manifest and export columns (`arrow_type`); None where it has none."""
    manifest: Encoding | None
    """How the manifest (every candidate's parquet row) holds it; None: not in the manifest."""
    json: Encoding | None
    """How the tar's `.json` member (every stored sample, kept or not) holds it; None: not there."""
    texts: bool
    """On the instruction record (`texts/*.jsonl`), the field phase 1 writes for phase 2."""
    export: bool
    """A column of `datagen export` (hf-parquet, imagefolder), read from the json member."""


# fmt: off
FIELDS: tuple[Field, ...] = (
    #     name                     Python type         Arrow           manifest   json member texts  export
    Field("key",                   str,                "string",       PLAIN,     PLAIN,      True,  True),
    Field("task",                  str,                "string",       PLAIN,     PLAIN,      True,  True),
    Field("shard",                 int,                "int32",        PLAIN,     None,       True,  False),
    Field("index",                 int,                "int32",        PLAIN,     None,       True,  False),
    Field("candidate",             int,                "int16",        PLAIN,     None,       False, False),
    Field("selected",              bool,               "bool",         PLAIN,     None,       False, False),
    Field("status",                str,                "string",       PLAIN,     None,       True,  False),
    Field("reason",                str,                "string",       PLAIN,     None,       True,  False),
    Field("detail",                str,                "string",       PLAIN,     None,       True,  False),
    Field("seed",                  int,                "int64",        PLAIN,     PLAIN,      True,  False),
    Field("source",                SourceRef,          "string",       JSON_TEXT, JSON_TEXT,  True,  False),
    Field("input_caption",         str,                "string",       PLAIN,     PLAIN,      True,  True),
    Field("instruction",           str,                "string",       PLAIN,     PLAIN,      True,  False),
    Field("output_caption",        str,                "string",       PLAIN,     PLAIN,      True,  True),
    Field("objects",               list[str],          "list<string>", LIST,      LIST,       True,  False),
    Field("params",                dict[str, Any],     "string",       JSON_TEXT, JSON_TEXT,  False, False),
    Field("boxes",                 list[list[float]],  "string",       JSON_TEXT, PLAIN,      False, False),
    Field("width",                 int | None,         "int32",        PLAIN,     PLAIN,      False, True),
    Field("height",                int | None,         "int32",        PLAIN,     PLAIN,      False, True),
    Field("models",                dict[str, str],     "string",       JSON_TEXT, JSON_TEXT,  False, False),
    Field("judge_reasoning",       str,                "string",       PLAIN,     PLAIN,      False, False),
    Field("instruction_rewritten", str,                "string",       PLAIN,     PLAIN,      False, False),
    Field("session",               str,                "string",       PLAIN,     PLAIN,      True,  True),
    Field("turn",                  int,                "int16",        PLAIN,     PLAIN,      True,  True),
    Field("previous",              str,                "string",       PLAIN,     PLAIN,      True,  True),
    Field("scores",                dict[str, float],   "float64",      PER_SCORE, PER_SCORE,  False, True),
    Field("source_caption",        str,                None,           None,      None,       True,  False),
    Field("edit",                  dict[str, Any],     None,           None,      None,       True,  False),
    Field("writer",                str,                None,           None,      None,       True,  False),
)
# fmt: on
"""Every field of a sample, in the manifest's column order (the scores last, one column each)."""

PIXELS = ("input_image", "output_image", "mask")
"""EditRecord's arrays: written as the tar's image members (datagen/shards/writer.py), never as fields."""
VERDICT = ("status", "reason", "detail")
"""Both records carry a verdict, each its own: phase 1's (`ok` or `rejected`) and the candidate's (`kept`,
`rejected` or `error`); the render rejects a sample phase 1 rejected with its reason."""
CANDIDATE_VERDICT = ("candidate", *VERDICT)
"""What the json member of a rendered candidate that was not kept (`{shard}.rejected.tar`) holds besides the json
fields: its number among the sample's candidates and its verdict, as they are (`EditRecord.candidate_fields()`)."""

MANIFEST_FIELDS = tuple(f for f in FIELDS if f.manifest)
JSON_FIELDS = tuple(f for f in FIELDS if f.json)
TEXTS_FIELDS = tuple(f for f in FIELDS if f.texts)
EXPORT_FIELDS = tuple(f for f in FIELDS if f.export)
FROM_INSTRUCTION = tuple(f.name for f in TEXTS_FIELDS if f.manifest and f.name not in VERDICT)
"""The fields a candidate takes as phase 1 wrote them (`EditRecord.from_instruction`)."""


def arrow_type(name: str) -> pa.DataType:
    """A Field's Arrow type by name: `string`, `bool`, `int16`, `float64` ..., `list<string>`."""
    import pyarrow as pa

    if name.startswith("list<") and name.endswith(">"):
        return pa.list_(arrow_type(name[len("list<") : -1]))
    return pa.bool_() if name == "bool" else getattr(pa, name)()


def _columns(fields: tuple[Field, ...]) -> list[tuple[str, str]]:
    """(column, Arrow type name) of these fields, in order, the scores as one column per score."""
    columns: list[tuple[str, str]] = []
    for f in fields:
        if f.manifest == PER_SCORE:
            columns += [(f"{SCORE_PREFIX}{name}", str(f.arrow)) for name in SCORES]
        else:
            columns.append((f.name, str(f.arrow)))
    return columns


def manifest_columns() -> list[tuple[str, str]]:
    """The manifest's columns in order: (name, Arrow type name)."""
    return _columns(MANIFEST_FIELDS)


def manifest_schema() -> pa.Schema:
    """The schema of every shard's manifest (`{shard}.parquet`): one row per candidate, every field but the pixels."""
    import pyarrow as pa

    return pa.schema([(name, arrow_type(kind)) for name, kind in manifest_columns()])


def export_columns() -> list[tuple[str, str]]:
    """The columns `datagen export` takes from a sample's json member, in order: (name, Arrow type name)."""
    return _columns(EXPORT_FIELDS)


def exported(meta: dict[str, Any]) -> dict[str, Any]:
    """A sample's export columns (`export_columns()`) from its parsed json member; what a run made before a field
    existed lacks is '' for text and None otherwise."""
    row: dict[str, Any] = {}
    for f in EXPORT_FIELDS:
        if f.json == PER_SCORE:
            scores = meta.get(f.name) or {}
            for name in SCORES:
                value = scores.get(name)
                row[f"{SCORE_PREFIX}{name}"] = None if value is None else float(value)
        else:
            row[f.name] = meta.get(f.name, "" if f.arrow == "string" else None)
    return row


def encoded(encoding: Encoding, value: Any) -> Any:
    """A field's value as a place holds it (Encoding); the scores as a mapping, sorted by name."""
    if encoding == LIST:
        return list(value)
    if encoding == JSON_TEXT:
        return json.dumps(value, sort_keys=True)
    if encoding == PER_SCORE:
        return {name: _finite(value.get(name)) for name in sorted(SCORES)}
    return value


def _finite(value: float | None) -> float | None:
    if value is None or not np.isfinite(value):
        return None
    return round(float(value), 6)


# ------------------------------------------------------------------------------------------- the records


class InstructionRecord(TypedDict):
    """One line of `texts/{task}-{shard:06d}.jsonl` (FIELDS with `texts`): what phase 1 wrote for one sample, and
    phase 2 renders. Made by `new_instruction`, written by `instruction_line`, read back by `read_instructions`."""

    key: str
    task: str
    shard: int
    index: int
    seed: int
    status: str
    """`ok`, or `rejected` with its reason and detail."""
    reason: str
    detail: str
    source: SourceRef | None
    """The input's reference in its source; None until the source gave it."""
    input_caption: str
    instruction: str
    output_caption: str
    objects: list[str]
    source_caption: str
    """The caption the source gave (or the writer wrote from a topic): what a text-only source's input is drawn
    from, never a writer-rewritten caption."""
    edit: dict[str, Any]
    """The task's own fields the writer chose: the new object, the style, the colour operation ..."""
    writer: str
    """The model id of the instruction writer."""
    session: str
    """The session this turn belongs to ('' for a single-turn sample): its first turn's sample key without the turn
    (datagen/sessions.py)."""
    turn: int
    """Its turn in the session, from 1 (1 for a single-turn sample)."""
    previous: str
    """The key of the session's previous turn, whose output is this turn's input ('' for a first turn)."""


def new_instruction(task: str, shard: int, index: int, seed: int, writer: str) -> InstructionRecord:
    """A sample's instruction record before its source and writer fill it in: status `ok`, no text yet."""
    return {
        "key": sample_key(task, shard, index),
        "task": task,
        "shard": shard,
        "index": index,
        "seed": seed,
        "status": "ok",
        "reason": "",
        "detail": "",
        "source": None,
        "input_caption": "",
        "instruction": "",
        "output_caption": "",
        "objects": [],
        "source_caption": "",
        "edit": {},
        "writer": writer,
        "session": "",
        "turn": 1,
        "previous": "",
    }


def instruction_line(text: InstructionRecord) -> str:
    """One line of a `texts/*.jsonl` file (sorted keys: the same record, the same bytes)."""
    return json.dumps(text, sort_keys=True, ensure_ascii=False)


def read_instructions(jsonl: str) -> Iterator[InstructionRecord]:
    """The instruction records of a `texts/*.jsonl` file's text, in order, parsed as they are taken."""
    return (json.loads(line) for line in jsonl.splitlines())


@dataclass
class EditRecord:
    """One candidate: its fields are declared in FIELDS (where each goes) and PIXELS (its arrays)."""

    key: str
    task: str
    shard: int
    index: int
    seed: int
    source: SourceRef
    input_caption: str = ""
    instruction: str = ""
    output_caption: str = ""
    objects: list[str] = field(default_factory=list)
    candidate: int = 0
    """Index of this candidate among the sample's candidates (e.g. one per mask variant)."""
    params: dict[str, Any] = field(default_factory=dict)
    """Generator parameters of this candidate (mask variant, inpainting method, ...)."""
    input_image: np.ndarray | None = field(default=None, repr=False)
    output_image: np.ndarray | None = field(default=None, repr=False)
    mask: np.ndarray | None = field(default=None, repr=False)
    """uint8 HxW edit mask (255 = edited); all white for tasks with no region."""
    boxes: list[list[float]] = field(default_factory=list)
    width: int | None = None
    """Width of the pair's images in pixels (its bucket); None for a sample that never got an image."""
    height: int | None = None
    """Height of the pair's images in pixels."""
    scores: dict[str, float] = field(default_factory=dict)
    status: str = "rejected"
    reason: str = ""
    """Short code counted in the stats ('' when kept)."""
    detail: str = ""
    """Human-readable explanation of the reason."""
    selected: bool = False
    models: dict[str, str] = field(default_factory=dict)
    """Role -> model id (and revision) that produced this candidate."""
    judge_reasoning: str = ""
    """What the judge saw, in its words ('' without a judge)."""
    instruction_rewritten: str = ""
    """What the judge says the edit actually did, as an instruction ('' unless the judge rewrites)."""
    session: str = ""
    """The session of a multi-turn sample ('' for a single-turn one): InstructionRecord.session."""
    turn: int = 1
    """Its turn in the session, from 1."""
    previous: str = ""
    """The key of the session's previous turn ('' for a first turn)."""

    @classmethod
    def from_instruction(cls, text: InstructionRecord, models: dict[str, str]) -> EditRecord:
        """A sample's record from its instruction record: the fields phase 1 wrote (FROM_INSTRUCTION), the task's
        own fields as the generator parameters, the writer and then `models` (role -> model id) as its models. The
        verdict is the candidate's own: rejecting what phase 1 rejected is the render's call."""
        fields: dict[str, Any] = {name: text[name] for name in FROM_INSTRUCTION}
        fields.update(source=text["source"] or {}, objects=list(text["objects"]))
        return cls(**fields, params=dict(text.get("edit", {})), models={"llm": text["writer"], **models})

    def reject(self, reason: str, detail: str = "") -> EditRecord:
        self.status, self.reason, self.detail, self.selected = "rejected", reason, detail, False
        return self

    def text_fields(self) -> dict[str, Any]:
        """The sample's metadata: the tar's `.json` member (FIELDS with `json`). One schema for every sample of every
        task, so loaders that infer it from the first samples (Hugging Face `datasets`) lose nothing: every score is
        present (null where not measured) and the task-specific mappings (params, models, source) are JSON text, as
        in the manifest."""
        return {f.name: encoded(f.json, getattr(self, f.name)) for f in JSON_FIELDS}

    def candidate_fields(self) -> dict[str, Any]:
        """A not-kept candidate's metadata: the `.c{n}.json` member of `{shard}.rejected.tar`, `text_fields()` and
        CANDIDATE_VERDICT."""
        return {**self.text_fields(), **{name: getattr(self, name) for name in CANDIDATE_VERDICT}}

    def manifest_row(self) -> dict[str, Any]:
        """One parquet row (manifest_schema()): every field but the pixels."""
        row: dict[str, Any] = {}
        for f in MANIFEST_FIELDS:
            value = encoded(f.manifest, getattr(self, f.name))
            if f.manifest == PER_SCORE:
                row.update({f"{SCORE_PREFIX}{name}": value[name] for name in SCORES})
            else:
                row[f.name] = value
        return row
