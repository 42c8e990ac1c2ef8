"""The sample record is declared once (datagen/record.py: FIELDS): every place that holds a sample agrees with it,
and a field added in one place only is caught."""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datagen import export
from datagen.record import (
    FIELDS,
    PER_SCORE,
    PIXELS,
    PLAIN,
    SCORE_PREFIX,
    EditRecord,
    Field,
    InstructionRecord,
    SourceRef,
    export_columns,
    instruction_line,
    manifest_columns,
    new_instruction,
    read_instructions,
)
from datagen.scores import SCORES
from datagen.shards import MANIFEST_SCHEMA, RunFolder
from datagen.shards.writer import TarShardWriter
from datagen.storage import Folder


def a_record(record_type: type = EditRecord) -> EditRecord:
    """A kept candidate with a value in every field, pixels included."""
    image = np.zeros((8, 8, 3), np.uint8)
    return record_type(
        key="remove_000003_00004", task="remove", shard=3, index=4, seed=7, source={"kind": "scene", "seed": 7},
        input_caption="a red ball on a table", instruction="Remove the ball", output_caption="a table",
        objects=["ball"], candidate=1, params={"variant": "dilated"}, input_image=image, output_image=image,
        mask=np.full((8, 8), 255, np.uint8), boxes=[[0.1, 0.2, 0.5, 0.6]], width=8, height=8,
        scores={"clip_dir": 0.25, "dino": float("nan")}, status="kept", selected=True, models={"llm": "template"},
        judge_reasoning="", instruction_rewritten="",
    )  # fmt: skip


def disagreements(
    fields: tuple[Field, ...] = FIELDS,
    record_type: type = EditRecord,
    instruction_type: type = InstructionRecord,
    schema: pa.Schema = MANIFEST_SCHEMA,
) -> list[str]:
    """Every way the records, the manifest schema and the json member differ from the declaration."""
    found = []
    stored = {f.name: f for f in fields if f.manifest or f.json}
    hints = typing.get_type_hints(record_type)
    names = {f.name for f in dataclasses.fields(record_type)}
    found += [f"EditRecord lacks {n}" for n in stored.keys() - names]
    found += [f"EditRecord's {n} is not declared" for n in names - stored.keys() - set(PIXELS)]
    found += [
        f"EditRecord's {n} is {hints[n]}, declared {f.type}"
        for n, f in stored.items()
        if hints.get(n, f.type) != f.type
    ]

    texts = {f.name: f for f in fields if f.texts}
    hints = typing.get_type_hints(instruction_type)
    found += [f"InstructionRecord lacks {n}" for n in texts.keys() - hints.keys()]
    found += [f"InstructionRecord's {n} is not declared" for n in hints.keys() - texts.keys()]
    found += [
        f"InstructionRecord's {n} is {hints[n]}, declared {f.type}"
        for n, f in texts.items()
        if n in hints and hints[n] not in (f.type, f.type | None)  # None: a value phase 1 has not filled in yet
    ]
    if set(new_instruction("remove", 0, 0, 0, "template")) != texts.keys():
        found.append("new_instruction makes other keys than the declared ones")

    try:
        record = a_record(record_type)
        members = {"json": record.text_fields(), "manifest": record.manifest_row()}
    except (TypeError, AttributeError) as e:
        return [*found, f"a record cannot be made or written: {e}"]
    declared_json = [f.name for f in fields if f.json]
    if list(members["json"]) != declared_json:
        found.append(f"the json member holds {list(members['json'])}, declared {declared_json}")
    columns = [name for name, _ in manifest_columns()]
    scores = [f"{SCORE_PREFIX}{name}" for name in SCORES]
    declared_manifest = [f.name for f in fields if f.manifest and f.manifest != PER_SCORE] + scores
    for what, names in (("manifest_columns()", columns), ("manifest row", list(members["manifest"]))):
        if names != declared_manifest:
            found.append(f"the {what} holds {names}, declared {declared_manifest}")
    if schema.names != declared_manifest:
        found.append(f"the manifest schema holds {schema.names}, declared {declared_manifest}")
    return found


def test_every_place_agrees_with_the_declaration():
    assert disagreements() == []


def test_a_field_added_in_one_place_only_is_caught():
    extra_field = dataclasses.make_dataclass(
        "Extended", [("extra", str, dataclasses.field(default=""))], bases=(EditRecord,)
    )
    assert "EditRecord's extra is not declared" in disagreements(record_type=extra_field)

    class ExtendedInstruction(InstructionRecord):
        extra: str

    assert "InstructionRecord's extra is not declared" in disagreements(instruction_type=ExtendedInstruction)
    declared = (*FIELDS, Field("extra", str, "string", PLAIN, PLAIN, True, False))
    problems = disagreements(fields=declared)
    assert "EditRecord lacks extra" in problems and "InstructionRecord lacks extra" in problems
    retyped = tuple(dataclasses.replace(f, type=int) if f.name == "instruction" else f for f in FIELDS)
    assert any(p.startswith("EditRecord's instruction is ") for p in disagreements(fields=retyped))
    schema = MANIFEST_SCHEMA.append(pa.field("extra", pa.string()))
    assert any(p.startswith("the manifest schema holds") for p in disagreements(schema=schema))


def test_the_json_member_and_the_manifest_keep_their_encodings():
    """`boxes` is a list in the json member and JSON text in the manifest; the task-specific mappings are JSON text in
    both, and every score is there in both (None where not measured)."""
    record = a_record()
    meta, row = record.text_fields(), record.manifest_row()
    assert meta["boxes"] == [[0.1, 0.2, 0.5, 0.6]] and json.loads(row["boxes"]) == meta["boxes"]
    assert meta["params"] == row["params"] == '{"variant": "dilated"}'
    assert json.loads(meta["source"]) == {"kind": "scene", "seed": 7} and meta["objects"] == row["objects"] == ["ball"]
    assert meta["scores"] == {name: 0.25 if name == "clip_dir" else None for name in sorted(SCORES)}
    assert {k: v for k, v in row.items() if k.startswith(SCORE_PREFIX) and v is not None} == {"score_clip_dir": 0.25}
    assert pa.Table.from_pylist([row], schema=MANIFEST_SCHEMA).to_pylist() == [row]


def test_exports_take_the_declared_columns(tmp_path):
    """hf-parquet's columns past the images are the declaration's export columns; a sample written by the shard
    writer comes back from its json member with their values."""
    exported = [name for name, _ in export_columns()]
    assert exported == ["key", "task", "input_caption", "output_caption", "width", "height"] + [
        "session",
        "turn",
        "previous",
    ] + [f"{SCORE_PREFIX}{name}" for name in SCORES]
    assert export.hf_schema().names == ["input_image", "edit_prompt", "edited_image", "mask", *exported, "json"]
    assert export.score_columns() == tuple(exported[9:])
    record = a_record()
    members = TarShardWriter(Folder(str(tmp_path)), "x.tar", "png", 95, 1).encode(record)
    sample_meta = json.loads(members["json"])
    images = {"input_image": None, "edited_image": None, "mask": None}
    row = export._row(_sample(record.key, members), images, export.PromptChoice("original"))
    assert list(row) == export.hf_schema().names
    assert (
        row["key"] == record.key and row["width"] == 8 and row["score_clip_dir"] == 0.25 and row["score_dino"] is None
    )
    assert row["json"] == members["json"].decode() and sample_meta["task"] == row["task"] == "remove"


def _sample(key: str, members: dict[str, bytes]):
    from datagen.shards import Sample

    images = {name.split(".")[0]: (f"{key}.{name}", data) for name, data in members.items() if "." in name}
    return Sample(key, images, json.loads(members["json"]), members["json"].decode(), members["txt"].decode())


def test_an_instruction_record_round_trips_and_becomes_a_candidate():
    text = new_instruction("remove", 2, 5, 11, "template")
    assert text["key"] == "remove_000002_00005" and text["status"] == "ok" and text["source"] is None
    source: SourceRef = {"kind": "images", "path": "cat.png"}
    text.update(source=source, input_caption="a cat", instruction="Remove the cat", objects=["cat"], edit={"k": 1})
    line = instruction_line(text)
    assert line == json.dumps(text, sort_keys=True, ensure_ascii=False)
    (back,) = read_instructions(line + "\n")
    assert back == text
    record = EditRecord.from_instruction(back, {"t2i": "tiny"})
    assert (record.key, record.shard, record.index, record.seed, record.source) == (text["key"], 2, 5, 11, source)
    assert record.objects == ["cat"] and record.objects is not back["objects"]
    assert record.params == {"k": 1} and record.models == {"llm": "template", "t2i": "tiny"}
    assert record.status == "rejected" and record.reason == "", "the verdict is the candidate's own"
    assert EditRecord.from_instruction(new_instruction("remove", 0, 0, 0, "t"), {}).source == {}


@pytest.fixture
def run_dir(small_remove_run) -> Path:
    return small_remove_run


def test_a_run_writes_the_declared_fields_everywhere(run_dir):
    """On a real run: each jsonl line holds the instruction record's fields, each json member the declared json
    fields, each manifest the declared schema."""
    texts = [json.loads(line) for line in (run_dir / "texts" / "remove-000000.jsonl").read_text().splitlines()]
    declared = {f.name for f in FIELDS if f.texts}
    assert texts and all(set(t) == declared for t in texts)
    assert all(isinstance(t["source"], dict) and t["source"]["kind"] == "scene" for t in texts)
    run = RunFolder(run_dir)
    samples = [sample for shard in run.committed() for sample in run.samples(shard)]
    assert samples and all(list(s.meta) == sorted(f.name for f in FIELDS if f.json) for s in samples)
    assert pq.read_schema(run_dir / "shards" / "remove-000000.parquet").equals(MANIFEST_SCHEMA, check_metadata=False)


def test_every_key_a_commit_marker_holds_is_declared(small_remove_run):
    """ShardStats and WriteStats declare every key the worker writes into a shard's stats (the marker)."""
    import json

    from datagen.shards.layout import ShardStats, WriteStats

    for phase, declared in (("shards", ShardStats), ("texts", WriteStats)):
        for marker in sorted((small_remove_run / phase).glob("*.stats.json")):
            written = set(json.loads(marker.read_text()))
            assert written <= set(declared.__annotations__), (marker.name, written - set(declared.__annotations__))
    assert {"sessions", "version_change"} <= set(ShardStats.__annotations__)
