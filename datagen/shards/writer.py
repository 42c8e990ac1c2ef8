"""The shard writer: kept samples streamed into a tar that appears whole on commit, and the parquet manifest.

Tar members are framed exactly as `tarfile` frames them (USTAR, fixed metadata), so the same samples make a
byte-identical tar; the manifest holds every candidate, kept or not (MANIFEST_SCHEMA). With pipeline.keep_rejected
a second tar (RejectedTarWriter) holds the images of the rendered candidates that were not kept.
"""

from __future__ import annotations

import json
import tarfile
from typing import Any

import pyarrow as pa

from datagen.images import encode
from datagen.record import KEY_RE, EditRecord
from datagen.shards.layout import MANIFEST_SCHEMA, TAR_MTIME, to_parquet
from datagen.storage import Folder

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


class RejectedTarWriter(TarShardWriter):
    """Streams the rendered candidates that were not kept (rejected or outranked) into `{shard}.rejected.tar`: one
    call of `add_members` per candidate, its members `key.c{n}.input.ext`, `.c{n}.output.ext`, `.c{n}.mask.png`
    and `.c{n}.json`, so a sample's candidates lie next to each other under its key."""

    def __init__(self, folder: Folder, name: str, image_format: str, quality: int, png_compression: int):
        super().__init__(folder, name, image_format, quality, png_compression)
        self.candidates = 0

    def encode(self, record: EditRecord) -> dict[str, bytes]:
        """A candidate's members: its images as the kept tar stores them; its json adds its number and verdict
        (`EditRecord.candidate_fields()`)."""
        members = super().encode(record)
        members["json"] = json.dumps(record.candidate_fields(), sort_keys=True, ensure_ascii=False).encode()
        del members["txt"]
        return {f"c{record.candidate}.{suffix}": data for suffix, data in members.items()}

    def add_members(self, key: str, members: dict[str, bytes]) -> None:
        repeated = bool(self.keys) and self.keys[-1] == key
        super().add_members(key, members)
        if repeated:  # another candidate of the same sample: its key counts once
            self.keys.pop()
        self.candidates += 1

    def commit(self) -> dict[str, Any]:
        return {**super().commit(), "candidates": self.candidates}


def manifest_bytes(records: list[EditRecord]) -> bytes:
    table = pa.Table.from_pylist([r.manifest_row() for r in records], schema=MANIFEST_SCHEMA)
    return to_parquet(table)
