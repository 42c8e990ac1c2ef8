"""`datagen export`: a run's committed shards as a Hugging Face parquet dataset or an imagefolder.

    datagen export out/remove --format hf-parquet --dest exports/remove
    datagen export out/remove --format imagefolder --dest exports/remove-folder

`hf-parquet` writes DEST/data/train/{task}-{i:06d}.parquet, one file per committed shard, in row groups of at most
ROW_GROUP_ROWS samples. Images are Hugging Face `Image` features (struct {bytes, path}) and the schema carries the
`huggingface` metadata `datasets` writes itself, so `load_dataset("parquet", data_files=...)` decodes them to PIL
images with no casting. `imagefolder` writes DEST/train/{n:06d}/, the n-th committed shard's images and a
`metadata.jsonl` whose `*_file_name` columns `load_dataset("imagefolder", data_dir=DEST)` turns into image columns.
`load_dataset(DEST)` infers splits from folder names (any folder named like `*-test-*` or `val_*`), so the split is
a folder `train/` in both formats and no folder is named after a task: a task called `test` must stay in train.
Both use the column names of the diffusers InstructPix2Pix example trainer (input_image, edit_prompt,
edited_image) plus ours (mask, task, key, captions, one score_<name> per score, the sample's whole json).

Both stream: tars are read shard by shard as streams (datagen/shards: RunFolder.samples), each checked against its
stats (sample count, sha256), and a shard's parquet file or metadata.jsonl is published whole only after its last
sample (datagen.storage: a rename on a local disk, a completed upload on object stores). DEST/.datagen-export.json,
written last, marks a finished export (hidden, so that `load_dataset(DEST)` does not take it for data). `datasets`
is not needed to export.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the rest is imported where it is used: `datagen --help` stays instant with this parser in it
    import pyarrow as pa

    from datagen.shards import Sample
    from datagen.storage import Folder

FORMATS = ("hf-parquet", "imagefolder")
MARKER = ".datagen-export.json"
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
    from datagen.scores import SCORES

    return tuple(f"score_{name}" for name in SCORES)


@functools.cache
def hf_schema() -> pa.Schema:
    """The hf-parquet schema, with the `huggingface` metadata datasets.Features.arrow_schema writes: from it
    Features.from_arrow_schema knows the struct {bytes, path} columns are Images and decodes them to PIL."""
    import pyarrow as pa

    image = (pa.struct([("bytes", pa.binary()), ("path", pa.string())]), {"_type": "Image"})
    string = (pa.string(), {"dtype": "string", "_type": "Value"})
    columns = {
        "input_image": image,
        "edit_prompt": string,
        "edited_image": image,
        "mask": image,
        "task": string,
        "key": string,
        "input_caption": string,
        "output_caption": string,
        **{column: (pa.float64(), {"dtype": "float64", "_type": "Value"}) for column in score_columns()},
        "json": string,
    }
    features = {name: feature for name, (_, feature) in columns.items()}
    return pa.schema([(name, kind) for name, (kind, _) in columns.items()]).with_metadata(
        {"huggingface": json.dumps({"info": {"features": features}})}
    )


def _row(sample: Sample, images: dict[str, Any]) -> dict[str, Any]:
    """A sample's columns in hf_schema()'s order; `images` holds the image columns' values; a missing score is None."""
    scores = sample.meta.get("scores") or {}
    row = {
        "input_image": images["input_image"],
        "edit_prompt": sample.instruction,
        "edited_image": images["edited_image"],
        "mask": images["mask"],
        "task": sample.meta.get("task", ""),
        "key": sample.key,
        "input_caption": sample.meta.get("input_caption", ""),
        "output_caption": sample.meta.get("output_caption", ""),
    }
    for column in score_columns():
        value = scores.get(column.removeprefix("score_"))
        row[column] = None if value is None else float(value)
    row["json"] = sample.meta_text
    return row


# ------------------------------------------------------------------------------------------ writing


def write_parquet_shard(samples: Iterator[Sample], folder: Folder, name: str) -> int:
    """One shard -> one parquet file of hf_schema(), a row group at a time, published whole; returns its rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows: list[dict[str, Any]] = []
    count = buffered = 0
    with folder.writer(name) as f, pq.ParquetWriter(f, hf_schema(), compression="zstd") as writer:
        for sample in samples:
            images = {
                IMAGE_COLUMNS[stem]: {"bytes": data, "path": member} for stem, (member, data) in sample.images.items()
            }
            rows.append(_row(sample, images))
            buffered += sum(len(data) for _, data in sample.images.values())
            if len(rows) >= ROW_GROUP_ROWS or buffered >= ROW_GROUP_BYTES:
                writer.write_table(pa.Table.from_pylist(rows, schema=hf_schema()))
                count, rows, buffered = count + len(rows), [], 0
        if rows:
            writer.write_table(pa.Table.from_pylist(rows, schema=hf_schema()))
            count += len(rows)
    return count


def write_imagefolder_shard(samples: Iterator[Sample], folder: Folder) -> int:
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
        row = _row(sample, {IMAGE_COLUMNS[stem]: member for stem, (member, _) in sample.images.items()})
        line = {f"{k}_file_name" if k in IMAGE_COLUMNS.values() else k: v for k, v in row.items()}
        line.update({c: math.nan for c in score_columns() if line[c] is None})
        lines.append(json.dumps(line, ensure_ascii=False))
    folder.write_atomic("metadata.jsonl", ("\n".join(lines) + "\n").encode())
    return len(lines)


def _prepare_dest(dest: Folder, overwrite: bool) -> None:
    """Refuse a DEST holding an export (finished or not) unless overwrite; then remove what an export writes."""
    dest.fs.invalidate_cache()
    found = [name for name in (MARKER, "data", "train") if dest.fs.exists(dest.at(name))]
    if found and not overwrite:
        state = "an export" if MARKER in found else "an unfinished export"
        raise _error(
            f"{dest}: already holds {state} ({', '.join(found)}); pass --overwrite to replace it, "
            "or choose another DEST"
        )
    for name in found:
        dest.fs.rm(dest.at(name), recursive=True)
    dest.fs.invalidate_cache()


def export(out: str, dest: str, format: str, progress: bool = True, overwrite: bool = False) -> dict[str, Any]:
    """Export OUT's committed shards to DEST in `format`; returns the counts (also written to DEST/MARKER)."""
    if format not in FORMATS:
        raise _error(f"--format {format!r}: allowed: {', '.join(FORMATS)}")
    from datagen import __version__
    from datagen.progress import Progress
    from datagen.shards import RunFolder
    from datagen.storage import Folder

    run = RunFolder(out)
    shards = run.committed()
    target = Folder(dest)
    _prepare_dest(target, overwrite)
    counts: dict[str, Any] = {"format": format, "source": out, "dest": dest, "shards": 0, "samples": 0, "tasks": {}}
    bar = Progress(len(shards), f"export {format}", unit="shard", enabled=progress)
    for n, shard in enumerate(shards):
        samples = run.samples(shard)
        if shard.kept == 0:  # nothing to export (still read, to check it): no empty file for loaders to trip on
            written = sum(1 for _ in samples)
        elif format == "hf-parquet":
            written = write_parquet_shard(samples, target.sub("data").sub("train"), f"{shard.name}.parquet")
        else:
            written = write_imagefolder_shard(samples, target.sub("train").sub(f"{n:06d}"))
        counts["shards"] += 1
        counts["samples"] += written
        counts["tasks"][shard.task] = counts["tasks"].get(shard.task, 0) + written
        bar.update(1, samples=counts["samples"])
    bar.close()
    counts["datagen"] = __version__
    target.write_atomic(MARKER, json.dumps(counts, indent=1, sort_keys=True).encode())
    return counts


# ---------------------------------------------------------------------------------------------- CLI


def add_parser(sub) -> argparse.ArgumentParser:
    """Add the `export` subcommand to an argparse subparsers object."""
    text = "export a run's committed shards as a Hugging Face parquet dataset or an imagefolder"
    formats = "{" + ",".join(FORMATS) + "}"
    parser = sub.add_parser(
        "export",
        help=text,
        description=text + " (datagen/export.py)",
        usage=f"datagen export [-h] OUT [DEST] --format {formats} [--dest DEST] [--overwrite] [--no-progress]",
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
        help="hf-parquet: DEST/data/train/*.parquet; imagefolder: DEST/train/NNNNNN/ images + metadata.jsonl",
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
    counts = export(args.out, dest, args.format, progress=not args.no_progress, overwrite=args.overwrite)
    tasks = ", ".join(f"{task} {n}" for task, n in sorted(counts["tasks"].items()))
    if args.format == "hf-parquet":
        where, load, flag = f"{dest}/data/train/", f'load_dataset("parquet", data_dir="{dest}")', "--dataset_name"
    else:
        where, load, flag = f"{dest}/train/", f'load_dataset("imagefolder", data_dir="{dest}")', "--train_data_dir"
    print(f"exported {counts['samples']} samples ({tasks}) from {counts['shards']} committed shards to {where}")
    print(f"  load with: {load}")
    print(f"  diffusers examples/instruct_pix2pix/train_instruct_pix2pix.py {flag} {dest} (its default columns)")
    return 0
