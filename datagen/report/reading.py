"""What the report reads from OUT: run.json, the committed shards' stats markers, failure records and manifests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from datagen.errors import ConfigError

ROW_COLUMNS = ("key", "task", "candidate", "status", "reason")
"""The manifest columns every tally needs; a parquet file without them is not a datagen manifest."""


@dataclass
class Shard:
    """One committed shard: its stats marker and when it was committed (epoch seconds; None if unknown)."""

    name: str
    task: str
    stats: dict[str, Any]
    committed: float | None


def where(fs, path: str) -> str:
    """A path as the user would write it: plain for local files, a URL otherwise."""
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else fs.protocol
    return path if "file" in protocols else fs.unstrip_protocol(path)


def timestamp(value: Any) -> float | None:
    """ISO-8601 text, a datetime or epoch seconds -> epoch seconds (naive times are UTC); None if unusable."""
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    return None


def read_run(fs, root: str) -> dict[str, Any]:
    """OUT/run.json, with the single-task layout of older runs turned into {'runs': {task: {'config': ...}}}."""
    path = f"{root}/run.json"
    try:
        record = json.loads(fs.cat_file(path))
    except FileNotFoundError:
        raise ConfigError(
            f"{where(fs, path)}: no such file, so {where(fs, root)} is not a datagen run folder "
            f"(give the --out of `datagen generate`)"
        ) from None
    except (OSError, ValueError) as e:
        raise ConfigError(f"{where(fs, path)}: unreadable ({e})") from None
    if isinstance(record, dict) and "runs" not in record and isinstance(record.get("config"), dict):
        task = (record["config"].get("task") or {}).get("name", "?")  # a single-task run from before mixtures
        record["runs"] = {task: {"config": record["config"]}}
    if not isinstance(record, dict) or not isinstance(record.get("runs"), dict):
        raise ConfigError(f"{where(fs, path)}: not a datagen run record (no 'runs' object)")
    return record


def committed_shards(fs, root: str) -> tuple[list[Shard], list[str]]:
    """The committed render shards under OUT/shards (sorted by name) and the names of ignored uncommitted files."""
    folder = f"{root}/shards"
    try:
        listing = fs.ls(folder, detail=True)
    except FileNotFoundError:
        listing = []
    infos = {entry["name"].rstrip("/").rsplit("/", 1)[-1]: entry for entry in listing}
    stems = sorted(n[: -len(".stats.json")] for n in infos if n.endswith(".stats.json") and not n.startswith("."))
    if not stems:
        raise ConfigError(
            f"{where(fs, folder)}: no committed shards (no *.stats.json marker): nothing was rendered here yet; "
            f"run `datagen render --out {where(fs, root)}`"
        )
    paths = [f"{folder}/{stem}.stats.json" for stem in stems]
    contents = fs.cat(paths, on_error="return")  # one batch: concurrent requests on object stores
    found = []
    for stem, path in zip(stems, paths, strict=True):
        try:
            content = contents.get(path, FileNotFoundError(path))
            if isinstance(content, BaseException):
                raise content
            stats = json.loads(content)
            task = stats["task"]
            if not isinstance(task, str):
                raise TypeError("'task' is not a string")
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"{where(fs, path)}: unreadable stats ({e}); `datagen verify` checks the run") from None
        info = infos[f"{stem}.stats.json"]
        when = timestamp(stats.get("committed"))
        for key in ("mtime", "LastModified", "last_modified", "updated", "created"):
            if when is None:
                when = timestamp(info.get(key))
        found.append(Shard(stem, task, stats, when))
    ignored = sorted(n for n in infos if n.lstrip(".").split(".")[0] not in set(stems))
    return found, ignored


def failed_shards(fs, root: str, limit: int = 20) -> list[str]:
    """One line per shard recorded in OUT/failed/ (it failed after its retries; a rerun retries it)."""
    try:
        paths = sorted(p for p in fs.ls(f"{root}/failed", detail=False) if p.endswith(".json"))
    except FileNotFoundError:
        return []
    lines = []
    for path in paths[:limit]:
        name = path.rsplit("/", 1)[-1][: -len(".json")]
        try:
            body = json.loads(fs.cat_file(path))
            error = str(body.get("error") or "").strip().splitlines()
            lines.append(f"{name}: failed {body.get('phase', '')} after {body.get('attempts', '?')} attempt(s): "
                         f"{error[-1] if error else 'no error recorded'}")  # fmt: skip
        except (OSError, ValueError, AttributeError) as e:
            lines.append(f"{name}: failed (its record is unreadable: {e})")
    if len(paths) > limit:
        lines.append(f"… and {len(paths) - limit} more failed shards in {where(fs, root)}/failed/")
    return lines


def read_manifest(fs, path: str, wanted: tuple[str, ...]):
    """The `wanted` columns of one parquet manifest that it has (older manifests may lack newer scores)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        # Whole into memory (manifests are small): arrow threads calling back into a Python file object can
        # abort the interpreter at exit when that file is a remote one.
        manifest = pq.ParquetFile(pa.BufferReader(fs.cat_file(path)))
        names = set(manifest.schema_arrow.names)
        missing = [c for c in ROW_COLUMNS if c not in names]
        if missing:
            raise ValueError(f"not a datagen manifest: no column {', '.join(missing)}")
        return manifest.read(columns=[c for c in wanted if c in names], use_threads=False)
    except (OSError, ValueError, pa.ArrowException) as e:
        raise ConfigError(
            f"{where(fs, path)}: unreadable parquet manifest ({e}); `datagen verify` checks the run"
        ) from None
