"""Shard files: atomic tar + parquet writer, the stats commit marker, resume bookkeeping and `verify`.

Commit protocol: tar and parquet are written under hidden temporary names, flushed, fsynced and renamed; the
`.stats.json` marker is written the same way, last. A shard without its marker is not done: resume deletes its
leftovers and redoes it; readers and `verify` ignore it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from datagen.filters import SCORES
from datagen.images import encode
from datagen.record import KEY_RE, EditRecord

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
    root: Path
    name: str

    @property
    def tar(self) -> Path:
        return self.root / f"{self.name}.tar"

    @property
    def parquet(self) -> Path:
        return self.root / f"{self.name}.parquet"

    @property
    def jsonl(self) -> Path:
        return self.root / f"{self.name}.jsonl"

    @property
    def stats(self) -> Path:
        return self.root / f"{self.name}.stats.json"

    def leftovers(self) -> list[Path]:
        """Files of this shard other than a committed marker: finals of an unfinished commit and temporaries."""
        if not self.root.is_dir():
            return []
        prefix, hidden = f"{self.name}.", f".{self.name}."
        return sorted(self.root / n for n in os.listdir(self.root) if n.startswith(hidden) or n.startswith(prefix))


def shard_paths(out: str | Path, phase: str, task: str, shard: int) -> ShardPaths:
    return ShardPaths(Path(out) / ("texts" if phase == "write" else "shards"), shard_name(task, shard))


def is_committed(paths: ShardPaths) -> bool:
    return paths.stats.is_file()


def clear_uncommitted(paths: ShardPaths) -> list[Path]:
    """Delete the leftovers of an uncommitted shard; returns what was removed."""
    if is_committed(paths):
        return []
    removed = paths.leftovers()
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _HashingFile(io.RawIOBase):
    """Write-through file that hashes and counts what passes."""

    def __init__(self, f):
        self.f, self.sha, self.size = f, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.f.write(data)

    def tell(self) -> int:
        return self.size


def publish(tmp: Path, final: Path) -> None:
    os.replace(tmp, final)
    _fsync_dir(final.parent)


def write_atomic(path: Path, data: bytes) -> str:
    """Write bytes under a hidden temporary name, fsync, rename; returns the sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    publish(tmp, path)
    return hashlib.sha256(data).hexdigest()


class TarShardWriter:
    """Streams kept samples into a hidden temporary tar; `commit()` publishes it under its final name."""

    def __init__(self, final: Path, image_format: str, quality: int, png_compression: int):
        self.final = final
        self.tmp = final.parent / f".{final.name}.{os.getpid()}.tmp"
        self.image_format, self.quality, self.png_compression = image_format, quality, png_compression
        final.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.tmp, "wb")
        self._hashing = _HashingFile(self._file)
        self._tar = tarfile.open(fileobj=self._hashing, mode="w", format=tarfile.USTAR_FORMAT)
        self.keys: list[str] = []

    def _add(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = len(data), TAR_MTIME, 0o644
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        self._tar.addfile(info, io.BytesIO(data))

    def add(self, record: EditRecord) -> None:
        key = record.key
        if not KEY_RE.match(key):
            raise ValueError(f"sample key {key!r} is not of the form task_SSSSSS_JJJJJ")
        fmt = self.image_format
        members = {
            f"input.{fmt}": encode(record.input_image, fmt, self.quality, self.png_compression),
            f"output.{fmt}": encode(record.output_image, fmt, self.quality, self.png_compression),
            "mask.png": encode(record.mask, "png", png_compression=self.png_compression),
            "json": json.dumps(record.text_fields(), sort_keys=True, ensure_ascii=False).encode(),
            "txt": record.instruction.encode(),
        }
        for suffix, data in members.items():
            self._add(f"{key}.{suffix}", data)
        self.keys.append(key)

    def commit(self) -> dict[str, Any]:
        self._tar.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        publish(self.tmp, self.final)
        return {
            "name": self.final.name,
            "bytes": self._hashing.size,
            "sha256": self._hashing.sha.hexdigest(),
            "samples": len(self.keys),
        }

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        self.tmp.unlink(missing_ok=True)


def manifest_bytes(records: list[EditRecord]) -> bytes:
    table = pa.Table.from_pylist([r.manifest_row() for r in records], schema=MANIFEST_SCHEMA)
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def sha256_file(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


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


def verify_shard(stats_path: Path) -> tuple[int, list[str]]:
    """Check one committed shard; returns (kept samples, problems)."""
    problems: list[str] = []
    name = stats_path.name[: -len(".stats.json")]
    try:
        stats = json.loads(stats_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        return 0, [f"{stats_path.name}: unreadable stats ({e})"]
    root = stats_path.parent
    tar_path, parquet_path = root / f"{name}.tar", root / f"{name}.parquet"
    for path, entry in ((tar_path, stats.get("tar", {})), (parquet_path, stats.get("parquet", {}))):
        if not path.is_file():
            problems.append(f"{path.name}: missing")
            continue
        if path.stat().st_size != entry.get("bytes"):
            problems.append(f"{path.name}: {path.stat().st_size} bytes, stats say {entry.get('bytes')}")
        if sha256_file(path) != entry.get("sha256"):
            problems.append(f"{path.name}: sha256 differs from the stats")
    if problems:
        return 0, problems

    image_members = {f"input.{stats['image_format']}", f"output.{stats['image_format']}", "mask.png", "json", "txt"}
    keys: list[str] = []
    fields: dict[str, set[str]] = {}
    try:
        with tarfile.open(tar_path, "r:") as tar:
            for member in tar:
                if not member.isfile():
                    problems.append(f"{tar_path.name}: {member.name!r} is not a regular file")
                    continue
                if not safe_member_name(member.name):
                    problems.append(f"{tar_path.name}: unsafe member name {member.name!r}")
                    continue
                match = MEMBER_RE.match(member.name)
                if not match:
                    problems.append(f"{tar_path.name}: member {member.name!r} is not key.field")
                    continue
                key, suffix = match["key"], match["field"]
                if not keys or keys[-1] != key:
                    if key in fields:
                        problems.append(f"{tar_path.name}: members of {key} are not contiguous")
                    keys.append(key)
                    fields[key] = set()
                fields[key].add(suffix)
                data = tar.extractfile(member).read()
                if len(data) != member.size:
                    problems.append(f"{tar_path.name}: {member.name} truncated")
    except (tarfile.TarError, OSError, EOFError) as e:
        problems.append(f"{tar_path.name}: unreadable tar ({e})")
        return 0, problems
    for key, got in fields.items():
        if got != image_members:
            problems.append(f"{tar_path.name}: {key} has members {sorted(got)}, expected {sorted(image_members)}")
        if not key.startswith(f"{stats['task']}_{stats['shard']:06d}_"):
            problems.append(f"{tar_path.name}: key {key} does not belong to shard {name}")
    try:
        table = pq.read_table(parquet_path, columns=["key", "status"])
    except (OSError, pa.ArrowException) as e:
        problems.append(f"{parquet_path.name}: unreadable parquet ({e})")
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
        problems.append(f"{parquet_path.name}: {table.num_rows} rows, stats say {stats.get('candidates')} candidates")
    if sorted(kept_rows) != sorted(fields):
        problems.append(f"{name}: kept keys in the parquet differ from the keys in the tar")
    return len(fields), problems


def verify(out: str | Path) -> Verdict:
    """Check every committed shard under OUT/shards; list uncommitted leftovers (ignored, not errors)."""
    root = Path(out) / "shards"
    verdict = Verdict()
    if not root.is_dir():
        verdict.problems.append(f"{root}: no shards directory (nothing was rendered here)")
        return verdict
    names = os.listdir(root)
    committed = sorted(n for n in names if n.endswith(".stats.json"))
    committed_stems = {n[: -len(".stats.json")] for n in committed}
    for stats_name in committed:
        samples, problems = verify_shard(root / stats_name)
        verdict.shards += 1
        verdict.samples += samples
        verdict.problems.extend(problems)
    for n in sorted(names):
        stem = n.lstrip(".").split(".")[0]
        if stem not in committed_stems:
            verdict.uncommitted.append(n)
    return verdict
