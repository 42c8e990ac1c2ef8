"""Run folders on any filesystem: a local path, or an fsspec URL (`s3://bucket/run`, `gs://...`, `memory://...`).

The commit protocol (docs/output-format.md, **Commit protocol**) needs one guarantee from storage: a
file appears under its final name whole or not at all. Locally that is a hidden temporary, flushed, fsynced and renamed
(then the folder fsynced). Object stores have no rename but publish an object only when its upload completes (one PUT,
or a multipart upload completed on close), so there a file is spooled to a local temporary and uploaded whole under
its final name on commit; an upload that fails is retried (`retrying`: throttling, a reset connection) and one that
never completes publishes nothing. Either way the `.stats.json` marker is written last, so a shard whose marker
exists is complete, and one without it is redone. Every call to a store (listing, reading, committing) is retried
with jittered back-off while it fails with a transient error (`retrying`), within RETRY_SECONDS.

Credentials and endpoints come from the filesystem's own configuration: for S3 the usual `AWS_*` variables or
`~/.aws` (`AWS_ENDPOINT_URL` for a MinIO or other S3-compatible server).
"""

from __future__ import annotations

import collections
import contextlib
import errno
import hashlib
import inspect
import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO

import fsspec
from fsspec.implementations.local import LocalFileSystem

from datagen.errors import ConfigError


def is_url(location: str | Path) -> bool:
    return "://" in str(location)


RETRY_SECONDS = float(os.environ.get("DATAGEN_STORAGE_RETRY_SECONDS", "300"))
"""How long one object-store call is retried, all its attempts together, before its error stands: long enough to
ride out a store's throttling burst (S3 asks clients to back off and retry on 503 SlowDown), short enough that a
store that is down stops the shard, which the runner then retries and records."""
RETRY_FIRST, RETRY_CAP = 0.05, 10.0
"""Back-off: the wait before attempt k is uniform in [0, min(RETRY_CAP, RETRY_FIRST * 2**k)] seconds ("full
jitter"), so that many workers throttled together do not come back together."""
TRANSIENT_CODES = frozenset(
    "SlowDown InternalError ServiceUnavailable RequestTimeout Throttling ThrottlingException TooManyRequests "
    "RequestLimitExceeded 500 502 503 504".split()
)
"""Error codes an object store answers when a request may succeed if sent again (botocore's `response`)."""
TRANSIENT_STATUS = {429, 500, 502, 503, 504}
TRANSIENT_ERRNOS = {
    errno.EBUSY,
    errno.ECONNRESET,
    errno.ECONNABORTED,
    errno.ETIMEDOUT,
    errno.EPIPE,
    getattr(errno, "EREMOTEIO", errno.EIO),
}
"""What s3fs makes of those answers (SlowDown and 503 -> EBUSY, 500 -> EREMOTEIO) and of a dropped connection."""
TRANSIENT_TYPES = frozenset(
    "ServerDisconnectedError ClientConnectionError ClientOSError ClientPayloadError EndpointConnectionError "
    "ConnectionClosedError ReadTimeoutError ConnectTimeoutError ResponseStreamingError IncompleteRead ProtocolError "
    "FSTimeoutError".split()
)
"""Exceptions of the HTTP stack (aiohttp, botocore, urllib3) that mean the connection failed, not the request."""


def transient(error: BaseException | None) -> bool:
    """Whether an object-store error (or what caused it) is worth retrying: throttling, a server error, a reset or
    dropped connection. A missing object or a refused permission is not."""
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)):
            return False
        if isinstance(error, (ConnectionError, TimeoutError)) or type(error).__name__ in TRANSIENT_TYPES:
            return True
        response = getattr(error, "response", None)
        if isinstance(response, dict):
            code = (response.get("Error") or {}).get("Code")
            status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
            if code in TRANSIENT_CODES or status in TRANSIENT_STATUS:
                return True
        if isinstance(error, OSError) and error.errno in TRANSIENT_ERRNOS:
            return True
        if "SlowDown" in str(error) or "reduce your request rate" in str(error):  # a throttled answer's bad XML
            return True
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False


def retrying(call, what: str, seconds: float | None = None):
    """`call()`, retried with jittered exponential back-off while it fails with a `transient` error, for at most
    `seconds` (RETRY_SECONDS) in all; then its last error stands."""
    import random
    import time

    deadline = time.monotonic() + (RETRY_SECONDS if seconds is None else seconds)
    attempt = 0
    while True:
        try:
            return call()
        except Exception as e:
            wait = random.uniform(0, min(RETRY_CAP, RETRY_FIRST * 2**attempt))
            if not transient(e) or time.monotonic() + wait > deadline:
                raise
            attempt += 1
            RETRIES[what] += 1
            time.sleep(wait)


RETRIES: collections.Counter[str] = collections.Counter()
"""Retries this process made, by what was retried (tests and `datagen bench` read it)."""


class Folder:
    """One folder of a run: list, read and atomically write its files, by name."""

    def __init__(self, location: str | Path):
        self.location = str(location).rstrip("/") or "/"
        try:
            self.fs, path = fsspec.core.url_to_fs(self.location)
        except (ImportError, ValueError) as e:  # an unknown scheme, or its package is not installed
            raise ConfigError(f"{self.location}: {e}") from None
        self.local = isinstance(self.fs, LocalFileSystem)
        self.path = path.rstrip("/") or "/"

    def __repr__(self) -> str:
        return f"Folder({self.location!r})"

    def __str__(self) -> str:
        return self.location

    def sub(self, name: str) -> Folder:
        return Folder(f"{self.location}/{name}")

    def at(self, name: str) -> str:
        """The filesystem path of a file in this folder."""
        return f"{self.path}/{name}"

    def url(self, name: str) -> str:
        """A file's location as the user gave the folder: a path, or a URL with its scheme."""
        return f"{self.location}/{name}"

    # ------------------------------------------------------------------------------------------- reading

    def names(self, prefix: str = "") -> list[str]:
        """The names of the files in this folder that start with `prefix`, sorted; empty when there is no folder.
        On stores that filter by prefix server-side (S3, GCS) a prefix lists only what matches: a shard's own
        files among a hundred thousand."""
        if self.local:
            if not self.is_dir():
                return []
            return sorted(n for n in os.listdir(self.path) if n.startswith(prefix) and os.path.isfile(self.at(n)))

        def listing() -> list[str]:
            self.fs.invalidate_cache(self.path)  # other workers write here: never trust a cached listing
            if prefix and "prefix" in inspect.signature(self.fs.find).parameters:
                return self.fs.find(self.path, maxdepth=1, prefix=prefix)
            return [e["name"] for e in self.fs.ls(self.path, detail=True) if e.get("type") == "file"]

        try:
            found = retrying(listing, "list")
        except FileNotFoundError:
            return []
        names = (p.rstrip("/").rsplit("/", 1)[-1] for p in found)
        return sorted(n for n in names if n.startswith(prefix))

    def iter_names(self, prefix: str = ""):
        """Like `names`, unsorted and streamed (a local folder of millions of files is never held in memory)."""
        if not self.local:
            yield from self.names(prefix)
            return
        try:
            with os.scandir(self.path) as entries:
                for entry in entries:
                    if entry.name.startswith(prefix) and entry.is_file():
                        yield entry.name
        except FileNotFoundError:
            return

    def is_dir(self) -> bool:
        if self.local:
            return os.path.isdir(self.path)
        return bool(self.names())  # object stores have no empty folders

    def exists(self, name: str) -> bool:
        if self.local:
            return os.path.isfile(self.at(name))

        def exists() -> bool:  # fs.isfile would answer False for a throttled request: info raises instead
            self.fs.invalidate_cache(self.path)
            return self.fs.info(self.at(name)).get("type") == "file"

        try:
            return retrying(exists, "exists")
        except FileNotFoundError:
            return False

    def size(self, name: str) -> int:
        return (
            os.path.getsize(self.at(name))
            if self.local
            else int(retrying(lambda: self.fs.size(self.at(name)), "size"))
        )

    def read_bytes(self, name: str) -> bytes:
        if self.local:
            return Path(self.at(name)).read_bytes()
        return retrying(lambda: self.fs.cat_file(self.at(name)), "read")

    def read_range(self, name: str, offset: int, size: int) -> bytes:
        """`size` bytes of a file from `offset` (fewer where it ends sooner): one ranged request on a store."""
        if self.local:
            with open(self.at(name), "rb") as f:
                f.seek(offset)
                return f.read(size)
        return retrying(lambda: self.fs.cat_file(self.at(name), start=offset, end=offset + size), "read")

    def read_text(self, name: str) -> str:
        return self.read_bytes(name).decode("utf-8")

    def open(self, name: str) -> IO[bytes]:
        """A seekable binary reader."""
        if self.local:
            return open(self.at(name), "rb")  # noqa: SIM115
        return retrying(lambda: self.fs.open(self.at(name), "rb"), "open")

    def sha256(self, name: str) -> str:
        sha = hashlib.sha256()
        with self.open(name) as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                sha.update(block)
        return sha.hexdigest()

    # ------------------------------------------------------------------------------------------- writing

    def makedirs(self) -> None:
        if self.local:
            os.makedirs(self.path, exist_ok=True)

    def remove(self, name: str) -> None:
        if self.local:
            Path(self.at(name)).unlink(missing_ok=True)
            return
        with contextlib.suppress(FileNotFoundError):
            retrying(lambda: self.fs.rm_file(self.at(name)), "remove")
        self.fs.invalidate_cache(self.path)

    def write_atomic(self, name: str, data: bytes) -> str:
        """Publish bytes under `name`, whole or not at all; returns their sha256."""
        with self.writer(name) as f:
            f.write(data)
        return hashlib.sha256(data).hexdigest()

    def writer(self, name: str) -> AtomicWriter:
        return AtomicWriter(self, name)


class AtomicWriter:
    """A binary file that appears under its final name on `commit()` (or a clean `with` exit), never before;
    `abort()` leaves nothing behind. Counts and hashes what passes."""

    CHUNK = 1 << 20
    """Writes are gathered into chunks of about this size; each chunk's pieces are hashed and written (gathered by
    `os.writev`, never joined into one copy) by two threads of their own, hashlib and file writes releasing the
    GIL, while the caller builds the next chunks: the sha256 costs no time on the critical path, and at most DEPTH
    chunks are held. After each chunk the kernel is asked to start writing it to disk, so that the commit's fsync
    waits for the last chunk only."""

    DEPTH = 4
    """Chunks the threads may hold at once, so that neither waits for the caller between two chunks (measured on
    `datagen bench writer`: 1 -> 0.13 s, 2 -> 0.12 s, 4 -> 0.113 s for a 198 MB shard whose sha256 alone takes
    0.107 s)."""

    IOV_MAX = 1024
    """The most buffers one `os.writev` call takes (POSIX guarantees at least 16; Linux allows 1024)."""

    def __init__(self, folder: Folder, name: str):
        self.folder, self.name = folder, name
        self.final = folder.at(name)
        self.sha, self.size = hashlib.sha256(), 0
        folder.makedirs()
        if folder.local:
            self.tmp = folder.at(f".{name}.{os.getpid()}.tmp")
        else:  # spooled here, then uploaded whole on commit: an upload can be retried, a stream cannot
            import tempfile

            handle, self.tmp = tempfile.mkstemp(prefix="datagen-upload-", suffix=f"-{name}")
            os.close(handle)
        self._f = open(self.tmp, "wb", buffering=0)  # noqa: SIM115 - chunks are already large
        self.closed = False
        self._uploading = False
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._written = 0  # bytes handed to the kernel; only the writing thread moves it
        self._threads: tuple[ThreadPoolExecutor, ThreadPoolExecutor] | None = None
        self._in_flight: collections.deque[tuple[Future, Future]] = collections.deque()

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        size = len(data)
        if not size:
            return 0
        self.size += size
        self._pending.append(data if type(data) is bytes else bytes(data))  # the caller may reuse its buffer
        self._pending_size += size
        if self._pending_size >= self.CHUNK:
            self._send()
        return size

    def _send(self, last: bool = False) -> None:
        """Hand the gathered pieces to the hashing and writing threads, after the previous chunk is done (whose
        error, a full disk say, surfaces here). A small file is hashed and written here: no threads for it."""
        if not self._pending:
            return
        pieces, self._pending, self._pending_size = self._pending, [], 0
        self._wait(keep=0 if last else self.DEPTH - 1)
        if last and self._threads is None:
            self._hash_all(pieces)
            self._write_all(pieces)
            return
        if self._threads is None:
            self._threads = (ThreadPoolExecutor(1, "datagen-sha"), ThreadPoolExecutor(1, "datagen-write"))
        hashing, writing = self._threads
        self._in_flight.append((hashing.submit(self._hash_all, pieces), writing.submit(self._write_all, pieces)))

    def _hash_all(self, pieces: list[bytes]) -> None:
        update = self.sha.update
        for piece in pieces:
            update(piece)

    def _write_all(self, pieces: list[bytes]) -> None:
        fd, start = self._f.fileno(), self._written
        views = [memoryview(piece) for piece in pieces]
        while views:
            batch = views[: self.IOV_MAX]
            written = os.writev(fd, batch)
            self._written += written
            if written == sum(len(v) for v in batch):
                del views[: len(batch)]
                continue
            done = 0  # a partial write: drop what went out, then go on from inside the buffer it stopped in
            while written >= len(views[done]):
                written -= len(views[done])
                done += 1
            views[done] = views[done][written:]
            del views[:done]
        if hasattr(os, "posix_fadvise"):  # Linux starts the range's writeback, and drops its pages once clean
            with contextlib.suppress(OSError):  # a hint: a filesystem that refuses it loses nothing
                os.posix_fadvise(fd, start, self._written - start, os.POSIX_FADV_DONTNEED)

    def _wait(self, keep: int = 0) -> None:
        """Until at most `keep` chunks are still being hashed or written; the first error among the rest is raised."""
        while len(self._in_flight) > keep:
            for future in self._in_flight.popleft():
                future.result()

    def _stop_threads(self) -> None:
        if self._threads is not None:
            for pool in self._threads:
                pool.shutdown(wait=True, cancel_futures=True)
            self._threads = None

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:  # parts are flushed on commit; tarfile calls this
        pass

    def commit(self) -> str:
        """Publish the file; returns its sha256. On failure the caller aborts."""
        self._send(last=True)
        self._wait()
        self._stop_threads()
        if self.folder.local:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()
            os.replace(self.tmp, self.final)
            fd = os.open(self.folder.path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        else:  # the object appears when its upload completes, whole; a failed attempt publishes nothing
            self._f.close()
            self._uploading = True
            retrying(lambda: self.folder.fs.put_file(self.tmp, self.final), "commit")
            Path(self.tmp).unlink(missing_ok=True)
            self.folder.fs.invalidate_cache(self.folder.path)
        self.closed = True
        return self.sha.hexdigest()

    def abort(self) -> None:
        """Drop what was written: the local temporary, or the unfinished upload."""
        if self.closed:
            return
        self.closed = True
        self._pending = []
        with contextlib.suppress(Exception):  # the error that brought us here may be the last chunk's
            self._wait()
        self._stop_threads()
        with contextlib.suppress(OSError):  # closing flushes its buffer, which fails again on a full disk
            self._f.close()
        Path(self.tmp).unlink(missing_ok=True)
        if self._uploading:  # an attempt the store finished but whose answer was lost: take it back
            with contextlib.suppress(Exception):
                self.folder.remove(self.name)

    def __enter__(self) -> AtomicWriter:
        return self

    def __exit__(self, kind, value, tb) -> None:
        if kind is not None:
            self.abort()
            return
        try:
            self.commit()
        except BaseException:  # a full disk often shows only at the flush
            self.abort()
            raise
