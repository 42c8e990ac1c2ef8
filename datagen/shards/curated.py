"""A curated set's folder (`datagen curate --out CURATED`), a run folder like OUT: its layout, its settings, the
committed shards of its inputs, and reading the set.

    CURATED/curate.json                     what was curated and how (source, input, pipeline, gates, shard size)
    CURATED/inputs/curate-{shard:06d}.parquet   one row per input: its reference, size, scores, hashes, and the
                                                gate that dropped it or ''
    CURATED/inputs/curate-{shard:06d}.stats.json    the shard's commit marker, written last (layout.write_stats)
    CURATED/duplicates.parquet              each kept input dropped as a near-duplicate, and the input it duplicates
    CURATED/duplicates.stats.json           its marker, written once every input shard is committed
    CURATED/failed/curate-{shard:06d}.json  a shard that failed after its retries (a rerun retries it)
    CURATED/.lease.json                     the live curate's lease (datagen/lease.py): a second one is refused

A shard commits as a run's does (layout.py); a rerun with the same settings resumes, one with others is refused.
"""

from __future__ import annotations

import json
from typing import Any

from datagen.errors import ConfigError
from datagen.scores import CURATION_SCORES, SCORE_PREFIX
from datagen.shards.layout import STATS, ShardPaths, committed_stems, read_parquet, shard_name
from datagen.storage import Folder

CURATE = "curate"
"""The curated set's one task name: its shards are `curate-{shard:06d}`, its input keys `curate_{shard}_{k}`."""
CURATE_JSON = "curate.json"
INPUTS = "inputs"
DUPLICATES = "duplicates.parquet"
DUPLICATES_MARKER = "duplicates" + STATS


def input_paths(out: str | Folder, shard: int) -> ShardPaths:
    """The files of one input shard of a curated set."""
    folder = out if isinstance(out, Folder) else Folder(out)
    return ShardPaths(folder.sub(INPUTS), shard_name(CURATE, shard))


def input_key(shard: int, index: int) -> str:
    """The key of the `index`th input of a shard: a sample key (layout.MEMBER_RE)."""
    return f"{CURATE}_{shard:06d}_{index:05d}"


def pending_inputs(out: str | Folder, shards: int) -> list[int]:
    """The input shards of `shards` not committed yet."""
    inputs = input_paths(out, 0).folder
    done = set(committed_stems(inputs.names())) if inputs.is_dir() else set()
    return [shard for shard in range(shards) if shard_name(CURATE, shard) not in done]


def start_curation(folder: Folder, settings: dict[str, Any]) -> None:
    """Write curate.json for a new set; for an existing one, refuse other settings (a rerun resumes)."""
    folder.makedirs()
    if folder.exists(CURATE_JSON):
        before = json.loads(folder.read_text(CURATE_JSON))
        changed = [k for k in settings if before.get(k) != settings[k]]
        if changed:
            was = ", ".join(f"{k} {before.get(k)!r}" for k in changed)
            raise ConfigError(f"{folder} was curated with other settings ({was}); curate into a new folder")
    else:
        folder.write_atomic(CURATE_JSON, (json.dumps(settings, indent=1) + "\n").encode())
    folder.sub(INPUTS).makedirs()


def committed_inputs(folder: Folder, columns=None):
    """Every committed input shard's table, in shard order."""
    inputs = folder.sub(INPUTS)
    names = committed_stems(inputs.names()) if inputs.is_dir() else []
    return [read_parquet(inputs, f"{name}.parquet", columns) for name in names]


def kept_inputs(folder: Folder) -> list[dict[str, Any]]:
    """The curated set: every input no gate dropped and no duplicate, in committed order: {key, ref, scores}."""
    dropped = set(read_parquet(folder, DUPLICATES, ["key"]).column("key").to_pylist())
    kept = []
    for table in committed_inputs(folder):
        for row in table.to_pylist():
            if not row["reason"] and row["key"] not in dropped:
                scores = {
                    name: row[f"{SCORE_PREFIX}{name}"]
                    for name in CURATION_SCORES
                    if row[f"{SCORE_PREFIX}{name}"] is not None
                }
                kept.append({"key": row["key"], "ref": json.loads(row["ref"]), "scores": scores})
    return kept
