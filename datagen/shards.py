"""Shard files: atomic tar + parquet writer, the stats commit marker, resume bookkeeping and `verify`.

Commit protocol: tar and parquet are written under hidden temporary names, flushed, fsynced and renamed; the
`.stats.json` marker is written the same way, last. A shard without its marker is not done: resume deletes its
leftovers and redoes it; readers and `verify` ignore it.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from datagen.images import encode
from datagen.record import KEY_RE, EditRecord
from datagen.scores import SCORES
from datagen.storage import Folder

MEMBERS = ("input", "output", "mask", "json", "txt")
"""Every sample of every task carries exactly these members (the image ones with the pipeline's codec)."""

MANIFEST_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("task", pa.string()),
        ("shard", pa.int32()),
        ("index", pa.int32()),
        ("candidate", pa.int16()),
        ("selected", pa.bool_()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("seed", pa.int64()),
        ("source", pa.string()),
        ("input_caption", pa.string()),
        ("instruction", pa.string()),
        ("output_caption", pa.string()),
        ("objects", pa.list_(pa.string())),
        ("params", pa.string()),
        ("boxes", pa.string()),
        ("models", pa.string()),
    ]
    + [(f"score_{name}", pa.float64()) for name in SCORES]
)

TAR_MTIME = 0  # fixed member metadata: same samples -> byte-identical tar


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
    def parquet(self) -> str:
        return f"{self.name}.parquet"

    @property
    def jsonl(self) -> str:
        return f"{self.name}.jsonl"

    @property
    def stats(self) -> str:
        return f"{self.name}.stats.json"

    def leftovers(self) -> list[str]:
        """Files of this shard other than a committed marker: finals of an unfinished commit and temporaries."""
        return self.folder.names(f"{self.name}.") + self.folder.names(f".{self.name}.")


def shard_paths(out: str | Folder, phase: str, task: str, shard: int) -> ShardPaths:
    run = out if isinstance(out, Folder) else Folder(out)
    return ShardPaths(run.sub("texts" if phase == "write" else "shards"), shard_name(task, shard))


def is_committed(paths: ShardPaths) -> bool:
    return paths.folder.exists(paths.stats)


def read_stats(paths: ShardPaths) -> dict[str, Any]:
    return json.loads(paths.folder.read_text(paths.stats))


def clear_uncommitted(paths: ShardPaths) -> list[str]:
    """Delete the leftovers of an uncommitted shard; returns the names removed."""
    if is_committed(paths):
        return []
    removed = paths.leftovers()
    for name in removed:
        paths.folder.remove(name)
    return removed


_HEAD = b"0000644\x00" + b"0000000\x00" * 2  # mode, uid, gid
_TAIL = b"0" + tarfile.NUL * 100 + b"ustar\x0000" + tarfile.NUL * 247
"""typeflag (a regular file), no link, the USTAR magic and version, then NULs: empty user and group names, no
device numbers, no prefix, the header's padding."""


def ustar_header(name: str, size: int) -> bytes:
    """The 512-byte USTAR header tarfile writes for a regular file of `size` bytes (mode 644, owner 0, mtime
    TAR_MTIME, no names), built directly: a fifth of the time of TarInfo.tobuf, which stays the fallback for
    names a plain header cannot hold."""
    encoded = name.encode("ascii", "surrogateescape") if name.isascii() else b""
    if not encoded or len(encoded) > 100 or size >= 8**11:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = (
            size,
            TAR_MTIME,
            0o644,
            0,
            0,
            "",
            "",
        )
        return info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape")
    head = encoded.ljust(100, tarfile.NUL) + _HEAD + b"%011o\x00%011o\x00" % (size, TAR_MTIME)
    checksum = sum(head) + 8 * 32 + sum(_TAIL)  # the checksum field counts as eight spaces
    return head + b"%06o\x00 " % checksum + _TAIL


class TarShardWriter:
    """Streams kept samples into a tar that appears under its final name only on `commit()`."""

    def __init__(self, folder: Folder, name: str, image_format: str, quality: int, png_compression: int):
        self.name = name
        self.image_format, self.quality, self.png_compression = image_format, quality, png_compression
        self._file = folder.writer(name)
        self.keys: list[str] = []

    def _add(self, name: str, data: bytes) -> None:
        """One member, framed as tarfile frames it (a USTAR header, the data, NUL padding to 512 bytes), but
        written whole: tarfile would copy it through in 16 KiB pieces."""
        self._file.write(ustar_header(name, len(data)))
        self._file.write(data)
        if len(data) % tarfile.BLOCKSIZE:
            self._file.write(tarfile.NUL * (tarfile.BLOCKSIZE - len(data) % tarfile.BLOCKSIZE))

    def add(self, record: EditRecord) -> None:
        self.add_members(record.key, self.encode(record))

    def encode(self, record: EditRecord) -> dict[str, bytes]:
        """A record's members, suffix -> bytes: images in the shard's codec, the mask as PNG, json and txt."""
        fmt = self.image_format
        return {
            f"input.{fmt}": encode(record.input_image, fmt, self.quality, self.png_compression),
            f"output.{fmt}": encode(record.output_image, fmt, self.quality, self.png_compression),
            "mask.png": encode(record.mask, "png", png_compression=self.png_compression),
            "json": json.dumps(record.text_fields(), sort_keys=True, ensure_ascii=False).encode(),
            "txt": record.instruction.encode(),
        }

    def add_members(self, key: str, members: dict[str, bytes]) -> None:
        """One sample's encoded members, in order, under `key`."""
        if not KEY_RE.fullmatch(key):
            raise ValueError(f"sample key {key!r} is not of the form task_SSSSSS_JJJJJ")
        for suffix, data in members.items():
            self._add(f"{key}.{suffix}", data)
        self.keys.append(key)

    def commit(self) -> dict[str, Any]:
        end = self._file.size + 2 * tarfile.BLOCKSIZE  # two zero blocks, then zeros to a whole tar record
        self._file.write(tarfile.NUL * (2 * tarfile.BLOCKSIZE + (-end) % tarfile.RECORDSIZE))
        sha = self._file.commit()
        return {"name": self.name, "bytes": self._file.size, "sha256": sha, "samples": len(self.keys)}

    def abort(self) -> None:
        self._file.abort()


def manifest_bytes(records: list[EditRecord]) -> bytes:
    table = pa.Table.from_pylist([r.manifest_row() for r in records], schema=MANIFEST_SCHEMA)
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


# -------------------------------------------------------------------------------------------- verify

MEMBER_RE = re.compile(r"^(?P<key>[a-z][a-z0-9_]*_\d{6}_\d{5})\.(?P<field>[a-z0-9.]+)$")


@dataclass
class Verdict:
    shards: int = 0
    samples: int = 0
    problems: list[str] = field(default_factory=list)
    uncommitted: list[str] = field(default_factory=list)


def safe_member_name(name: str) -> bool:
    return not (name.startswith("/") or "\\" in name or "/" in name or ".." in name.split("/") or name in ("", "."))


def verify_shard(folder: Folder, stats_name: str) -> tuple[int, list[str]]:
    """Check one committed shard; returns (kept samples, problems)."""
    problems: list[str] = []
    name = stats_name[: -len(".stats.json")]
    try:
        stats = json.loads(folder.read_text(stats_name))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        return 0, [f"{stats_name}: unreadable stats ({e})"]
    tar_name, parquet_name = f"{name}.tar", f"{name}.parquet"
    present = set(folder.names())
    for member, entry in ((tar_name, stats.get("tar", {})), (parquet_name, stats.get("parquet", {}))):
        if member not in present:
            problems.append(f"{member}: missing")
            continue
        size = folder.size(member)
        if size != entry.get("bytes"):
            problems.append(f"{member}: {size} bytes, stats say {entry.get('bytes')}")
        if folder.sha256(member) != entry.get("sha256"):
            problems.append(f"{member}: sha256 differs from the stats")
    if problems:
        return 0, problems

    image_members = {f"input.{stats['image_format']}", f"output.{stats['image_format']}", "mask.png", "json", "txt"}
    keys: list[str] = []
    fields: dict[str, set[str]] = {}
    try:
        with folder.open(tar_name) as f, tarfile.open(fileobj=f, mode="r|") as tar:
            for member in tar:
                if not member.isfile():
                    problems.append(f"{tar_name}: {member.name!r} is not a regular file")
                    continue
                if not safe_member_name(member.name):
                    problems.append(f"{tar_name}: unsafe member name {member.name!r}")
                    continue
                match = MEMBER_RE.fullmatch(member.name)
                if not match:
                    problems.append(f"{tar_name}: member {member.name!r} is not key.field")
                    continue
                key, suffix = match["key"], match["field"]
                if not keys or keys[-1] != key:
                    if key in fields:
                        problems.append(f"{tar_name}: members of {key} are not contiguous")
                    keys.append(key)
                    fields[key] = set()
                fields[key].add(suffix)
                data = tar.extractfile(member).read()
                if len(data) != member.size:
                    problems.append(f"{tar_name}: {member.name} truncated")
    except (tarfile.TarError, OSError, EOFError) as e:
        problems.append(f"{tar_name}: unreadable tar ({e})")
        return 0, problems
    for key, got in fields.items():
        if got != image_members:
            problems.append(f"{tar_name}: {key} has members {sorted(got)}, expected {sorted(image_members)}")
        if not key.startswith(f"{stats['task']}_{stats['shard']:06d}_"):
            problems.append(f"{tar_name}: key {key} does not belong to shard {name}")
    try:
        table = read_parquet(folder, parquet_name, ["key", "status"])
    except (OSError, pa.ArrowException) as e:
        problems.append(f"{parquet_name}: unreadable parquet ({e})")
        return len(fields), problems
    kept_rows = [k for k, s in zip(table["key"].to_pylist(), table["status"].to_pylist(), strict=True) if s == "kept"]
    counts = {
        "tar samples": len(fields),
        "stats kept": stats.get("kept"),
        "parquet kept rows": len(kept_rows),
    }
    if len(set(counts.values())) != 1:
        problems.append(f"{name}: counts disagree: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if table.num_rows != stats.get("candidates"):
        problems.append(f"{parquet_name}: {table.num_rows} rows, stats say {stats.get('candidates')} candidates")
    if sorted(kept_rows) != sorted(fields):
        problems.append(f"{name}: kept keys in the parquet differ from the keys in the tar")
    return len(fields), problems


def read_parquet(folder: Folder, name: str, columns=None) -> pa.Table:
    """A manifest, read whole into memory first and parsed on this thread (they are small). Arrow's reader threads
    still alive at interpreter exit abort the process ("terminate called without an active exception") in most
    short commands such as `datagen show`, so no datagen read of a parquet file uses them."""
    return pq.read_table(pa.BufferReader(folder.read_bytes(name)), columns=columns, use_threads=False)


def committed_names(folder: Folder) -> tuple[list[str], list[str]]:
    """(stems of committed shards, names of files belonging to no committed shard) in a shards/ folder."""
    names = folder.names()
    stems = sorted(n[: -len(".stats.json")] for n in names if n.endswith(".stats.json"))
    done = set(stems)
    return stems, [n for n in names if n.lstrip(".").split(".")[0] not in done]


def verify(out: str | Path) -> Verdict:
    """Check every committed shard under OUT/shards; list uncommitted leftovers (ignored, not errors)."""
    folder = Folder(out).sub("shards")
    verdict = Verdict()
    stems, verdict.uncommitted = committed_names(folder)
    if not stems and not verdict.uncommitted:
        verdict.problems.append(f"{folder}: no shards (nothing was rendered here)")
        return verdict
    for stem in stems:
        samples, problems = verify_shard(folder, f"{stem}.stats.json")
        verdict.shards += 1
        verdict.samples += samples
        verdict.problems.extend(problems)
    return verdict


def manifest_rows(out: str | Path, task: str | None = None, status: str | None = None, columns=None):
    """Rows of the committed shards' manifests in shard order (one shard in memory at a time), optionally of one
    task and one status; each row also names its shard."""
    folder = Folder(out).sub("shards")
    stems, _ = committed_names(folder)
    for stem in stems:
        if task and not stem.startswith(f"{task}-"):
            continue
        table = read_parquet(folder, f"{stem}.parquet", columns)
        for row in table.to_pylist():
            if status is None or row.get("status") == status:
                yield {"shard_name": stem, **row}
