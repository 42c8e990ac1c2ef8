"""Reading a run: `RunFolder` is the one reader every tool goes through (report, export, show, verify, train, eval,
classify). It knows which shards are committed, reads their stats markers and manifests, streams their samples
(and, with pipeline.keep_rejected, the candidates they did not keep) checked against the stats, and names their
tars for readers of their own (WebDataset). Tools given tars on a command line read them with `read_samples`, and
the trainer's own WebDataset pipeline decodes each sample with `decode_sample`: one decoding of a sample's members.

Local folders and fsspec URLs alike; a listing is never cached (other workers may be writing), and manifests are
read whole into memory and parsed on this thread (datagen/shards/layout.py: read_parquet).
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from datagen.errors import ConfigError
from datagen.shards.layout import (
    MEMBER_RE,
    REJECTED_FIELD_RE,
    STATS,
    ShardStats,
    committed_stems,
    parquet_file,
    phase_folder,
    safe_member_name,
    uncommitted,
)
from datagen.shards.urls import committed_tars, tar_urls
from datagen.storage import Folder

IMAGES = ("input", "output", "mask")
"""The image members of a sample."""
ROW_COLUMNS = ("key", "task", "candidate", "status", "reason")
"""The manifest columns every reader needs; a parquet file without them is not a datagen manifest."""


@dataclass
class Shard:
    """One committed shard: its name, task, stats marker and when it was committed (epoch seconds; None if unknown)."""

    name: str
    task: str
    stats: ShardStats
    committed: float | None

    @property
    def kept(self) -> int:
        return int(self.stats["kept"])

    @property
    def image_format(self) -> str:
        return self.stats.get("image_format", "png")

    @property
    def keeps_rejected(self) -> bool:
        """Whether the shard stored its rendered candidates that were not kept (pipeline.keep_rejected)."""
        return bool(self.stats.get("rejected_tar"))


@dataclass
class Sample:
    """One kept sample as stored in its tar."""

    key: str
    images: dict[str, tuple[str, bytes]]
    """input / output / mask -> (member name, encoded bytes as stored in the tar)."""
    meta: dict[str, Any]
    """The `.json` member, parsed."""
    meta_text: str
    instruction: str
    """The `.txt` member."""


@dataclass
class Candidate:
    """One rendered candidate its shard did not keep (rejected or outranked), as stored in the rejected tar."""

    key: str
    candidate: int
    images: dict[str, tuple[str, bytes]]
    """input / output / mask -> (member name, encoded bytes as stored in the tar)."""
    meta: dict[str, Any]
    """The `.c{n}.json` member, parsed: the sample's metadata plus `candidate`, `status`, `reason`, `detail`."""


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


class RunFolder:
    """OUT as readers see it: run.json, the committed shards of shards/, their manifests and samples, failed/."""

    def __init__(self, out: str | Path | Folder):
        self.folder = out if isinstance(out, Folder) else Folder(out)
        self.shards = self.folder.sub("shards")

    def __str__(self) -> str:
        return str(self.folder)

    # ---------------------------------------------------------------------------------------------- run.json

    def record(self) -> dict[str, Any]:
        """OUT/run.json, with the single-task layout of older runs turned into {'runs': {task: {'config': ...}}}."""
        path = self.folder.url("run.json")
        if not self.folder.exists("run.json"):
            raise ConfigError(
                f"{path}: no such file, so {self.folder} is not a datagen run folder (give the --out of "
                f"`datagen generate`)"
            )
        try:
            record = json.loads(self.folder.read_text("run.json"))
        except (OSError, ValueError) as e:
            raise ConfigError(f"{path}: unreadable ({e}); move it away to start a new run in {self.folder}") from None
        if isinstance(record, dict) and "runs" not in record and isinstance(record.get("config"), dict):
            task = (record["config"].get("task") or {}).get("name", "?")  # a single-task run from before mixtures
            record["runs"] = {task: {"config": record["config"]}}
        runs = record.get("runs") if isinstance(record, dict) else None
        if not isinstance(runs, dict) or not all(isinstance(r, dict) and "config" in r for r in runs.values()):
            raise ConfigError(f"{path}: not a datagen run record (no 'runs' object of task configurations)")
        return record

    def configs(self) -> dict[str, dict[str, Any]]:
        """Task name -> its resolved configuration, as run.json holds it."""
        return {task: run["config"] for task, run in self.record()["runs"].items()}

    # ---------------------------------------------------------------------------------------- committed shards

    def committed(self, task: str | None = None, required: bool = True, phase: str = "render") -> list[Shard]:
        """The committed shards of a phase (render: shards/, write: texts/), of one task if given, by name, with
        their stats; ConfigError if a marker is unreadable, or if there are none and some are `required`. One
        listing, and on object stores the markers fetched in one batch."""
        folder = phase_folder(self.folder, phase)
        listing = self._listing(folder)
        stems = [s for s in committed_stems(list(listing)) if task is None or s.startswith(f"{task}-")]
        if not stems and not required:
            return []
        if not stems:
            what = f"{task} shards" if task else "shards"
            raise ConfigError(
                f"{folder}: no committed {what} (no *{STATS} marker there): nothing was rendered here yet; "
                f"render some first: datagen generate --task TASK --out {self.folder}"
            )
        names = [f"{stem}{STATS}" for stem in stems]
        if folder.local:
            contents: dict[str, Any] = {}
            for name in names:
                try:
                    contents[name] = folder.read_bytes(name)
                except OSError as e:
                    contents[name] = e
        else:  # concurrent requests
            fetched = folder.fs.cat([folder.at(n) for n in names], on_error="return")
            contents = {n: fetched.get(folder.at(n), FileNotFoundError(n)) for n in names}
        found = []
        for stem, name in zip(stems, names, strict=True):
            try:
                content = contents[name]
                if isinstance(content, BaseException):
                    raise content
                stats = json.loads(content)
                counted = "kept" if phase == "render" else "records"
                if not isinstance(stats.get("task"), str) or not isinstance(stats.get(counted), int):
                    raise TypeError(f"no 'task' text and '{counted}' count")
            except (OSError, ValueError, TypeError, AttributeError) as e:
                raise ConfigError(
                    f"{folder.url(name)}: unreadable stats marker ({e}); `datagen verify` checks the run"
                ) from None
            when = timestamp(stats.get("committed"))
            for key in ("mtime", "LastModified", "last_modified", "updated", "created"):
                if when is None:
                    when = timestamp(listing[name].get(key))
            found.append(Shard(stem, stats["task"], stats, when))
        return found

    def uncommitted(self) -> list[str]:
        """Files in shards/ that belong to no committed shard: leftovers every reader ignores."""
        names = list(self._listing(self.shards))
        return uncommitted(names, committed_stems(names))

    @staticmethod
    def _listing(folder: Folder) -> dict[str, dict[str, Any]]:
        """A folder's file names -> what the filesystem says of them (modification times on object stores)."""
        if folder.local:
            return {name: {} for name in folder.names()}
        folder.fs.invalidate_cache(folder.path)
        try:
            entries = folder.fs.ls(folder.path, detail=True)
        except FileNotFoundError:
            return {}
        return {e["name"].rstrip("/").rsplit("/", 1)[-1]: e for e in entries if e.get("type") != "directory"}

    def failures(self, limit: int = 20) -> list[str]:
        """One line per shard recorded in OUT/failed/ (it failed after its retries; a rerun retries it)."""
        failed = self.folder.sub("failed")
        names = [n for n in failed.names() if n.endswith(".json")]
        lines = []
        for name in names[:limit]:
            shard = name[: -len(".json")]
            try:
                body = json.loads(failed.read_bytes(name))
                error = str(body.get("error") or "").strip().splitlines()
                last = error[-1] if error else "no error recorded"
                attempts = body.get("attempts", "?")
                lines.append(f"{shard}: failed {body.get('phase', '')} after {attempts} attempt(s): {last}")
            except (OSError, ValueError, AttributeError) as e:
                lines.append(f"{shard}: failed (its record is unreadable: {e})")
        if len(names) > limit:
            lines.append(f"… and {len(names) - limit} more failed shards in {failed}/")
        return lines

    # ------------------------------------------------------------------------------------------------- manifests

    def manifest(self, shard: str, columns: tuple[str, ...] | None = None) -> pa.Table:
        """A shard's manifest: the `columns` it has (older manifests may lack newer scores), or all of them."""
        name = f"{shard}.parquet"
        try:
            manifest = parquet_file(self.shards, name)
            present = set(manifest.schema_arrow.names)
            missing = [c for c in ROW_COLUMNS if c not in present]
            if missing:
                raise ValueError(f"not a datagen manifest: no column {', '.join(missing)}")
            wanted = None if columns is None else [c for c in columns if c in present]
            return manifest.read(columns=wanted, use_threads=False)
        except (OSError, ValueError, pa.ArrowException) as e:
            raise ConfigError(
                f"{self.shards.url(name)}: unreadable parquet manifest ({e}); `datagen verify` checks the run"
            ) from None

    def rows(self, task: str | None = None, status: str | None = None, columns=None) -> Iterator[dict[str, Any]]:
        """Manifest rows of the committed shards in shard order (one shard in memory at a time), optionally of
        one task and one status; each row also names its shard (`shard_name`). None while nothing is committed.
        `columns` limits what is read; the status is read too where the rows are chosen by it."""
        if status is not None and columns is not None and "status" not in columns:
            columns = [*columns, "status"]
        for shard in self.committed(task, required=False):
            for row in self.manifest(shard.name, columns).to_pylist():
                if status is None or row.get("status") == status:
                    yield {"shard_name": shard.name, **row}

    # --------------------------------------------------------------------------------------------------- samples

    def members(self, shard: str, rejected: bool = False) -> Iterator[tuple[str, tarfile.TarFile, tarfile.TarInfo]]:
        """A shard's tar members (or its rejected tar's) as they stream past (name, tar, member), for readers that
        want a few and stop; only regular files with safe names of the form key.field."""
        name = f"{shard}.rejected.tar" if rejected else f"{shard}.tar"
        with self.shards.open(name) as f, tarfile.open(fileobj=f, mode="r|") as tar:
            for member in tar:
                if member.isfile() and safe_member_name(member.name) and MEMBER_RE.fullmatch(member.name):
                    yield member.name, tar, member

    def samples(self, shard: Shard) -> Iterator[Sample]:
        """The samples of one committed tar in order, streamed one at a time; ConfigError for anything unreadable.

        The count and sha256 are checked against the stats after the last sample, so a caller that publishes only
        after the loop never publishes a damaged shard."""
        name = f"{shard.name}.tar"
        want = _sample_members(shard.image_format)
        count = 0
        for key, members in self._grouped(name, shard.stats.get("tar") or {}):
            yield _sample(self.shards.url(name), key, members, want)
            count += 1
        if count != shard.kept:
            raise ConfigError(f"{self.shards.url(name)}: {count} samples in the tar, its stats say kept={shard.kept}")

    def rejected(self, shard: Shard) -> Iterator[Candidate]:
        """The rendered candidates a shard did not keep, from its rejected tar, in order (a sample's candidates one
        after another), streamed a sample at a time and checked like `samples`: count and sha256 against the stats.
        ConfigError if the shard was rendered without pipeline.keep_rejected."""
        digest = shard.stats.get("rejected_tar")
        if not digest:
            raise ConfigError(
                f"{self.shards.url(shard.name + STATS)}: shard {shard.name} kept no rejected candidates (the run was "
                f"made without pipeline.keep_rejected); render a run with --set pipeline.keep_rejected=true"
            )
        name = f"{shard.name}.rejected.tar"
        where = self.shards.url(name)
        want = {f"input.{shard.image_format}", f"output.{shard.image_format}", "mask.png", "json"}
        count = 0
        for key, members in self._grouped(name, digest):
            candidates: dict[int, dict[str, tuple[str, bytes]]] = {}
            for field, member in members.items():
                match = REJECTED_FIELD_RE.fullmatch(field)
                if not match:
                    raise ConfigError(f"{where}: member {member[0]!r} is not named key.c<candidate>.field")
                candidates.setdefault(int(match["candidate"]), {})[match["member"]] = member
            for number, fields in candidates.items():
                yield _candidate(where, key, number, fields, want)
                count += 1
        if count != digest.get("candidates"):
            raise ConfigError(f"{where}: {count} candidates in the tar, its stats say {digest.get('candidates')}")

    def _grouped(self, name: str, digest: dict[str, Any]) -> Iterator[tuple[str, dict[str, tuple[str, bytes]]]]:
        """A committed tar's members grouped by key (field -> (member name, bytes)), streamed a key at a time; its
        sha256 checked against `digest` after the last key; ConfigError for anything unreadable."""
        where = self.shards.url(name)
        seen: set[str] = set()
        try:
            with self.shards.open(name) as raw:
                stream = _HashingReader(raw)
                with tarfile.open(fileobj=stream, mode="r|") as tar:
                    key, members = None, {}
                    for member in tar:
                        match = MEMBER_RE.match(member.name)
                        if not member.isfile() or not safe_member_name(member.name) or not match:
                            raise ConfigError(f"{where}: member {member.name!r} is not a regular file named key.field")
                        if match["key"] != key:
                            if key is not None:
                                yield key, members
                            key, members = match["key"], {}
                            if key in seen:
                                raise ConfigError(f"{where}: members of {key} are not contiguous")
                            seen.add(key)
                        members[match["field"]] = (member.name, tar.extractfile(member).read())
                    if key is not None:
                        yield key, members
                while stream.read(1 << 20):  # the tar's end padding, for the checksum
                    pass
        except (tarfile.TarError, OSError, EOFError) as e:
            raise ConfigError(f"{where}: unreadable shard ({e!r}); check the run with: datagen verify OUT") from None
        sha = digest.get("sha256")
        if sha and stream.sha.hexdigest() != sha:
            raise ConfigError(f"{where}: sha256 differs from its stats (a damaged or replaced tar)")

    def tar_urls(self) -> list[str]:
        """The committed shards' tars as URLs (or paths) for readers of their own, such as WebDataset."""
        return committed_tars(self.shards, self.shards.names())


class _HashingReader:
    """Read-through file that hashes what passes, so a streamed tar can be checked against its stats."""

    def __init__(self, f):
        self.f, self.sha = f, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.f.read(size)
        self.sha.update(data)
        return data


def _sample_members(image_format: str) -> set[str]:
    """The fields of a kept sample's members (MEMBERS, the images with the shard's codec)."""
    return {f"input.{image_format}", f"output.{image_format}", "mask.png", "json", "txt"}


def _sample(where: str, key: str, members: dict[str, tuple[str, bytes]], want: set[str]) -> Sample:
    if set(members) != want:
        raise ConfigError(f"{where}: {key} has members {sorted(members)}, expected {sorted(want)}")
    try:
        meta_text = members["json"][1].decode()
        meta = json.loads(meta_text)
        instruction = members["txt"][1].decode()
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{where}: {key}: unreadable json or txt member ({e})") from None
    if not isinstance(meta, dict):
        raise ConfigError(f"{where}: {key}: its json member is not an object (datagen/record.py: the json fields)")
    images = {field.split(".")[0]: member for field, member in members.items() if field.split(".")[0] in IMAGES}
    return Sample(key, images, meta, meta_text, instruction)


def _candidate(where: str, key: str, number: int, members: dict[str, tuple[str, bytes]], want: set[str]) -> Candidate:
    if set(members) != want:
        raise ConfigError(f"{where}: {key} candidate {number} has members {sorted(members)}, expected {sorted(want)}")
    try:
        meta = json.loads(members["json"][1].decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{where}: {key} candidate {number}: unreadable json member ({e})") from None
    images = {field.split(".")[0]: member for field, member in members.items() if field.split(".")[0] in IMAGES}
    return Candidate(key, number, images, meta)


# ------------------------------------------------------------------------------ tars named on a command line


def read_samples(entries: list[str], flag: str = "--shards") -> Iterator[Sample]:
    """The samples of the runs and tars named on a command line, in order, each checked and decoded the one way: a
    run folder's committed shards through RunFolder.samples (checked against their stats), any other tar (a file, a
    folder of tars, an fsspec or `pipe:` URL: `tar_urls`) as WebDataset streams it, through `decode_sample`."""
    import webdataset as wds

    for entry in entries:
        run = None if entry.startswith("pipe:") or entry.endswith(".tar") else RunFolder(entry)
        shards = run.committed(required=False) if run is not None else []
        if run is not None and shards:
            for shard in shards:
                yield from run.samples(shard)
        else:
            for raw in wds.WebDataset(tar_urls([entry], flag), shardshuffle=False, empty_check=False):
                yield decode_sample(raw)


def decode_sample(raw: Mapping[str, Any]) -> Sample:
    """One sample as WebDataset streams it (`__key__`, `__url__`, then its members' bytes by field), checked and
    decoded as RunFolder.samples decodes a committed shard's: for readers with a pipeline of their own (the trainer's
    resampled, shuffled stream). ConfigError if it is not a whole datagen sample."""
    key = str(raw.get("__key__", ""))
    members = {field: (f"{key}.{field}", data) for field, data in raw.items() if not field.startswith("__")}
    image_format = next((field.split(".", 1)[1] for field in members if field.startswith("input.")), "png")
    return _sample(str(raw.get("__url__", "a tar")), key, members, _sample_members(image_format))
