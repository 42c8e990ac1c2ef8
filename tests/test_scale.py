"""Resume planning at cluster scale: a run folder with a million committed shards is planned in one streaming pass
and a bounded amount of memory (the time is measured by hand and kept in docs/benchmarks.md, not asserted).

The million markers are made on a tmpfs mounted for the test where it can mount one (as root), else in memory-backed
/dev/shm, else in the test's folder: seconds instead of the minute a disk takes to create and delete them. The
listing code is the same on any local folder."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
import tempfile
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from datagen.resolve import load_run
from datagen.shards.run import pending_shards

SHARDS = 1_000_000
MISSING = {0, 123_456, 999_999}


@contextlib.contextmanager
def _scratch(tmp_path: Path) -> Iterator[Path]:
    """A folder for a million small files, gone at the end (an unmount drops them at once)."""
    where = tmp_path / "scratch"
    where.mkdir()
    if os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,nr_inodes=2m", "tmpfs",
                                             str(where)], capture_output=True).returncode == 0:  # fmt: skip
        try:
            yield where
        finally:
            subprocess.run(["umount", "-l", str(where)], check=False)
        return
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        where = Path(tempfile.mkdtemp(prefix="datagen-scale-", dir=shm))
    try:
        yield where
    finally:
        shutil.rmtree(where, ignore_errors=True)  # a million files must not outlive the test


@pytest.mark.slow
def test_planning_over_a_million_committed_shards(tmp_path):
    with _scratch(tmp_path) as scratch:
        out = scratch / "run"
        folder = out / "shards"
        folder.mkdir(parents=True)
        fd = os.open(folder, os.O_RDONLY)
        try:
            for i in range(SHARDS):
                if i not in MISSING:
                    os.mknod(f"remove-{i:06d}.stats.json", 0o644 | stat.S_IFREG, dir_fd=fd)
        finally:
            os.close(fd)
        for name in ("remove-123456.tar", ".remove-000000.tar.77.tmp", "add-000000.stats.json",
                     "remove-12x456.stats.json", "remove-2000000.stats.json"):  # fmt: skip
            (folder / name).touch()  # leftovers, another task, junk, a shard past the run: none counts as done
        config = load_run("remove", "local", out=str(out), n=SHARDS, shard_size=1)
        assert config.run.num_shards == SHARDS
        tracemalloc.start()
        try:
            pending = pending_shards(config, "render")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert pending == sorted(MISSING)
        assert peak < 8 << 20, f"planning held {peak / 2**20:.1f} MiB: the listing must stream"
