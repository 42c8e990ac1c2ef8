"""A full or read-only output location: the run stops with one clear message, nothing corrupt is committed, and the
rerun after space is freed finishes exactly what is missing. Runs on a real small filesystem (a tmpfs of a few
hundred KB mounted by the test), so it needs root; elsewhere it skips, saying so."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import FAST, committed_checksums, run_cli

from datagen.shards import verify

ARGS = ["--task", "remove", "--n", "96", "--shard-size", "12", "--workers", "0", "--no-progress", *FAST]


def _bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs at tmp_path/disk; yields a function that remounts it with other options."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")

    def remount(options: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{options}", str(disk)], check=True)

    try:
        yield disk, remount
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_full_then_read_only_disk_stops_cleanly_and_the_rerun_completes(tmp_path, small_disk):
    reference = tmp_path / "reference"
    run_cli("generate", "--out", str(reference), *ARGS)
    expected = committed_checksums(reference)
    assert len(expected) == 8

    disk, remount = small_disk
    remount(f"size={_bytes(reference) * 45 // 100}")  # room for the instructions and about a third of the shards
    out = disk / "run"
    proc = run_cli("generate", "--out", str(out), *ARGS, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "run stopped" in proc.stderr and "No space left on device" in proc.stderr
    assert "rerun the same command" in proc.stderr and "Traceback" not in proc.stderr
    partial = committed_checksums(out)
    assert 0 < len(partial) < 8 and all(expected[name] == sums for name, sums in partial.items())
    verdict = verify(out)
    assert verdict.problems == [], "no corrupt shard committed"
    assert not any(n.endswith(".tmp") for n in verdict.uncommitted), "temporaries of the failed shard are removed"

    remount("ro")
    proc = run_cli("generate", "--out", str(out), "--no-progress", "--workers", "0", check=False)
    assert proc.returncode == 1 and "Read-only file system" in proc.stderr and "Traceback" not in proc.stderr
    assert committed_checksums(out) == partial

    remount("rw,size=64m")
    proc = run_cli("generate", "--out", str(out), "--no-progress", "--workers", "0")
    assert f"({len(partial)} already committed)" in proc.stdout
    assert committed_checksums(out) == expected, "exactly what was missing, byte for byte"
    verdict = verify(out)
    assert verdict.problems == [] and verdict.uncommitted == []
