"""Resume planning at cluster scale: a run folder with a million committed shards is planned in one streaming pass
and a bounded amount of memory (the time is measured by hand and kept in docs/benchmarks.md, not asserted)."""

from __future__ import annotations

import os
import shutil
import tracemalloc

import pytest

from datagen.resolve import load_run
from datagen.shards.run import pending_shards

SHARDS = 1_000_000
MISSING = {0, 123_456, 999_999}


@pytest.mark.slow
def test_planning_over_a_million_committed_shards(tmp_path):
    out = tmp_path / "run"
    folder = out / "shards"
    folder.mkdir(parents=True)
    try:
        for i in range(SHARDS):
            if i not in MISSING:
                os.close(os.open(folder / f"remove-{i:06d}.stats.json", os.O_CREAT | os.O_WRONLY, 0o644))
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
    finally:
        shutil.rmtree(out, ignore_errors=True)  # a million files must not outlive the test in pytest's tmp dirs
