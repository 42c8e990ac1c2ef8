"""WebDataset tar shards: each tar indexed once in one pass over its headers, each sample's members read in place
by offset, never extracted."""

from __future__ import annotations

import bisect
import contextlib
import itertools
import os
import re
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from datagen import images
from datagen.errors import ConfigError
from datagen.sources.base import (
    IMAGE_SUFFIXES,
    MAX_SIDECAR_BYTES,
    BadSource,
    InputSpec,
    LoadedInput,
    SourceItem,
    inside_folder,
    load_sidecar,
    object_names,
    parquet_captions,
)
from datagen.storage import Folder, is_url, retrying, transient

MAX_TEXT_BYTES = 1 << 20
"""A caption or annotation member larger than this is a broken sample, not text worth reading."""


WDS_NAME = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")
"""WebDataset's split of a member name into key (up to the base name's first dot) and extension."""
WDS_META = re.compile(r"__[^/]*__($|/)")
"""WebDataset skips members named like this (shard metadata)."""
SHARDS_INPUT = InputSpec(
    arg="DIR or FILE.tar",
    allowed='WebDataset .tar (or .tar.gz, .tgz) shards: KEY.jpg (or .png, ...) with KEY.txt or KEY.json {"caption": '
    '"...", "objects": [...]}',
    folder=True,
    suffixes=(".tar", ".tar.gz", ".tgz"),
    empty=f"no samples with an image member ({' '.join(IMAGE_SUFFIXES)}) in any .tar file",
)
"""What --input is for --source shards."""


@dataclass
class _TarIndex:
    rel: str
    """Path of the tar relative to the input folder."""
    keys: list[str]
    """Keys of the samples that have an image, in tar order; "" last for a tar with a `bad` part."""
    members: dict[str, dict[str, tuple[int, int]]]
    """Key -> extension -> (data offset, size) in the tar file (for a gzip-compressed tar, in its decompressed
    copy, `local`)."""
    bad: tuple[str, str] | None = None
    """(reason, detail) of what of this tar cannot be read — all of it (`shard_unreadable`: not a tar;
    `path_outside_input`: a symbolic link out of the folder) or its cut-off end (`shard_truncated`) — which stands
    for one sample, its key "", rejected with that reason."""
    local: str | None = None
    """For a gzip-compressed tar: the local file its decompressed copy is in, read by offset like a plain tar."""


GZIP_MAGIC = b"\x1f\x8b"
GZIP_SUFFIXES = (".tar.gz", ".tgz")
TAR_SUFFIXES = (".tar", *GZIP_SUFFIXES)
"""What a shard may be named: WebDataset reads gzip-compressed tars as well as plain ones."""
_DECOMPRESSED: dict[str, str] = {}
"""Where this process keeps each gzip-compressed tar decompressed (a temporary folder removed at exit): its members
are read by offset, which a gzip stream cannot do."""


def _scratch() -> str:
    import atexit
    import shutil
    import tempfile

    if "" not in _DECOMPRESSED:
        _DECOMPRESSED[""] = tempfile.mkdtemp(prefix="datagen-tgz-")
        atexit.register(shutil.rmtree, _DECOMPRESSED[""], True)
    return _DECOMPRESSED[""]


def _decompress(f, url: str) -> tuple[str, str]:
    """The gzip stream `f` decompressed into a local file: (its path, '' or why the stream ended early). As much as
    the stream holds is decompressed, so that a cut-off .tar.gz keeps the samples before the cut."""
    import zlib

    if url in _DECOMPRESSED:
        return _DECOMPRESSED[url], ""
    path = os.path.join(_scratch(), f"{len(_DECOMPRESSED):06d}.tar")
    stream, cut = zlib.decompressobj(16 + zlib.MAX_WBITS), ""
    with open(path, "wb") as out:
        try:
            while chunk := f.read(1 << 20):
                while chunk:
                    out.write(stream.decompress(chunk))
                    chunk = stream.unused_data  # a stream of several gzip members (concatenated files)
                    if chunk:
                        stream = zlib.decompressobj(16 + zlib.MAX_WBITS)
            if not stream.eof:
                cut = "the gzip stream ends early"
        except zlib.error as e:
            out.write(stream.flush())
            cut = f"the gzip stream is corrupt ({e})"
    if not cut:
        _DECOMPRESSED[url] = path
    return path, cut


def _index_tar(root: Path | Folder, rel: str) -> _TarIndex:
    """One pass over the tar's headers: where each sample's members lie (a local tar, or one in an object store).
    A file that is not a tar is one bad entry (`shard_unreadable`); a tar cut short (a writer killed mid-shard)
    keeps the samples complete before the cut, and the rest is one bad entry (`shard_truncated`)."""
    url = root.url(rel) if isinstance(root, Folder) else str(root / rel)
    members: dict[str, dict[str, tuple[int, int]]] = {}
    local, cut, last = None, "", None
    try:
        with root.open(rel) if isinstance(root, Folder) else open(root / rel, "rb") as f:
            if f.read(2) == GZIP_MAGIC:
                f.seek(0)
                local, cut = _decompress(f, url)
            else:
                f.seek(0)
            with open(local, "rb") if local else contextlib.nullcontext(f) as tar_file:
                size = tar_file.seek(0, os.SEEK_END)
                tar_file.seek(0)
                try:
                    with tarfile.open(fileobj=tar_file, mode="r:") as tar:
                        for info in tar:
                            last = info
                            match = WDS_NAME.match(info.name)
                            if not info.isreg() or info.issparse() or not match or WDS_META.match(info.name):
                                continue
                            key, ext = match.group(1), match.group(2).lower()
                            members.setdefault(key, {}).setdefault(ext, (info.offset_data, info.size))
                        end = tar.offset
                except tarfile.ReadError as e:
                    if last is None:
                        raise
                    cut, end = cut or str(e), size
    except (OSError, tarfile.TarError, EOFError) as e:
        if transient(e):  # the store's fault, not the file's: `retrying` reads it again
            raise
        detail = f"{rel}: not a readable tar ({type(e).__name__}: {e})"
        return _TarIndex(rel, [""], {}, bad=("shard_unreadable", detail))
    if not cut and end + 2 * tarfile.BLOCKSIZE > size:  # every tar writer ends with two zero blocks
        cut = "no end-of-archive marker"
    complete = {key: exts for key, exts in members.items() if all(at + n <= size for at, n in exts.values())}
    if cut and complete and last is not None:  # the last sample read may have had members after the cut
        complete.pop(WDS_NAME.match(last.name).group(1) if WDS_NAME.match(last.name) else "", None)
    keys = [key for key, exts in complete.items() if _image_ext(exts)]
    index = _TarIndex(rel, keys, {key: complete[key] for key in keys}, local=local)
    if cut:
        lost = len(members) - len(complete)
        detail = f"{rel} is cut short ({cut}): {len(keys)} samples read before the cut, {lost} lost"
        index.keys.append("")
        index.bad = ("shard_truncated", detail)
    return index


def remote_tars(input: str) -> tuple[Folder, list[str]]:
    """(the folder, the tars' names in it) of a URL --input: one .tar, a WebDataset brace pattern
    (`s3://bucket/laion/{00000..00099}.tar`, every name in one folder) or a folder (every .tar in it, sorted)."""
    from braceexpand import braceexpand

    urls = list(braceexpand(input)) if "{" in input else [input]
    if len(urls) > 1 or input.lower().endswith(TAR_SUFFIXES):
        parents = {url.rsplit("/", 1)[0] for url in urls}
        if len(parents) > 1:
            raise ConfigError(
                f"--input {input}: a pattern's tars must lie in one folder, not {', '.join(sorted(parents))}"
            )
        store = Folder(parents.pop())
        names = [url.rsplit("/", 1)[1] for url in urls]
        missing = [name for name in names if not store.exists(name)]
        if missing:
            shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
            raise ConfigError(f"--input {input}: no such tar in {store}: {shown}")
        return store, names
    store = Folder(input)
    return store, [name for name in store.names() if name.lower().endswith(TAR_SUFFIXES)]


def _image_ext(exts: dict[str, tuple[int, int]]) -> str | None:
    return next((suffix[1:] for suffix in IMAGE_SUFFIXES if suffix[1:] in exts), None)


class ShardSource:
    """WebDataset tar shards (a folder of .tar files, sorted by path, or one .tar): members grouped by key, each
    sample an image (KEY.jpg, KEY.png, ...) with a caption in KEY.txt or KEY.json {"caption": ..., "objects": [names
    or {"name": ...}]}. The tars are indexed once; members are read in place by offset, never extracted. Each image
    is fitted to the bucket (`size`: (width, height) buckets, or an int for one square) nearest its aspect ratio."""

    kind: ClassVar[str] = "shards"
    summary: ClassVar[str] = "WebDataset tars (.tar, .tar.gz), local or on an object store"
    photos: ClassVar[bool] = True
    text_only: ClassVar[bool] = False
    urls: ClassVar[bool] = True
    curates: ClassVar[bool] = True
    caption_where: ClassVar[str] = "a .txt member, or .json with a caption, in its tar sample"
    fills: ClassVar[tuple[str, ...]] = ("caption", "objects")
    input: ClassVar[InputSpec | None] = SHARDS_INPUT

    def __init__(self, input: str, size: int | Sequence[tuple[int, int]]):
        self.store: Folder | None = None
        """Where the tars are when --input is a URL (s3://, gs://, ...): read through fsspec."""
        self.listed: list[str] | None = None
        if is_url(input):
            self.store, self.listed = remote_tars(input)
            self.root, self.single = Path("."), None
        else:
            path = Path(input)
            self.root = path if path.is_dir() else path.parent
            self.single = None if path.is_dir() else path.name
        self.buckets = images.bucket_list(size)
        self._tars: dict[str, _TarIndex] | None = None
        self._order: list[_TarIndex] = []
        self._starts: list[int] = []
        self._captions: dict[str, dict[str, str]] = {}
        """Each tar's parquet sidecar captions, read when a sample has no caption of its own."""

    @classmethod
    def from_input(cls, input: str | None, size: int | Sequence[tuple[int, int]]) -> ShardSource:
        return cls(str(input), size)

    @property
    def tars(self) -> dict[str, _TarIndex]:
        """Relative tar path -> its index, in sorted path order."""
        if self._tars is None:
            self._order = [self._index(rel) for rel in self._tar_paths()]
            self._starts = [0, *itertools.accumulate(len(tar.keys) for tar in self._order)][:-1]
            self._tars = {tar.rel: tar for tar in self._order}
        return self._tars

    def _index(self, rel: str) -> _TarIndex:
        if self.store is not None:
            return retrying(lambda: _index_tar(self.store, rel), "index")
        if self.single is None:  # a tar named by --input itself is the user's choice, wherever it lies
            try:
                inside_folder(self.root, rel, "tar")
            except BadSource as e:
                return _TarIndex(rel, [""], {}, bad=(e.reason, e.detail))
        return _index_tar(self.root, rel)

    def _tar_paths(self) -> list[str]:
        if self.listed is not None:
            return self.listed
        if self.single is not None:
            return [self.single]
        found = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames.sort()
            for name in sorted(filenames):
                if name.lower().endswith(TAR_SUFFIXES):
                    found.append(os.path.relpath(os.path.join(dirpath, name), self.root))
        return found

    def __len__(self) -> int:
        return sum(len(tar.keys) for tar in self.tars.values())

    def ref(self, seed: int, index: int) -> dict[str, Any]:
        position = index % len(self)
        number = bisect.bisect_right(self._starts, position) - 1
        tar = self._order[number]
        return {"kind": self.kind, "tar": tar.rel, "key": tar.keys[position - self._starts[number]]}

    def _sample(self, ref: dict[str, Any]) -> dict[str, tuple[int, int]]:
        tar = self.tars.get(str(ref["tar"]))
        if tar is not None and tar.bad and ref["key"] == "":
            raise BadSource(*tar.bad)
        exts = tar.members.get(str(ref["key"])) if tar else None
        if exts is None:
            raise BadSource("missing_sample", f"{ref['tar']}: no sample with key {ref['key']!r}")
        return exts

    def unreadable(self) -> list[tuple[str, str, str]]:
        """(tar, reason, detail) of every tar that cannot be read whole: not a tar, cut short, outside the folder."""
        return [(tar.rel, *tar.bad) for tar in self.tars.values() if tar.bad]

    def _read(self, ref: dict[str, Any], ext: str, offset: int, size: int) -> bytes:
        local = self.tars[str(ref["tar"])].local
        try:
            if local or self.store is None:
                with open(local or self.root / str(ref["tar"]), "rb") as f:
                    f.seek(offset)
                    data = f.read(size)
            else:
                data = self.store.read_range(str(ref["tar"]), offset, size)
        except OSError as e:
            raise BadSource("unreadable", f"{ref['tar']}: {ref['key']}.{ext}: {e}") from None
        if len(data) != size:
            raise BadSource("unreadable", f"{ref['tar']}: {ref['key']}.{ext} is cut short (the tar changed?)")
        return data

    def _text(self, ref: dict[str, Any], exts: dict[str, tuple[int, int]], ext: str) -> str:
        offset, size = exts[ext]
        if size > MAX_TEXT_BYTES:
            raise BadSource("bad_annotation", f"{ref['key']}.{ext} is {size} bytes, over {MAX_TEXT_BYTES}")
        try:
            return self._read(ref, ext, offset, size).decode("utf-8")
        except UnicodeDecodeError as e:
            raise BadSource("bad_annotation", f"{ref['key']}.{ext}: not UTF-8 ({e.reason})") from None

    def _meta(self, ref: dict[str, Any], exts: dict[str, tuple[int, int]]) -> dict[str, Any]:
        if "json" not in exts:
            return {}
        offset, size = exts["json"]
        if size > MAX_SIDECAR_BYTES:
            raise BadSource("bad_annotation", f"{ref['key']}.json is {size} bytes, over {MAX_SIDECAR_BYTES}")
        return load_sidecar(self._read(ref, "json", offset, size), f"{ref['key']}.json")

    def item(self, ref: dict[str, Any]) -> SourceItem:
        exts = self._sample(ref)
        meta = self._meta(ref, exts)
        caption = self._text(ref, exts, "txt") if "txt" in exts else meta.get("caption")
        if caption is None:  # img2dataset's parquet beside its tar holds every key's caption
            caption = self._parquet_captions(str(ref["tar"])).get(str(ref["key"]), "")
        if not isinstance(caption, str):
            raise BadSource("bad_annotation", f"caption must be a string, got {type(caption).__name__}")
        return SourceItem(ref=ref, caption=caption.strip(), objects=object_names(meta.get("objects")))

    def _parquet_captions(self, tar: str) -> dict[str, str]:
        """NAME.parquet beside NAME.tar (img2dataset writes one per shard): key -> caption; {} without one."""
        if tar not in self._captions:
            suffix = next((s for s in TAR_SUFFIXES[::-1] if tar.lower().endswith(s)), "")
            name = f"{tar[: len(tar) - len(suffix)]}.parquet"
            found = {}
            if self.store is not None:
                if self.store.exists(name):
                    found = parquet_captions(self.store.read_bytes(name), name)
            elif (self.root / name).is_file():
                found = parquet_captions(inside_folder(self.root, name, "parquet sidecar").read_bytes(), name)
            self._captions[tar] = found
        return self._captions[tar]

    def original(self, ref: dict[str, Any], max_pixels: int) -> np.ndarray:
        """The sample's image as stored, decoded (no larger than max_pixels), before it is fitted to a bucket: what
        the curate phase measures."""
        exts = self._sample(ref)
        ext = _image_ext(exts)
        offset, size = exts[ext]
        return images.decode_image(self._read(ref, ext, offset, size), max_pixels)

    def load(self, ref: dict[str, Any], max_pixels: int) -> LoadedInput:
        image = self.original(ref, max_pixels)
        height, width = image.shape[:2]
        return LoadedInput(image=images.fit_to_bucket(image, images.nearest_bucket(width, height, self.buckets)))
