"""What a run folder holds and what its files are called: the one definition of a committed shard.

    OUT/run.json                      the run's tasks, resolved configurations, seed, versions (shards/run.py)
    OUT/texts/{task}-{shard:06d}.jsonl      phase 1: one InstructionRecord per line (datagen/record.py)
    OUT/shards/{task}-{shard:06d}.tar       phase 2: kept samples, members key.{input,output}.ext, key.mask.png,
                                                      key.json, key.txt
    OUT/shards/{task}-{shard:06d}.parquet   phase 2: every candidate's manifest row (MANIFEST_SCHEMA)
    OUT/shards/{task}-{shard:06d}.rejected.tar  with pipeline.keep_rejected: the rendered candidates not kept,
                                                      members key.c{n}.{input,output}.ext, key.c{n}.mask.png,
                                                      key.c{n}.json
    OUT/{texts,shards}/{name}.stats.json    the commit marker (WriteStats / ShardStats), written last
    OUT/failed/{task}-{shard:06d}.json      a shard that failed after its retries (a rerun retries it)
    OUT/.lease.json                         the live writer's lease and heartbeat (datagen/lease.py)

A shard is committed when its `.stats.json` marker exists: the marker is published last, after its tars and parquet
(or jsonl), each whole or not at all (datagen/storage.py). A shard without its marker is not done: resume deletes
its leftovers and redoes it, and every reader ignores it.
"""

from __future__ import annotations

import io
import json
import re
import time
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict

import pyarrow as pa
import pyarrow.parquet as pq

from datagen.record import InstructionRecord as InstructionRecord  # declared with the sample record
from datagen.record import manifest_schema
from datagen.storage import Folder

MEMBERS = ("input", "output", "mask", "json", "txt")
"""Every sample of every task carries exactly these members (the image ones with the pipeline's codec)."""
STATS = ".stats.json"
"""The suffix of the commit marker."""
MEMBER_RE = re.compile(r"^(?P<key>[a-z][a-z0-9_]*_\d{6}_\d{5})\.(?P<field>[a-z0-9.]+)$")
"""A tar member: the sample's key, then the member's field (`input.png`, `json`, ...)."""
REJECTED_FIELD_RE = re.compile(r"^c(?P<candidate>\d{1,4})\.(?P<member>[a-z0-9.]+)$")
"""A field of the rejected tar: the candidate's number, then its member (`c2.input.png`, `c2.json`)."""

MANIFEST_SCHEMA = manifest_schema()
"""Every candidate's manifest row, derived from the sample record's one declaration (datagen/record.py: FIELDS)."""

TAR_MTIME = 0  # fixed member metadata: same samples -> byte-identical tar


class FileDigest(TypedDict, total=False):
    name: str
    bytes: int
    sha256: str
    samples: int
    rows: int
    candidates: int


class WriteStats(TypedDict):
    """The commit marker of a phase-1 shard."""

    phase: str
    task: str
    shard: int
    records: int
    rejected: int
    reasons: dict[str, int]
    jsonl: FileDigest
    config: str
    seconds: float
    committed: str
    version_change: NotRequired[dict[str, list[str | None]]]
    """Library -> [recorded, current], where a resume ran under other versions (--allow-version-change)."""


class ShardStats(TypedDict, total=False):
    """The commit marker of a rendered shard: counts, its files' sizes and sha256, where the time went."""

    phase: str
    task: str
    shard: int
    samples: int
    """Samples attempted (each may have several candidates)."""
    candidates: int
    kept: int
    rejected: int
    errors: int
    reasons: dict[str, int]
    """Why samples were not kept (their first candidate's reason)."""
    candidate_reasons: dict[str, int]
    image_format: str
    tar: FileDigest
    parquet: FileDigest
    rejected_tar: FileDigest
    """With pipeline.keep_rejected only: the tar of the rendered candidates that were not kept (samples: their
    distinct keys, candidates: how many)."""
    config: str
    """The run configuration's fingerprint."""
    stages: dict[str, Any]
    timings: dict[str, float]
    micro_batch: int
    micro_batches: int
    oom_backoff: int
    seconds: float
    committed: str
    """UTC, ISO 8601 (`now()`)."""
    sessions: dict[str, Any]
    """A shard of sessions (--turns > 1): turns, sessions, complete, kept, dropped_at_turn, keep_prefix."""
    version_change: dict[str, list[str | None]]
    """Library -> [recorded, current], where a resume ran under other versions (--allow-version-change)."""


def now() -> str:
    """UTC time as the stats and run.json record it."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def shard_name(task: str, shard: int) -> str:
    return f"{task}-{shard:06d}"


@dataclass
class ShardPaths:
    """The file names of one shard in its folder (`texts/` or `shards/` of a run, local or remote)."""

    folder: Folder
    name: str

    @property
    def tar(self) -> str:
        return f"{self.name}.tar"

    @property
    def rejected_tar(self) -> str:
        return f"{self.name}.rejected.tar"

    @property
    def parquet(self) -> str:
        return f"{self.name}.parquet"

    @property
    def jsonl(self) -> str:
        return f"{self.name}.jsonl"

    @property
    def stats(self) -> str:
        return f"{self.name}{STATS}"

    def leftovers(self) -> list[str]:
        """Files of this shard other than a committed marker: finals of an unfinished commit and temporaries."""
        return self.folder.names(f"{self.name}.") + self.folder.names(f".{self.name}.")


def phase_folder(out: str | Folder, phase: str) -> Folder:
    """The folder of a phase's shards: `texts/` for write, `shards/` for render."""
    run = out if isinstance(out, Folder) else Folder(out)
    return run.sub("texts" if phase == "write" else "shards")


def shard_paths(out: str | Folder, phase: str, task: str, shard: int) -> ShardPaths:
    return ShardPaths(phase_folder(out, phase), shard_name(task, shard))


def is_committed(paths: ShardPaths) -> bool:
    return paths.folder.exists(paths.stats)


def read_stats(paths: ShardPaths) -> dict[str, Any]:
    return json.loads(paths.folder.read_text(paths.stats))


def write_stats(paths: ShardPaths, stats: ShardStats | WriteStats) -> None:
    """Publish the commit marker: the last file of a shard."""
    paths.folder.write_atomic(paths.stats, json.dumps(stats, indent=1, sort_keys=True).encode())


def clear_uncommitted(paths: ShardPaths) -> list[str]:
    """Delete the leftovers of an uncommitted shard; returns the names removed."""
    if is_committed(paths):
        return []
    removed = paths.leftovers()
    for name in removed:
        paths.folder.remove(name)
    return removed


def committed_stems(names: list[str]) -> list[str]:
    """The names of the committed shards among a folder's file names, sorted."""
    return sorted(n[: -len(STATS)] for n in names if n.endswith(STATS) and not n.startswith("."))


def committed_names(folder: Folder) -> tuple[list[str], list[str]]:
    """(stems of committed shards, names of files belonging to no committed shard) in a shards/ folder."""
    names = folder.names()
    stems = committed_stems(names)
    return stems, uncommitted(names, stems)


def uncommitted(names: list[str], stems: list[str]) -> list[str]:
    """The names that belong to no committed shard (leftovers a reader ignores)."""
    done = set(stems)
    return [n for n in names if n.lstrip(".").split(".")[0] not in done]


def safe_member_name(name: str) -> bool:
    return not (name.startswith("/") or "\\" in name or "/" in name or ".." in name.split("/") or name in ("", "."))


def read_parquet(folder: Folder, name: str, columns=None) -> pa.Table:
    """A manifest, read whole into memory first and parsed on this thread (they are small). Arrow's reader threads
    still alive at interpreter exit abort the process ("terminate called without an active exception") in most
    short commands such as `datagen show`, and remote file objects called back from them can do the same, so no
    datagen read of a parquet file uses them."""
    return pq.read_table(pa.BufferReader(folder.read_bytes(name)), columns=columns, use_threads=False)


def parquet_file(folder: Folder, name: str) -> pq.ParquetFile:
    """A manifest opened from memory (see read_parquet), for reading its schema before choosing columns."""
    return pq.ParquetFile(pa.BufferReader(folder.read_bytes(name)))


def to_parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()
