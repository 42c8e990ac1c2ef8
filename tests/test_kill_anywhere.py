"""Kill anywhere, resume exactly: SIGKILL the driver at 24 points spread over one run (more, up to 36, until at
least 3 fell in the write phase and 8 in the render) — while instructions are written, while images render, while a
shard commits — resume after each, and end byte-identical to a run that was never interrupted. After every kill:
no half-written shard visible, no key in two shards, counts consistent."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import DATAGEN, FAST, REPO, committed_checksums, run_cli

from datagen.shards import verify

ARGS = ["--task", "remove", "--n", "240", "--shard-size", "6", "--workers", "0", "--no-progress", *FAST]
KILLS = 24
MORE_KILLS = 12
"""Kills past the 24, while fewer than 3 have landed in the write phase or 8 in the render phase: how the 24 split
between the phases depends on the machine's speed (a slower one spends more of them writing)."""


def _listing(out: Path) -> frozenset[str]:
    names = set()
    for sub in ("texts", "shards"):
        folder = out / sub
        if folder.is_dir():
            names.update(f"{sub}/{n}" for n in os.listdir(folder))
    return frozenset(names)


def _check_invariants(out: Path) -> int:
    """What a reader may see after a kill is always whole: returns the committed render shards."""
    verdict = verify(out)
    visible = [p for p in verdict.problems if "nothing was rendered here" not in p]
    assert visible == [], f"a kill left a visible broken shard: {visible}"
    keys: dict[str, str] = {}
    for stats in (out / "shards").glob("*.stats.json") if (out / "shards").is_dir() else []:
        stem = stats.name[: -len(".stats.json")]
        table = pq.read_table(out / "shards" / f"{stem}.parquet", columns=["key", "status"]).to_pylist()
        for row in table:
            if row["status"] == "kept":
                assert row["key"] not in keys, f"{row['key']} in {stem} and {keys[row['key']]}"
                assert row["key"].startswith(stem.replace("-", "_") + "_"), f"{row['key']} in {stem}"
                keys[row["key"]] = stem
    return verdict.shards


@pytest.mark.slow
def test_sigkill_at_24_points_then_resume_is_exact(tmp_path):
    reference = tmp_path / "reference"
    run_cli("generate", "--out", str(reference), *ARGS)
    expected = committed_checksums(reference, texts=True)
    assert len([n for n in expected if not n.startswith("texts/")]) == 40

    out = tmp_path / "run"
    rng = random.Random(7)
    phases = []
    kill = 0
    while kill < KILLS or (kill < KILLS + MORE_KILLS and (phases.count("write") < 3 or phases.count("render") < 8)):
        before = _listing(out)
        proc = subprocess.Popen(
            [*DATAGEN, "generate", "--out", str(out), *(ARGS if kill == 0 else ARGS[-3:-2])],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            # wait until this process is at work (its files change), then let it go a little further
            deadline = time.monotonic() + 60
            while _listing(out) == before and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.002)
            time.sleep(0.0 if kill < 3 else rng.uniform(0.0, 0.25))  # the first kills land in the write phase
            assert proc.poll() is None, f"kill {kill}: the run finished before it was killed; make it longer"
            now = _listing(out)
            phases.append("render" if any(n.startswith("shards/") for n in now) else "write")
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
        _check_invariants(out)
        kill += 1
    assert phases.count("write") >= 3 and phases.count("render") >= 8, phases

    proc = run_cli("generate", "--out", str(out), "--no-progress", "--workers", "0")
    assert "FAILED" not in proc.stdout
    assert _check_invariants(out) == 40
    assert committed_checksums(out, texts=True) == expected, "byte-identical to the uninterrupted run"
    assert verify(out).uncommitted == [], "the last resume cleared every leftover"
