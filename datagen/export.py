"""`datagen export`: a run's committed shards as a Hugging Face parquet dataset, an imagefolder, or preference pairs.

    datagen export out/remove --format hf-parquet --dest exports/remove
    datagen export out/remove --format imagefolder --dest exports/remove-folder
    datagen export out/remove --format preference --dest exports/remove-pairs      # a run made with keep_rejected

`hf-parquet` writes DEST/data/train/{task}-{i:06d}.parquet, one file per committed shard, in row groups of at most
ROW_GROUP_ROWS samples. Images are Hugging Face `Image` features (struct {bytes, path}) and the schema carries the
`huggingface` metadata `datasets` writes itself, so `load_dataset("parquet", data_files=...)` decodes them to PIL
images with no casting. `imagefolder` writes DEST/train/{n:06d}/, the n-th committed shard's images and a
`metadata.jsonl` whose `*_file_name` columns `load_dataset("imagefolder", data_dir=DEST)` turns into image columns.
`load_dataset(DEST)` infers splits from folder names (any folder named like `*-test-*` or `val_*`), so the split is
a folder `train/` in both formats and no folder is named after a task: a task called `test` must stay in train.
Both use the column names of the diffusers InstructPix2Pix example trainer (input_image, edit_prompt,
edited_image) plus ours: mask, the sample record's export columns (datagen/record.py: key, task, captions, the images'
width and height, one score_<name> per score), the sample's whole json.

`preference` needs a run made with `pipeline.keep_rejected` (its shards' rejected tars) and writes
DEST/data/train/{task}-{i:06d}.parquet like hf-parquet: one row per kept sample and each candidate of the same sample
that was not kept (rejected or outranked) and edited the same input image (`add`'s candidates each have their own
input: those are skipped and counted). Columns: input_image, edit_prompt, chosen_image, rejected_image,
chosen_scores, rejected_scores, task, key, rejected_candidate, rejected_reason. The scores are structs of one float
per score (None where not measured): `datasets` loads them as dicts with no parsing, every row has the same fields,
and Arrow keeps them typed for filtering (a JSON text column would need json.loads per row and loses the types).

`magicbrush` writes DEST/data/train/{task}-{i:06d}.parquet with MagicBrush's own columns, one row per turn: img_id
(the session; a single-turn sample's key), turn_index (from 1), source_img (from turn 2 on, the previous turn's
target_img), mask_img, instruction, target_img. `sessions` writes one row per session (datagen/sessions.py) like
ImgEdit's multi-turn sets: session, input_image (turn 1's), then `turns`, a list in order of {key, task,
instruction, output_image, mask, input_caption, output_caption, json}. A single-turn run exports as sessions of one
turn. hf-parquet and imagefolder flatten sessions into pairs (every turn a row, with its session, turn and
previous key), which diffusers' InstructPix2Pix trainer reads unchanged.

`--instruction rewritten` makes the judge's account of what the edit did (`instruction_rewritten`, a pipeline whose
judge has `rewrite: true`) the edit_prompt; a sample without one falls back to the original instruction, and the
marker counts those rows (`instruction_fell_back`).

Every format streams: tars are read shard by shard as streams (datagen/shards: RunFolder.samples, .rejected), each
checked against its stats (count, sha256), and a shard's parquet file or metadata.jsonl is published whole only after
its last sample (datagen.storage: a rename on a local disk, a completed upload on object stores).
DEST/README.md is the dataset card (datagen/card.py: the Hub's YAML header, then counts, gates, models and their
licences, the command). DEST/.datagen-export.json, written last, marks a finished export (hidden, so that
`load_dataset(DEST)` does not take it for data). `datasets` is not needed to export.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import math
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the rest is imported where it is used: `datagen --help` stays instant with this parser in it
    import pyarrow as pa

    from datagen.shards import Candidate, Sample
    from datagen.storage import Folder

FORMATS = ("hf-parquet", "imagefolder", "preference", "magicbrush", "sessions", "label-studio")
INSTRUCTIONS = ("original", "rewritten")
"""Which instruction becomes edit_prompt: the writer's, or the judge's account of what the edit did."""
MARKER = ".datagen-export.json"
CARD = "README.md"
"""The dataset card (datagen/card.py), written before the marker."""
"""Written last in DEST: a finished export, what it holds and where it came from."""
ROW_GROUP_ROWS = 100  # datasets' own row group size for image datasets: random access without huge reads
ROW_GROUP_BYTES = 128 << 20  # ... and a bound on memory when images are large
IMAGE_COLUMNS = {"input": "input_image", "output": "edited_image", "mask": "mask"}
"""Tar member -> column; input_image and edited_image are the diffusers InstructPix2Pix script's defaults."""


def _error(message: str) -> Exception:
    """A ConfigError: a problem the user can act on, reported without a traceback."""
    from datagen.errors import ConfigError

    return ConfigError(message)


@functools.cache
def score_columns() -> tuple[str, ...]:
    """One float column per score of datagen.SCORES, in that order."""
    from datagen.record import SCORE_PREFIX, export_columns

    return tuple(name for name, _ in export_columns() if name.startswith(SCORE_PREFIX))


IMAGE_FEATURE = {"_type": "Image"}
STRING_FEATURE = {"dtype": "string", "_type": "Value"}
FLOAT_FEATURE = {"dtype": "float64", "_type": "Value"}


def _schema(columns: dict[str, tuple[pa.DataType, dict]]) -> pa.Schema:
    """Column -> (Arrow type, datasets feature) as a schema with the `huggingface` metadata datasets.Features
    .arrow_schema writes: from it Features.from_arrow_schema knows the struct {bytes, path} columns are Images and
    decodes them to PIL."""
    import pyarrow as pa

    features = {name: feature for name, (_, feature) in columns.items()}
    return pa.schema([(name, kind) for name, (kind, _) in columns.items()]).with_metadata(
        {"huggingface": json.dumps({"info": {"features": features}})}
    )


def _image_type() -> pa.DataType:
    import pyarrow as pa

    return pa.struct([("bytes", pa.binary()), ("path", pa.string())])


@functools.cache
def hf_schema() -> pa.Schema:
    """The hf-parquet schema: the images and edit_prompt, the sample record's export columns (datagen/record.py:
    FIELDS), then the sample's whole json."""
    import pyarrow as pa

    from datagen.record import arrow_type, export_columns

    image, string = (_image_type(), IMAGE_FEATURE), (pa.string(), STRING_FEATURE)
    return _schema(
        {
            "input_image": image,
            "edit_prompt": string,
            "edited_image": image,
            "mask": image,
            **{name: (arrow_type(kind), {"dtype": kind, "_type": "Value"}) for name, kind in export_columns()},
            "json": string,
        }
    )


@functools.cache
def preference_schema() -> pa.Schema:
    """The preference schema: the scores of each side as a struct of one float per score."""
    import pyarrow as pa

    from datagen.scores import SCORES

    image, string = (_image_type(), IMAGE_FEATURE), (pa.string(), STRING_FEATURE)
    scores = (pa.struct([(name, pa.float64()) for name in SCORES]), dict.fromkeys(SCORES, FLOAT_FEATURE))
    return _schema(
        {
            "input_image": image,
            "edit_prompt": string,
            "chosen_image": image,
            "rejected_image": image,
            "chosen_scores": scores,
            "rejected_scores": scores,
            "task": string,
            "key": string,
            "rejected_candidate": (pa.int64(), {"dtype": "int64", "_type": "Value"}),
            "rejected_reason": string,
        }
    )


@functools.cache
def magicbrush_schema() -> pa.Schema:
    """MagicBrush's columns, in its order."""
    import pyarrow as pa

    image, string = (_image_type(), IMAGE_FEATURE), (pa.string(), STRING_FEATURE)
    return _schema(
        {
            "img_id": string,
            "turn_index": (pa.int32(), {"dtype": "int32", "_type": "Value"}),
            "source_img": image,
            "mask_img": image,
            "instruction": string,
            "target_img": image,
        }
    )


SESSION_TURN = ("key", "task", "instruction", "output_image", "mask", "input_caption", "output_caption", "json")
"""The fields of each turn of a `sessions` row, in order."""


@functools.cache
def sessions_schema() -> pa.Schema:
    """One row per session: its first input, then its turns in order."""
    import pyarrow as pa

    image, string = (_image_type(), IMAGE_FEATURE), (pa.string(), STRING_FEATURE)
    fields = {name: image if name in ("output_image", "mask") else string for name in SESSION_TURN}
    turn = pa.struct([(name, kind) for name, (kind, _) in fields.items()])
    features = {name: feature for name, (_, feature) in fields.items()}
    return _schema(
        {
            "session": string,
            "turns_count": (pa.int32(), {"dtype": "int32", "_type": "Value"}),
            "input_image": image,
            "turns": (pa.list_(turn), {"feature": features, "_type": "List"}),
        }
    )


def session_of(meta: dict[str, Any], key: str) -> tuple[str, int]:
    """(session, turn) of a sample's json member: a single-turn sample is a session of its own, turn 1."""
    return str(meta.get("session") or key), int(meta.get("turn") or 1)


class PromptChoice:
    """Which instruction becomes a row's edit_prompt (INSTRUCTIONS), counting the rows that asked for the rewritten
    one and fell back to the original (no judge, or a judge that does not rewrite)."""

    def __init__(self, instruction: str):
        self.instruction = instruction
        self.fell_back = 0

    def __call__(self, original: str, meta: dict[str, Any]) -> str:
        if self.instruction == "original":
            return original
        rewritten = meta.get("instruction_rewritten") or ""
        if not rewritten.strip():
            self.fell_back += 1
            return original
        return rewritten


def _row(sample: Sample, images: dict[str, Any], prompt: PromptChoice) -> dict[str, Any]:
    """A sample's columns in hf_schema()'s order; `images` holds the image columns' values; a missing score is None,
    a missing width or height (runs made before samples recorded their bucket) too."""
    from datagen.record import exported

    return {
        "input_image": images["input_image"],
        "edit_prompt": prompt(sample.instruction, sample.meta),
        "edited_image": images["edited_image"],
        "mask": images["mask"],
        **exported(sample.meta),
        "json": sample.meta_text,
    }


# ------------------------------------------------------------------------------------------ writing


def write_parquet_shard(samples: Iterator[Sample], folder: Folder, name: str, prompt: PromptChoice) -> int:
    """One shard -> one parquet file of hf_schema(), a row group at a time, published whole; returns its rows."""

    def rows() -> Iterator[tuple[dict[str, Any], int]]:
        for sample in samples:
            images = {
                IMAGE_COLUMNS[stem]: {"bytes": data, "path": member} for stem, (member, data) in sample.images.items()
            }
            yield _row(sample, images, prompt), sum(len(data) for _, data in sample.images.values())

    return _write_rows(rows(), folder, name, hf_schema())


def _image_of(sample: Sample, stem: str) -> dict[str, Any]:
    member, data = sample.images[stem]
    return {"bytes": data, "path": member}


def write_magicbrush_shard(samples: Iterator[Sample], folder: Folder, name: str, prompt: PromptChoice) -> int:
    """One shard -> one parquet file of magicbrush_schema(), one row per turn; returns its rows."""

    def rows() -> Iterator[tuple[dict[str, Any], int]]:
        for sample in samples:
            session, turn = session_of(sample.meta, sample.key)
            row = {
                "img_id": session,
                "turn_index": turn,
                "source_img": _image_of(sample, "input"),
                "mask_img": _image_of(sample, "mask"),
                "instruction": prompt(sample.instruction, sample.meta),
                "target_img": _image_of(sample, "output"),
            }
            yield row, sum(len(data) for _, data in sample.images.values())

    return _write_rows(rows(), folder, name, magicbrush_schema())


def write_sessions_shard(samples: Iterator[Sample], folder: Folder, name: str, prompt: PromptChoice) -> int:
    """One shard -> one parquet file of sessions_schema(), one row per session (a session's turns are consecutive
    in its shard); returns its rows."""

    def rows() -> Iterator[tuple[dict[str, Any], int]]:
        grouped = itertools.groupby(samples, key=lambda sample: session_of(sample.meta, sample.key)[0])
        for session, group in grouped:
            turns = sorted(group, key=lambda sample: session_of(sample.meta, sample.key)[1])
            row = {
                "session": session,
                "turns_count": len(turns),
                "input_image": _image_of(turns[0], "input"),
                "turns": [
                    {
                        "key": t.key,
                        "task": t.meta.get("task", ""),
                        "instruction": prompt(t.instruction, t.meta),
                        "output_image": _image_of(t, "output"),
                        "mask": _image_of(t, "mask"),
                        "input_caption": t.meta.get("input_caption", ""),
                        "output_caption": t.meta.get("output_caption", ""),
                        "json": t.meta_text,
                    }
                    for t in turns
                ],
            }
            yield row, sum(len(data) for t in turns for _, data in t.images.values())

    return _write_rows(rows(), folder, name, sessions_schema())


def _write_rows(rows: Iterator[tuple[dict[str, Any], int]], folder: Folder, name: str, schema: pa.Schema) -> int:
    """(row, its image bytes) -> one parquet file of `schema`, a row group at a time, published whole after the last
    row; no file when there is no row (an empty file trips loaders). Returns the rows written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = iter(rows)
    first = next(rows, None)
    if first is None:
        return 0
    batch: list[dict[str, Any]] = []
    count = buffered = 0
    with folder.writer(name) as f, pq.ParquetWriter(f, schema, compression="zstd") as writer:
        for row, size in itertools.chain([first], rows):
            batch.append(row)
            buffered += size
            if len(batch) >= ROW_GROUP_ROWS or buffered >= ROW_GROUP_BYTES:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                count, batch, buffered = count + len(batch), [], 0
        if batch:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            count += len(batch)
    return count


def write_imagefolder_shard(samples: Iterator[Sample], folder: Folder, prompt: PromptChoice) -> int:
    """One shard -> a folder of its images and a metadata.jsonl, published last; returns the samples written.

    Images without a metadata line are invisible to the imagefolder loader, so the images are written directly and
    only metadata.jsonl is published atomically. Every score column is a float on every line, NaN where the sample
    lacks the score: `datasets` infers the metadata's types from its first lines, and a column all null there
    cannot hold numbers later."""
    folder.makedirs()
    lines = []
    for sample in samples:
        for member, data in sample.images.values():
            folder.fs.pipe_file(folder.at(member), data)
        row = _row(sample, {IMAGE_COLUMNS[stem]: member for stem, (member, _) in sample.images.items()}, prompt)
        line = {f"{k}_file_name" if k in IMAGE_COLUMNS.values() else k: v for k, v in row.items()}
        line.update({c: math.nan for c in score_columns() if line[c] is None})
        lines.append(json.dumps(line, ensure_ascii=False))
    folder.write_atomic("metadata.jsonl", ("\n".join(lines) + "\n").encode())
    return len(lines)


def preference_pairs(
    samples: Iterator[Sample], candidates: Iterator[Candidate], skipped: Counter
) -> Iterator[tuple[Sample, Candidate]]:
    """(kept sample, a candidate of the same sample that was not kept and edited the same input image), streaming
    the shard's tar and its rejected tar side by side (both in key order). `skipped` counts the candidates left
    unpaired: `input_differs` (add: every candidate has its own input) and `not_kept` (their sample kept none)."""
    kept = _ascending(samples)
    sample = next(kept, None)
    for key, group in itertools.groupby(_ascending(candidates), key=lambda c: c.key):
        while sample is not None and sample.key < key:
            sample = next(kept, None)
        for candidate in group:
            if sample is None or sample.key != key:
                skipped["not_kept"] += 1
            elif candidate.images["input"][1] != sample.images["input"][1]:
                skipped["input_differs"] += 1
            else:
                yield sample, candidate
    for _ in kept:  # to the end of the tar: its count and checksum are checked there
        pass


def _ascending(items: Iterator) -> Iterator:
    """`items` (samples or candidates) as they come, refusing keys out of order: the pairing relies on it."""
    last = ""
    for item in items:
        if item.key < last:
            raise _error(f"{item.key} comes after {last} in its tar: not a tar datagen wrote (datagen verify OUT)")
        last = item.key
        yield item


def _preference_row(sample: Sample, candidate: Candidate, prompt: PromptChoice) -> tuple[dict[str, Any], int]:
    """A pair's columns in preference_schema()'s order, and its image bytes."""
    from datagen.scores import SCORES

    def scores(meta: dict[str, Any]) -> dict[str, float | None]:
        given = meta.get("scores") or {}
        return {name: None if given.get(name) is None else float(given[name]) for name in SCORES}

    images = (sample.images["input"], sample.images["output"], candidate.images["output"])
    row = {
        "input_image": {"bytes": images[0][1], "path": images[0][0]},
        "edit_prompt": prompt(sample.instruction, sample.meta),
        "chosen_image": {"bytes": images[1][1], "path": images[1][0]},
        "rejected_image": {"bytes": images[2][1], "path": images[2][0]},
        "chosen_scores": scores(sample.meta),
        "rejected_scores": scores(candidate.meta),
        "task": sample.meta.get("task", ""),
        "key": sample.key,
        "rejected_candidate": candidate.candidate,
        "rejected_reason": candidate.meta.get("reason", ""),
    }
    return row, sum(len(data) for _, data in images)


def write_preference_shard(
    samples: Iterator[Sample],
    candidates: Iterator[Candidate],
    folder: Folder,
    name: str,
    prompt: PromptChoice,
    skipped: Counter,
) -> int:
    """One shard's preference pairs -> one parquet file of preference_schema(), published whole (none without a
    pair); returns its rows."""
    pairs = preference_pairs(samples, candidates, skipped)
    return _write_rows((_preference_row(s, c, prompt) for s, c in pairs), folder, name, preference_schema())


PARQUET_WRITERS = {"hf-parquet": write_parquet_shard, "magicbrush": write_magicbrush_shard,
                   "sessions": write_sessions_shard}  # fmt: skip
"""The formats written as DEST/data/train/{shard}.parquet from the kept samples."""


class _peeked:
    """An iterator that says whether it holds anything (reading one item ahead)."""

    def __init__(self, items: Iterator):
        self.items = iter(items)
        self.first = next(self.items, None)

    def __bool__(self) -> bool:
        return self.first is not None

    def __iter__(self) -> Iterator:
        if self.first is not None:
            yield self.first
        yield from self.items


def _counted(samples: Iterator[Sample], tasks: Counter, turns: Counter) -> Iterator[Sample]:
    """The samples as they pass, counted by their own task (a shard of sessions holds several) and turn."""
    for sample in samples:
        tasks[sample.meta.get("task") or sample.key.rsplit("_", 2)[0]] += 1
        turns[session_of(sample.meta, sample.key)[1]] += 1
        yield sample


class Thresholds:
    """`export --thresholds FILE`: gates applied to a finished run from its stored scores. A kept pair that fails
    them is left out; a sample left without a pair that passes, but with another candidate that does, would need
    that candidate rendered: counted, never exported."""

    def __init__(self, path: str, run):
        from datagen.calibrate import task_configs
        from datagen.config import read_thresholds, with_thresholds
        from datagen.scores import SCORES

        self.path = path
        entries = read_thresholds(path)
        configs = task_configs(run)
        unknown = sorted({n for e in entries.values() for n in e.filters if n not in SCORES})
        if unknown:
            raise _error(f"--thresholds {path}: unknown score(s) {', '.join(unknown)}; known: {', '.join(SCORES)}")
        self.gates = {
            task: {
                name: spec
                for name, spec in with_thresholds(config["task"].get("filters") or {}, entries.get(task)).items()
                if spec.get("enabled", True)
            }
            for task, config in configs.items()
        }
        self.dropped: Counter = Counter()
        self.needs_render = self._needs_render(run)

    def passes(self, task: str, scores: dict[str, Any]) -> bool:
        from datagen.calibrate import passes

        return all(
            passes(float(scores[name]) if scores.get(name) is not None else math.nan, spec)
            for name, spec in self.gates.get(task, {}).items()
        )

    def filter(self, samples: Iterator[Sample]) -> Iterator[Sample]:
        for sample in samples:
            task = sample.meta.get("task", "")
            if self.passes(task, sample.meta.get("scores") or {}):
                yield sample
            else:
                self.dropped[task] += 1

    def _needs_render(self, run) -> int:
        """Samples without a kept pair that passes these thresholds, a candidate of which passes them (it was
        rejected by a looser or another gate, or outranked): exporting it needs its render."""
        from datagen.calibrate import candidates

        rows = candidates(run)
        served = {
            key
            for (key, _), row in rows.items()
            if row["status"] == "kept" and self.passes(row["task"], row["scores"])
        }
        return len(
            {
                key
                for (key, _), row in rows.items()
                if key not in served and row["status"] == "rejected" and self.passes(row["task"], row["scores"])
            }
        )

    def counts(self) -> dict[str, Any]:
        return {"file": self.path, "dropped": dict(sorted(self.dropped.items())), "needs_render": self.needs_render}


def _prepare_dest(dest: Folder, overwrite: bool) -> None:
    """Refuse a DEST holding an export (finished or not) unless overwrite; then remove what an export writes."""
    dest.fs.invalidate_cache()
    found = [name for name in (MARKER, CARD, "data", "train") if dest.fs.exists(dest.at(name))]
    if found and not overwrite:
        state = "an export" if MARKER in found else "an unfinished export"
        raise _error(
            f"{dest}: already holds {state} ({', '.join(found)}); pass --overwrite to replace it, "
            "or choose another DEST"
        )
    for name in found:
        dest.fs.rm(dest.at(name), recursive=True)
    dest.fs.invalidate_cache()


def export(
    out: str,
    dest: str,
    format: str,
    progress: bool = True,
    overwrite: bool = False,
    instruction: str = "original",
    thresholds: str | None = None,
    image_url: str = "",
) -> dict[str, Any]:
    """Export OUT's committed shards to DEST in `format`, `instruction` (INSTRUCTIONS) as edit_prompt, leaving out
    the kept pairs that fail `thresholds` (a thresholds file); returns the counts (also written to DEST/MARKER)."""
    if format not in FORMATS:
        raise _error(f"--format {format!r}: allowed: {', '.join(FORMATS)}")
    if instruction not in INSTRUCTIONS:
        raise _error(f"--instruction {instruction!r}: allowed: {', '.join(INSTRUCTIONS)}")
    from datagen import __version__
    from datagen.card import card, features_of
    from datagen.progress import Progress
    from datagen.shards import RunFolder
    from datagen.storage import Folder

    run = RunFolder(out)
    shards = run.committed()
    if format == "preference" and (without := [s.name for s in shards if not s.keeps_rejected]):
        raise _error(
            f"{run.shards}: {len(without)} of {len(shards)} committed shards ({', '.join(without[:3])}"
            f"{' …' if len(without) > 3 else ''}) stored no rejected candidates: the run was made without "
            f"pipeline.keep_rejected, and preference pairs need them. Generate a run into a new --out with "
            f"--set pipeline.keep_rejected=true"
        )
    gates = Thresholds(thresholds, run) if thresholds else None
    if gates and format == "preference":
        raise _error("--thresholds applies to exports of kept pairs; give it with another --format than preference")
    target = Folder(dest)
    _prepare_dest(target, overwrite)
    counts: dict[str, Any] = {"format": format, "source": out, "dest": dest, "shards": 0, "samples": 0, "tasks": {}}
    if format == "label-studio":  # a labelling project, not a dataset: no card
        from datagen.label_studio import write_tasks

        counts.update(write_tasks(run, target, image_url, progress), shards=len(shards), datagen=__version__)
        target.write_atomic(MARKER, json.dumps(counts, indent=1, sort_keys=True).encode())
        return counts
    prompt, skipped, tasks, turns = PromptChoice(instruction), Counter(), Counter(), Counter()
    bar = Progress(len(shards), f"export {format}", unit="shard", enabled=progress)
    for n, shard in enumerate(shards):
        stored = gates.filter(run.samples(shard)) if gates else run.samples(shard)
        samples = run.samples(shard) if format == "preference" else _counted(stored, tasks, turns)
        if format == "preference":
            written = write_preference_shard(
                samples, run.rejected(shard), target.sub("data").sub("train"), f"{shard.name}.parquet", prompt, skipped
            )
        elif shard.kept == 0:  # nothing to export (still read, to check it): no empty file for loaders to trip on
            written = sum(1 for _ in samples)
        elif gates and not (samples := _peeked(samples)):
            written = 0  # every pair of the shard failed the thresholds: no empty file either
        elif format in PARQUET_WRITERS:
            write = PARQUET_WRITERS[format]
            written = write(samples, target.sub("data").sub("train"), f"{shard.name}.parquet", prompt)
        else:
            written = write_imagefolder_shard(samples, target.sub("train").sub(f"{n:06d}"), prompt)
        counts["shards"] += 1
        counts["samples"] += written
        if format == "preference":
            tasks[shard.task] += written
        bar.update(1, samples=counts["samples"])
    bar.close()
    counts["tasks"] = dict(sorted(tasks.items()))
    if format != "preference":
        counts["turns"] = {str(turn): n for turn, n in sorted(turns.items())}
    if gates:
        counts["thresholds"] = gates.counts()
    counts["instruction"] = instruction
    counts["instruction_fell_back"] = prompt.fell_back
    if format == "preference":
        counts["unpaired"] = {"input_differs": skipped["input_differs"], "not_kept": skipped["not_kept"]}
    counts["datagen"] = __version__
    schema = {
        "hf-parquet": hf_schema,
        "preference": preference_schema,
        "magicbrush": magicbrush_schema,
        "sessions": sessions_schema,
    }.get(format)
    data = target.sub("train" if format == "imagefolder" else "data")
    counts["bytes"] = int(data.fs.du(data.path)) if data.fs.exists(data.path) else 0
    text = card(run, counts, format, features_of(schema()) if schema else None)
    target.write_atomic(CARD, text.encode())
    target.write_atomic(MARKER, json.dumps(counts, indent=1, sort_keys=True).encode())
    return counts


# ---------------------------------------------------------------------------------------------- CLI


def add_parser(sub) -> argparse.ArgumentParser:
    """Add the `export` subcommand to an argparse subparsers object."""
    text = "export a run's committed shards as a Hugging Face parquet dataset, an imagefolder or preference pairs"
    formats = "{" + ",".join(FORMATS) + "}"
    parser = sub.add_parser(
        "export",
        help=text,
        description=text + " (datagen/export.py)",
        usage=f"datagen export [-h] OUT [DEST] --format {formats} [--instruction {{{','.join(INSTRUCTIONS)}}}] "
        "[--thresholds FILE] [--image-url PREFIX] [--dest DEST] [--overwrite] [--no-progress]",
        epilog="Example: datagen export out/remove --format hf-parquet exports/remove",
    )
    parser.add_argument("out", help="run directory or fsspec URL (its committed shards/ are read)")
    dest = parser.add_argument("dest_arg", metavar="DEST", help="export folder or fsspec URL (or --dest)")
    # A plain positional made optional, not nargs="?": argparse fills a "?" positional with nothing at the first
    # positional it meets, so `export OUT --format F DEST` would leave DEST unrecognised. This one waits for DEST
    # wherever it stands, and run() asks for it when neither it nor --dest is given.
    dest.required = False
    parser.add_argument("--dest", help="export folder or fsspec URL")
    parser.add_argument(
        "--format",
        required=True,
        choices=FORMATS,
        help="hf-parquet: DEST/data/train/*.parquet; imagefolder: DEST/train/NNNNNN/ images + metadata.jsonl; "
        "preference: DEST/data/train/*.parquet of (chosen, rejected) pairs, from a run made with "
        "--set pipeline.keep_rejected=true; magicbrush: MagicBrush's columns, a row per turn; sessions: a row per "
        "session with its turns in order; label-studio: DEST/tasks.json and label_config.xml, a Label Studio "
        "project of every kept pair and stored rejected candidate to label (datagen labels import reads its export)",
    )
    parser.add_argument(
        "--instruction",
        choices=INSTRUCTIONS,
        default="original",
        help="the edit_prompt: the writer's instruction (default), or the judge's rewritten one where the run has "
        "it (a judge with rewrite: true), the original elsewhere (counted in the export's marker)",
    )
    parser.add_argument(
        "--thresholds",
        metavar="FILE",
        help="leave out the kept pairs that fail these gates (a thresholds file: `datagen calibrate` writes one), "
        "judged from their stored scores without re-rendering",
    )
    parser.add_argument(
        "--image-url",
        default="",
        metavar="PREFIX",
        help="label-studio: put PREFIX before each image's path relative to DEST (Label Studio's local-files route "
        "or a bucket URL); default: paths relative to DEST",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an export already in DEST")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def run(args: argparse.Namespace) -> int:
    """`datagen export`: export, then say what was written and how to load it."""
    if args.dest and args.dest_arg and args.dest != args.dest_arg:
        raise _error(f"DEST given twice: {args.dest_arg!r} and --dest {args.dest!r}; give one")
    dest = args.dest or args.dest_arg
    if not dest:
        raise _error("give DEST: datagen export OUT DEST --format hf-parquet (or --dest DEST)")
    counts = export(
        args.out,
        dest,
        args.format,
        progress=not args.no_progress,
        overwrite=args.overwrite,
        instruction=args.instruction,
        thresholds=args.thresholds,
        image_url=args.image_url,
    )
    if args.format == "label-studio":
        print(
            f"exported {counts['tasks']} Label Studio tasks ({counts['kept']} kept pairs, {counts['rejected']} "
            f"rejected candidates) to {dest}/tasks.json; labelling interface: {dest}/label_config.xml; read the "
            f"project's JSON export back with: datagen labels import FILE --out {args.out}"
        )
        return 0
    tasks = ", ".join(f"{task} {n}" for task, n in sorted(counts["tasks"].items()))
    what = {"preference": "preference pairs", "sessions": "sessions"}.get(args.format, "samples")
    if args.format == "imagefolder":
        where, load, flag = f"{dest}/train/", f'load_dataset("imagefolder", data_dir="{dest}")', "--train_data_dir"
    else:
        where, load, flag = f"{dest}/data/train/", f'load_dataset("parquet", data_dir="{dest}")', "--dataset_name"
    print(f"exported {counts['samples']} {what} ({tasks}) from {counts['shards']} committed shards to {where}")
    if counts["instruction_fell_back"]:
        print(f"  {counts['instruction_fell_back']} rows without a rewritten instruction kept the original")
    if args.format == "preference":
        unpaired = counts["unpaired"]
        print(
            f"  unpaired rejected candidates: {unpaired['input_differs']} with another input image than the kept "
            f"one's, {unpaired['not_kept']} of samples that kept none"
        )
    if "thresholds" in counts:
        left = counts["thresholds"]
        dropped = ", ".join(f"{task} {n}" for task, n in left["dropped"].items()) or "none"
        print(
            f"  --thresholds {left['file']}: left out the kept pairs that fail them ({dropped}); "
            f"{left['needs_render']} samples left without such a pair have another candidate that passes them "
            f"and would need it rendered to be exported"
        )
    print(f"  load with: {load}")
    if args.format in ("hf-parquet", "imagefolder"):
        print(f"  diffusers examples/instruct_pix2pix/train_instruct_pix2pix.py {flag} {dest} (its default columns)")
    return 0
