"""End to end: the CLI, Ray, resume after SIGKILL, failure policy and bad inputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import DATAGEN, FAST, REPO, committed_checksums, run_cli, run_inline
from pydantic_core import PydanticUndefined

from datagen.shards import verify

ARGS = ["--task", "remove", "--n", "120", "--shard-size", "12", *FAST]


def _keys(out: Path) -> list[str]:
    rows = pq.read_table(sorted((out / "shards").glob("*.parquet")), columns=["key", "status"]).to_pylist()
    return sorted(r["key"] for r in rows if r["status"] == "kept")


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted inline run."""
    out = tmp_path_factory.mktemp("reference")
    run_cli("generate", "--out", str(out), "--workers", "0", "--no-progress", *ARGS)
    return out


def test_generate_cli_summary_and_verify(reference):
    assert len(committed_checksums(reference)) == 10
    proc = run_cli("verify", str(reference))
    assert "10 committed shards" in proc.stdout and proc.stdout.strip().endswith("OK")
    assert len(_keys(reference)) == int(proc.stdout.split("shards, ")[1].split(" samples")[0])


def test_ray_run_is_byte_identical_to_the_inline_run(reference, tmp_path, ray_cluster):
    proc = run_cli("generate", "--out", str(tmp_path), "--no-progress", *ARGS, env={"RAY_ADDRESS": ray_cluster})
    assert "10/10 shards done" in proc.stdout and "kept of 120 attempted" in proc.stdout
    assert "rejected by reason:" in proc.stdout and "samples/s" in proc.stdout
    assert committed_checksums(tmp_path) == committed_checksums(reference)


@pytest.mark.parametrize("ahead", [0, 5])
def test_prefetching_inputs_changes_nothing_in_the_shards(reference, tmp_path, ahead):
    """The reference loads one sample ahead (the default); none ahead and five ahead commit the same bytes."""
    set_prefetch = ["--set", f"pipeline.actor.prefetch={ahead}"]
    run_cli("generate", "--out", str(tmp_path), "--workers", "0", "--no-progress", *ARGS, *set_prefetch)
    assert committed_checksums(tmp_path) == committed_checksums(reference)


def test_prefetched_keeps_order_and_raises_each_error_at_its_own_item():
    from datagen.render import prefetched

    def load(n: int) -> int:
        if n % 3 == 0:
            raise ValueError(f"bad {n}")
        return n * n

    for ahead in (0, 1, 4):
        seen = []
        for item, result in prefetched(iter(range(10)), load, ahead):
            try:
                seen.append((item, result()))
            except ValueError as e:
                seen.append((item, str(e)))
        assert seen == [(n, f"bad {n}" if n % 3 == 0 else n * n) for n in range(10)], ahead


@pytest.mark.parametrize("kill_when", ["while_writing_a_tar", "between_shards", "during_instructions"])
def test_sigkill_then_resume_gives_exactly_the_uninterrupted_keys(reference, tmp_path, kill_when):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [*DATAGEN, "generate", "--out", str(out), "--workers", "0", "--no-progress", *ARGS],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            shards = out / "shards"
            names = os.listdir(shards) if shards.is_dir() else []
            texts = os.listdir(out / "texts") if (out / "texts").is_dir() else []
            if (
                kill_when == "while_writing_a_tar"
                and sum(n.endswith(".stats.json") for n in names) >= 2
                and any(n.startswith(".") and ".tar." in n for n in names)
            ):
                break
            if kill_when == "between_shards" and sum(n.endswith(".stats.json") for n in names) >= 4:
                break
            if kill_when == "during_instructions" and any(n.endswith(".jsonl") for n in texts):
                break
            time.sleep(0.002)
        assert proc.poll() is None, "the run finished before it could be killed; make it longer"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    before = verify(out)
    visible = [p for p in before.problems if "nothing was rendered here" not in p]
    assert visible == [], "a killed run never leaves a visible half-written shard"
    if kill_when == "while_writing_a_tar":
        assert any(n.endswith(".tmp") for n in before.uncommitted)
    assert len(committed_checksums(out)) < 10
    run_inline("generate", "--out", str(out), "--no-progress", "--workers", "0")  # resume from run.json alone
    after = verify(out)
    assert after.problems == [] and after.uncommitted == []
    assert committed_checksums(out) == committed_checksums(reference)
    assert _keys(out) == _keys(reference)


def test_resume_refuses_a_different_configuration(reference, tmp_path):
    out = tmp_path / "run"
    run_inline("write", "--out", str(out), "--workers", "0", "--no-progress", *ARGS)
    proc = run_inline("generate", "--out", str(out), "--workers", "0", "--seed", "5", *ARGS, check=False)
    assert proc.returncode == 2
    assert "different configuration" in proc.stderr and "run.seed: 0 -> 5" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_run_stored_before_a_field_existed_resumes(reference, tmp_path):
    """run.json of an older version lacks fields added since (here keep_rejected and a filter's reason): they take
    their defaults, and the run resumes instead of being refused as a different configuration."""
    out = tmp_path / "run"
    run_inline("write", "--out", str(out), "--workers", "0", "--no-progress", *ARGS)
    record = json.loads((out / "run.json").read_text())
    for run in record["runs"].values():
        del run["config"]["pipeline"]["keep_rejected"]
        for spec in run["config"]["task"]["filters"].values():
            del spec["reason"]
    (out / "run.json").write_text(json.dumps(record))
    run_inline("render", "--out", str(out), "--workers", "0", "--no-progress")
    assert committed_checksums(out) == committed_checksums(reference)


def test_write_then_render_phases(reference, tmp_path):
    out = tmp_path / "run"
    proc = run_inline("render", "--out", str(out), "--workers", "0", *ARGS, check=False)
    assert proc.returncode == 1 and "not written yet" in proc.stdout  # each shard fails clearly; nothing rendered
    shutil_rmtree(out)
    run_inline("write", "--out", str(out), "--workers", "0", "--no-progress", *ARGS)
    assert len(list((out / "texts").glob("*.stats.json"))) == 10 and not (out / "shards").exists()
    lines = (out / "texts" / "remove-000003.jsonl").read_text().splitlines()
    assert len(lines) == 12 and all(json.loads(line)["status"] == "ok" for line in lines)
    run_inline("render", "--out", str(out), "--workers", "0", "--no-progress")
    assert committed_checksums(out) == committed_checksums(reference)


def shutil_rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def test_failing_shard_is_retried_recorded_and_rerun(reference, tmp_path):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(reference, out)
    for name in ("remove-000004.tar", "remove-000004.parquet", "remove-000004.stats.json"):
        (out / "shards" / name).unlink()
    (out / "texts" / "remove-000004.jsonl").write_text("{not json\n")  # committed marker, damaged content
    proc = run_inline("render", "--out", str(out), "--workers", "0", "--no-progress", check=False)
    assert proc.returncode == 1
    assert "FAILED shards: 1" in proc.stdout and "000004: JSONDecodeError" in proc.stdout
    failure = json.loads((out / "failed" / "remove-000004.json").read_text())
    assert failure["attempts"] == 3 and "Traceback" in failure["traceback"]
    assert verify(out).problems == [] and len(committed_checksums(out)) == 9
    (out / "texts" / "remove-000004.stats.json").unlink()  # the operator discards the damaged instructions
    run_inline("generate", "--out", str(out), "--workers", "0", "--no-progress")
    assert not (out / "failed" / "remove-000004.json").exists()
    assert committed_checksums(out) == committed_checksums(reference)


def test_cli_errors_are_one_readable_message(tmp_path):
    proc = run_inline("generate", "--task", "nope", "--out", str(tmp_path), check=False)
    assert proc.returncode == 2
    assert "unknown task 'nope'; known tasks: add, background, backtrack, color, " in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run_inline("generate", "--out", str(tmp_path / "empty"), check=False)
    assert proc.returncode == 2 and "--task is required" in proc.stderr
    for command in ("generate", "write", "render", "verify"):
        assert "usage: datagen" in run_inline(command, "--help").stdout


def test_resume_refuses_options_it_would_ignore_and_mixture_weights_are_checked(tmp_path):
    out = tmp_path / "r"
    run_inline("generate", "--task", "remove", "--n", "4", "--out", str(out), "--workers", "0", "--no-progress", *FAST)
    proc = run_inline("render", "--out", str(out), "--set", "filters.mask_area.min=0.3", check=False)
    assert proc.returncode == 2 and "--set given without --task: resuming" in proc.stderr
    proc = run_inline("generate", "--out", str(out), "--n", "10", check=False)
    assert proc.returncode == 2 and "--n given without --task" in proc.stderr
    for weights in ("remove:nan", "remove:inf", "remove:-1", "remove:x"):
        proc = run_inline("generate", "--tasks", weights, "--out", str(tmp_path / "m"), check=False)
        assert proc.returncode == 2 and "expected NAME[:WEIGHT]" in proc.stderr and "Traceback" not in proc.stderr


def test_run_and_curate_flags_are_their_specs_fields(tmp_path):
    """Each flag of generate/write/render and of curate is a spec field: its help is the field's docstring with its
    default, and a run given no flag gets the spec's defaults; the resume guard names whatever RUN_FLAGS flag was
    given."""
    import argparse

    from datagen.cli import build_parser, look_up
    from datagen.config import CurateSpec, RunSpec
    from datagen.curate import CURATE_FLAGS
    from datagen.errors import ConfigError
    from datagen.flags import flag_name
    from datagen.resolve import RUN_FLAGS, configs_from_flags, load_run

    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for command, spec, names in [(c, RunSpec, RUN_FLAGS) for c in ("generate", "write", "render")] + [
        ("curate", CurateSpec, CURATE_FLAGS)
    ]:
        parser = subparsers.choices[command]
        look_up(parser.pending_flags)(parser)  # the flags a command's parser adds when it first parses
        actions = {a.dest: a for a in parser._actions}
        for name in names:
            field = spec.model_fields[name]
            assert actions[name].option_strings == [flag_name(name)], (command, name)
            assert actions[name].help.startswith(field.description.replace("%", "%%")), (command, name)
            if not any(field.default is x for x in (None, False, PydanticUndefined)):
                assert f"(default: {field.default})" in actions[name].help, (command, name)
    run = load_run("color", out=str(tmp_path / "defaults")).run
    assert {name: getattr(run, name) for name in RUN_FLAGS if name != "source"} == {
        name: RunSpec.model_fields[name].default for name in RUN_FLAGS if name != "source"
    }
    args = build_parser().parse_args(["render", "--out", str(tmp_path), "--seed", "3", "--turns", "2", "--repeat"])
    with pytest.raises(ConfigError, match="^--seed, --repeat, --turns given without --task"):
        configs_from_flags(args)


def test_actors_that_need_gpus_the_cluster_lacks_stop_the_run_instead_of_waiting(tmp_path, ray_cluster):
    proc = run_cli(
        "generate", "--task", "remove", "--n", "2", "--out", str(tmp_path), "--no-progress",
        "--set", "pipeline.actor.num_gpus=1", *FAST, env={"RAY_ADDRESS": ray_cluster}, check=False, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "the render actors need 1.0 GPU(s) each and the Ray cluster has 0" in proc.stderr
