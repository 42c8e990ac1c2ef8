"""One live writer per OUT: a lease file, `OUT/.lease.json`, renewed by a heartbeat while a run writes there.

    with Lease.acquire(out) as lease:      # refuses (LeaseHeld) while another writer's heartbeat is fresh
        ...                                # workers get `lease.token`
        check_held(out, lease.token)       # in a worker, right before it writes a shard's commit marker

The file holds `{token, holder: {host, pid, command}, started, renewed, ttl}`; `started` and `renewed` are wall-clock
seconds (`time.time()`). A lease whose `renewed` is older than its `ttl` is stale: its writer was killed or hangs,
and the next `acquire` takes it over (`lease.took_over` then holds the record it replaced).

What this guarantees, and what not:

- Storage goes through `Folder`, so any fsspec URL works; but fsspec offers no atomic create-if-absent or
  compare-and-swap on object stores, so two acquirers can both see "no lease" and both write one. `acquire` narrows
  that window: after writing it waits `settle` seconds and reads the lease back; the last write wins and every
  acquirer that reads back someone else's token refuses. Two writers slip through only when one's read-to-write
  gap exceeds the settle time. Even then the earlier one finds the other's token at its next heartbeat, marks itself
  `lost`, and its workers' `still_held` turns False at once (they read the token before every commit).
- Ages compare the holder's clock with the reader's: hosts of one cluster must keep their clocks within a small
  part of the ttl (NTP does).
- A worker asks `still_held` right before writing a shard's marker. It answers True only while the heartbeat is
  younger than half the ttl, so nobody can take the lease over for at least another ttl/2 seconds (15 s at the
  default): the time the worker has to write the marker. A heartbeat beats every ttl/4, so a healthy holder's age
  stays below ttl/4 plus one write's latency, and a slow write has a quarter of the ttl before workers pause.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import secrets
import socket
import sys
import threading
import time
from typing import Any

from datagen.errors import RunStopped
from datagen.storage import Folder

LEASE_NAME = ".lease.json"
LOCK_NAME = ".lease.lock"
"""Local disks only: the advisory lock (flock) a writer holds while it checks and writes the lease."""
TTL = 30.0
"""Seconds without a heartbeat after which a lease is stale and taken over: a killed run's embedded Ray workers die
within seconds (issue 17), and a rerun waits at most this long."""

BEATS_PER_TTL = 4
"""Heartbeats per ttl: a beat may come a quarter ttl late before workers stop committing (see the module doc)."""


class LeaseHeld(RunStopped):
    """Another writer's lease on OUT is fresh. A RunStopped, not a ConfigError: nothing in the configuration is
    wrong, the run cannot start now, and the same command works once the other writer is done or has gone stale."""


class LeaseLost(RunStopped):
    """This writer's lease on OUT was taken over, or its heartbeat is late: a worker must not commit."""


def read_lease(out: str | Folder) -> dict[str, Any] | None:
    """OUT's lease record, or None when there is none (an unreadable one counts as none: it is taken over)."""
    folder = out if isinstance(out, Folder) else Folder(out)
    try:
        record = json.loads(folder.read_text(LEASE_NAME))
    except FileNotFoundError:
        return None
    except ValueError:  # not JSON: written by hand, or by something else; taking it over is the only way on
        return None
    return record if isinstance(record, dict) and "token" in record else None


def lease_age(record: dict[str, Any], now: float | None = None) -> float:
    """Seconds since the record's last heartbeat."""
    return (time.time() if now is None else now) - float(record.get("renewed", 0.0))


def is_stale(record: dict[str, Any], now: float | None = None) -> bool:
    """Its heartbeat is older than its ttl, or its holder ran on this host and its process is gone (a killed run
    is taken over at once by a rerun on the same machine; its Ray workers then fail `check_held`)."""
    return lease_age(record, now) >= float(record.get("ttl", TTL)) or _holder_gone(record)


def _holder_gone(record: dict[str, Any]) -> bool:
    holder = record.get("holder") or {}
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    try:
        os.kill(holder["pid"], 0)  # signal 0: does the process exist?
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists, as another user's
        return False
    return False


def _held(record: dict[str, Any] | None, token: str) -> bool:
    return record is not None and record["token"] == token and lease_age(record) < float(record["ttl"]) / 2


def still_held(out: str | Folder, token: str) -> bool:
    """Whether OUT's lease is still `token`'s and its heartbeat younger than half its ttl: one small read. A worker
    calls this right before writing a shard's commit marker; False means its driver was killed or replaced."""
    return _held(read_lease(out), token)


def check_held(out: str | Folder, token: str) -> None:
    """Raise LeaseLost, saying why, unless `still_held(out, token)`."""
    record = read_lease(out)
    if _held(record, token):
        return
    if record is None or record["token"] == token:
        why = "its lease is gone" if record is None else f"its heartbeat is {lease_age(record):.1f} s old"
        raise LeaseLost(f"{out}: this run no longer holds the writer's lease ({why}); its shard is not committed")
    raise LeaseLost(f"{out}: another datagen took over the writer's lease ({describe(record)}); not committing")


def describe(record: dict[str, Any], now: float | None = None) -> str:
    """`host h, pid 12, 'datagen generate ...', heartbeat 3.2 s old` for messages."""
    holder = record.get("holder") or {}
    return (
        f"host {holder.get('host', '?')}, pid {holder.get('pid', '?')}, {holder.get('command', '?')!r}, "
        f"heartbeat {lease_age(record, now):.1f} s old"
    )


def _utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


@contextlib.contextmanager
def _local_lock(folder: Folder):
    """On a local disk, an exclusive advisory lock (flock, released by the kernel if the process dies) held while a
    writer checks and writes the lease; object stores have no such lock, see the module docstring."""
    if not folder.local:
        yield
        return
    folder.makedirs()
    with open(folder.at(LOCK_NAME), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _settle(seconds: float) -> None:
    """The pause between writing a lease and reading it back (a test replaces it to stage a competing write)."""
    time.sleep(seconds)


class Lease:
    """This process's lease on OUT; see the module doc. Use `acquire`, then `release` (or a `with` block)."""

    def __init__(self, folder: Folder, token: str, holder: dict[str, Any], ttl: float, started: float):
        self.folder, self.token, self.holder, self.ttl, self.started = folder, token, holder, ttl, started
        self.renewed = started
        self.took_over: dict[str, Any] | None = None
        """The stale lease this one replaced, if any (its holder and last heartbeat): worth a log line."""
        self.lost = False
        """Set by the heartbeat when OUT's lease is no longer this one: another writer took it over."""
        self.released = False
        self.error: BaseException | None = None
        """The last error of a heartbeat write; the heartbeat goes on trying."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def acquire(
        cls,
        out: str | Folder,
        holder: str | None = None,
        ttl: float = TTL,
        heartbeat: bool = True,
        settle: float | None = None,
    ) -> Lease:
        """Take OUT's lease, or raise LeaseHeld naming its live holder. `holder` describes this writer (default: the
        command line); `settle` is the pause before the read-back (default: none on a local disk, where an advisory
        lock makes the check and the write one step; ttl/10, at most 1 s, on an object store)."""
        folder = out if isinstance(out, Folder) else Folder(out)
        command = holder if holder is not None else " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]])
        who = {"host": socket.gethostname(), "pid": os.getpid(), "command": command}
        try:
            with _local_lock(folder):
                previous = read_lease(folder)
                now = time.time()
                if previous is not None and not is_stale(previous, now):
                    raise LeaseHeld(_held_message(folder, previous, now))
                lease = cls(folder, secrets.token_hex(16), who, float(ttl), now)
                lease._write()
            if settle is None:  # on a local disk the lock above made check-and-write atomic: nothing to wait for
                settle = 0.0 if folder.local else min(1.0, ttl / 10)
            _settle(settle)
            confirmed = read_lease(folder)
        except (OSError, ValueError) as e:  # a missing bucket, no permission, a full disk
            raise RunStopped(
                f"{folder}: cannot write the writer's lease {LEASE_NAME} there ({type(e).__name__}: {e})"
            ) from None
        if confirmed is None or confirmed["token"] != lease.token:
            if confirmed is None:
                raise LeaseHeld(f"{folder}: the writer's lease vanished right after this run took it: rerun")
            raise LeaseHeld(_held_message(folder, confirmed, time.time(), race=True))
        lease.took_over = previous
        if heartbeat:
            lease._thread = threading.Thread(target=lease._beat, name="datagen-lease", daemon=True)
            lease._thread.start()
        return lease

    def record(self) -> dict[str, Any]:
        return {
            "token": self.token,
            "holder": self.holder,
            "started": self.started,
            "renewed": self.renewed,
            "ttl": self.ttl,
        }

    def _write(self) -> None:
        self.folder.write_atomic(LEASE_NAME, json.dumps(self.record(), indent=1).encode())

    def renew(self) -> bool:
        """One heartbeat: read the lease, and write a fresh `renewed` if it is still ours; returns whether it is
        (otherwise `lost` is set and it is never written again). A read-then-write: another writer can land between
        the two only if this lease was stale, i.e. this process stalled for a whole ttl."""
        if self.lost or self.released:
            return False
        record = read_lease(self.folder)
        if record is None or record["token"] != self.token:
            self.lost = True
            return False
        self.renewed = time.time()
        self._write()
        return True

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl / BEATS_PER_TTL):
            try:
                if not self.renew():
                    return
                self.error = None
            except Exception as e:  # a transient storage error: workers stop committing if it lasts ttl/2
                self.error = e

    def check(self) -> None:
        """Raise LeaseLost when the heartbeat found another writer's lease in OUT (for the driver, between shards)."""
        if self.lost:
            raise LeaseLost(
                f"{self.folder}: another datagen took over the writer's lease on OUT while this run wrote there "
                f"(this run's heartbeat last wrote at {_utc(self.renewed)}); stopping so that one writer remains"
            )

    def release(self) -> None:
        """Stop the heartbeat and remove the lease file if it is still ours."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self._thread = None
        if self.lost or self.released:
            return
        self.released = True
        record = read_lease(self.folder)
        if record is not None and record["token"] == self.token:
            self.folder.remove(LEASE_NAME)

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _held_message(folder: Folder, record: dict[str, Any], now: float, race: bool = False) -> str:
    ttl = float(record.get("ttl", TTL))
    wait = math.ceil(max(0.0, ttl - lease_age(record, now)))
    since = "took its lease at the same moment" if race else f"writes there since {_utc(record.get('started', 0))}"
    return (
        f"{folder}: another datagen {since} ({describe(record, now)}). Wait for it to finish; if it was killed, "
        f"rerun: its lease is taken over once its process is gone from this host, or its heartbeat is older than "
        f"{ttl:g} s (in {wait} s). "
        f"Lease file: {folder.url(LEASE_NAME)}"
    )
