"""The errors every part of datagen raises. Imports nothing of datagen, so any module may import it."""

from __future__ import annotations


class ConfigError(Exception):
    """A configuration problem, reported before any work starts, in words a user can act on."""


class RunStopped(Exception):
    """The run cannot go on (OUT is full, read-only or forbidden); committed shards are kept, a rerun resumes."""


class Reject(Exception):
    """One sample cannot become a pair: it is recorded as rejected with `reason` (a short code counted in the
    stats) and `detail`, and the shard goes on. Anything else a sample raises is recorded as status 'error'."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class OutOfMemory(Exception):
    """A model ran out of (GPU) memory on a batch; the render halves the micro-batch and tries again."""


def is_out_of_memory(error: BaseException) -> bool:
    """torch's CUDA (or other accelerator) out-of-memory error, recognised without importing torch."""
    return isinstance(error, OutOfMemory) or type(error).__name__ == "OutOfMemoryError"
