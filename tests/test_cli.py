"""The command line's look for people and for log collectors: `datagen show`, JSON progress lines, clear errors."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from conftest import FAST, run_cli

ARGS = ["--task", "remove", "--n", "24", "--shard-size", "8", "--workers", "0", *FAST]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    proc = run_cli("generate", "--out", str(out), *ARGS, env={"DATAGEN_LOG_EVERY": "0"})
    return out, proc


def test_progress_is_json_lines_when_stderr_is_not_a_terminal(run):
    _, proc = run
    events = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    steps = {(e["step"], e["event"]) for e in events}
    assert ("remove write", "done") in steps and ("remove render", "done") in steps
    render = [e for e in events if e["step"] == "remove render"]
    assert [e["done"] for e in render] == [1, 2, 3, 3], "every shard (interval 0), then the end"
    assert render[-1]["total"] == 3 and render[-1]["samples"] == 24 and 0 < render[-1]["kept"] <= 24
    assert all(e["time"].endswith("Z") for e in events)


def test_no_progress_silences_the_log_lines(run, tmp_path):
    proc = run_cli("generate", "--out", str(tmp_path), *ARGS, "--no-progress")
    assert not any(line.startswith("{") for line in proc.stderr.splitlines())


def test_show_prints_the_first_samples_with_scores_and_where_they_are(run):
    out, _ = run
    rows = pq.read_table(sorted((out / "shards").glob("*.parquet"))).to_pylist()
    kept = [r for r in rows if r["status"] == "kept"]
    proc = run_cli("show", str(out), "--n", "3")
    for row in kept[:3]:
        assert row["key"] in proc.stdout and row["instruction"] in proc.stdout
    assert kept[3]["key"] not in proc.stdout
    assert f"{out}/shards/remove-000000.tar" in proc.stdout and "mask_area" in proc.stdout

    lines = run_cli("show", str(out), "--n", "100", "--status", "rejected", "--json").stdout.splitlines()
    shown = [json.loads(line) for line in lines]
    assert [s["key"] for s in shown] == [r["key"] for r in rows if r["status"] == "rejected"][:100]
    assert all(s["reason"] and s["tar"] == "not stored (not kept)" for s in shown)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--task", "color"], "no committed kept color samples"),
        (["--n", "0"], "--n 0"),
    ],
)
def test_show_errors_say_what_is_wrong(run, args, message):
    out, _ = run
    proc = run_cli("show", str(out), *args, check=False)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_show_on_a_folder_with_no_run(tmp_path):
    proc = run_cli("show", str(tmp_path / "nothing"), check=False)
    assert proc.returncode == 2 and "no committed kept samples" in proc.stderr
