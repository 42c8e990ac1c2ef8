"""Multi-turn sessions (`--turns`): chained edits of one input, each turn gated against its own input, whole sessions
kept (or their passing prefix), verified chain by chain, exported as MagicBrush and as sessions, resumed exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tarfile
import time
from collections import Counter
from pathlib import Path

import datasets
import pytest
from conftest import DATAGEN, FAST, REPO, committed_checksums, manifest_rows, run_cli, run_inline

from datagen.export import export
from datagen.shards import verify
from datagen.shards.verify import _verify_sessions

SESSIONS = ["--pipeline", "local", "--turns", "3", "--workers", "0", "--no-progress", *FAST]


@pytest.fixture(scope="module")
def sessions_run(tmp_path_factory) -> Path:
    """Every task the local pipeline can place in a 3-turn session, two sessions each, one shard per task."""
    out = tmp_path_factory.mktemp("sessions") / "run"
    run_inline("generate", "--task", "all", "--n", "24", "--shard-size", "2", "--out", str(out), *SESSIONS)
    return out


def _kept_members(out: Path) -> dict[str, dict[str, bytes]]:
    members: dict[str, dict[str, bytes]] = {}
    for path in sorted((out / "shards").glob("*.tar")):
        if path.name.endswith(".rejected.tar"):
            continue
        with tarfile.open(path) as tar:
            for member in tar:
                key, field = member.name.split(".", 1)
                members.setdefault(key, {})[field.split(".")[0]] = tar.extractfile(member).read()
    return members


def test_sessions_chain_turn_by_turn_and_are_kept_whole(sessions_run):
    """Every kept session has its three turns; turn k's input is turn k-1's output, byte for byte; the tasks stand
    where their task files and generators let them; a dropped session's kept turns say which turn failed."""
    assert verify(sessions_run).problems == []
    rows = manifest_rows(sessions_run)
    kept = [r for r in rows if r["status"] == "kept"]
    by_session: dict[str, dict[int, dict]] = {}
    for row in kept:
        by_session.setdefault(row["session"], {})[row["turn"]] = row
    assert len(by_session) >= 12, "most sessions are kept whole"
    assert all(sorted(turns) == [1, 2, 3] for turns in by_session.values()), "only whole sessions are kept"
    members = _kept_members(sessions_run)
    for session, turns in by_session.items():
        assert turns[1]["previous"] == "" and turns[1]["key"] == session.replace("_0", "_t1_0", 1)
        for turn in (2, 3):
            assert turns[turn]["previous"] == turns[turn - 1]["key"]
            assert members[turns[turn]["key"]]["input"] == members[turns[turn - 1]["key"]]["output"]
            assert json.loads(turns[turn]["source"]) == {"kind": "turn", "previous": turns[turn - 1]["key"]}
    tasks_at = {turn: {r["task"] for r in rows if r["turn"] == turn} for turn in (1, 2, 3)}
    assert "add" in tasks_at[1] and "add" not in tasks_at[2] | tasks_at[3], "add makes its own input: first only"
    first_only = {"background", "local", "texture"}  # re-rendered scenes on local
    assert first_only <= tasks_at[1] and not first_only & (tasks_at[2] | tasks_at[3])
    assert {"detect", "segment"} & tasks_at[3] and not {"detect", "segment"} & (tasks_at[1] | tasks_at[2])
    assert not {"depth", "normal", "segmap"} & set().union(*tasks_at.values()), "scene maps cannot follow an edit"
    assert not [r for r in rows if r["reason"] == "input_changed"], "every later turn starts from the given image"
    dropped = [r for r in rows if r["reason"] == "session_dropped"]
    assert dropped, "some session failed a later turn"
    for row in dropped:
        failed_turn = int(row["detail"].split()[1])
        assert failed_turn > row["turn"]
        later = [r for r in rows if r["session"] == row["session"] and r["turn"] == failed_turn]
        assert later and not any(r["status"] == "kept" for r in later)
    stats = [json.loads(p.read_text()) for p in (sessions_run / "shards").glob("*.stats.json")]
    assert sum(s["sessions"]["kept"] for s in stats) == len(by_session)
    assert sum(s["sessions"]["sessions"] for s in stats) == 24
    assert sum(sum(s["sessions"]["dropped_at_turn"].values()) for s in stats) == 24 - len(by_session)


def test_a_later_turn_is_written_from_the_previous_output(sessions_run):
    """Turn k+1's input caption is turn k's output caption (a map task's writer may say what the input is: "a sketch
    of ..."), and a removed object is never named again."""
    rows = {r["key"]: r for r in manifest_rows(sessions_run) if r["candidate"] == 0}
    followed = [r for r in rows.values() if r["previous"] and rows[r["previous"]]["status"] in ("kept", "rejected")]
    assert followed
    for row in followed:
        before = rows[row["previous"]]
        assert (before["output_caption"] or before["input_caption"]) in row["input_caption"]  # "a sketch of ..."
        if before["task"] == "remove" and row["task"] in ("remove", "detect", "segment") and row["objects"]:
            assert not set(before["objects"]) & set(row["objects"]), (before["key"], row["key"])


def test_verify_finds_a_broken_chain_and_a_missing_turn():
    def member(session: str, turn: int, previous: str, input: bytes, output: bytes) -> dict[str, bytes]:
        meta = {"session": session, "turn": turn, "previous": previous}
        return {"json": json.dumps(meta).encode(), "input": input, "output": output}

    counts = {"turns": 2, "kept": 1, "keep_prefix": False}
    whole = {"x_t1_000000_00000": member("x_000000_00000", 1, "", b"a", b"b"),
             "x_t2_000000_00000": member("x_000000_00000", 2, "x_t1_000000_00000", b"b", b"c")}  # fmt: skip
    assert _verify_sessions("x.tar", counts, whole) == []
    broken = {**whole, "x_t2_000000_00000": member("x_000000_00000", 2, "x_t1_000000_00000", b"z", b"c")}
    assert "the chain is broken" in " ".join(_verify_sessions("x.tar", counts, broken))
    missing = {"x_t1_000000_00000": whole["x_t1_000000_00000"]}
    assert "holds turns [1], expected 1..2" in " ".join(_verify_sessions("x.tar", counts, missing))
    assert _verify_sessions("x.tar", {**counts, "keep_prefix": True}, missing) == []


def test_sessions_export_as_magicbrush_and_as_sessions(sessions_run, tmp_path):
    """magicbrush: MagicBrush's columns, a row per turn, source_img of turn 2 on the previous target_img; sessions: a
    row per session with its turns; hf-parquet: every turn a pair. The card counts the turns."""
    cache = str(tmp_path / "cache")
    counts = export(str(sessions_run), str(tmp_path / "mb"), "magicbrush", progress=False)
    mb = datasets.load_dataset(str(tmp_path / "mb"), split="train", cache_dir=cache)
    assert mb.column_names == ["img_id", "turn_index", "source_img", "mask_img", "instruction", "target_img"]
    assert isinstance(mb.features["source_img"], datasets.Image) and len(mb) == counts["samples"]
    rows = {
        (r["img_id"], r["turn_index"]): r
        for r in mb.cast_column("source_img", datasets.Image(decode=False)).cast_column(
            "target_img", datasets.Image(decode=False)
        )
    }
    for (session, turn), row in rows.items():
        if turn > 1:
            assert row["source_img"]["bytes"] == rows[(session, turn - 1)]["target_img"]["bytes"]
    sessions = export(str(sessions_run), str(tmp_path / "sessions"), "sessions", progress=False)
    loaded = datasets.load_dataset(str(tmp_path / "sessions"), split="train", cache_dir=cache)
    assert len(loaded) == sessions["samples"] == counts["samples"] // 3
    first = loaded[0]
    assert first["turns_count"] == 3 and [t["key"].split("_")[1] for t in first["turns"]] == ["t1", "t2", "t3"]
    assert first["turns"][2]["output_image"].size == first["input_image"].size
    card = (tmp_path / "sessions" / "README.md").read_text()
    assert "## Sessions" in card and f"{sessions['samples']} kept" in card
    flat = export(str(sessions_run), str(tmp_path / "flat"), "hf-parquet", progress=False)
    assert flat["samples"] == counts["samples"] and flat["turns"] == {str(t): sessions["samples"] for t in (1, 2, 3)}


def test_keep_prefix_keeps_the_passing_turns(tmp_path):
    out = tmp_path / "run"
    run_inline("generate", "--tasks", "remove,color", "--n", "24", "--shard-size", "6", "--keep-prefix",
               "--out", str(out), *SESSIONS)  # fmt: skip
    assert verify(out).problems == []
    rows = manifest_rows(out)
    assert not [r for r in rows if r["reason"] == "session_dropped"]
    lengths = Counter()
    for session in {r["session"] for r in rows}:
        kept = sorted(r["turn"] for r in rows if r["session"] == session and r["status"] == "kept")
        assert kept == list(range(1, len(kept) + 1)), "a prefix"
        lengths[len(kept)] += 1
    assert lengths[3] and (lengths[1] or lengths[2]), lengths


def test_a_mixture_that_cannot_chain_is_refused(tmp_path):
    """Before any work, naming the task and why."""
    proc = run_inline("generate", "--task", "depth", "--n", "2", "--out", str(tmp_path / "a"), *SESSIONS, check=False)
    assert proc.returncode == 2
    assert (
        "cannot stand in a 3-turn session on pipeline 'local': its depth role reads the procedural scene"
        in proc.stderr
    )
    proc = run_inline("generate", "--tasks", "add,background", "--n", "2", "--out", str(tmp_path / "b"), *SESSIONS,
                      check=False)  # fmt: skip
    assert proc.returncode == 2 and "no task of the mixture can edit turn 1's output" in proc.stderr
    proc = run_inline("generate", "--tasks", "detect,backtrack", "--n", "2", "--out", str(tmp_path / "c"), *SESSIONS,
                      check=False)  # fmt: skip
    assert proc.returncode == 2 and "no task of the mixture can open a session" in proc.stderr
    assert not any((tmp_path / name).exists() for name in ("a", "b", "c"))


@pytest.mark.slow
def test_sigkill_mid_sessions_run_resumes_to_the_same_bytes(tmp_path):
    args = ["--tasks", "remove,color,global", "--n", "240", "--shard-size", "6", *SESSIONS]
    reference = tmp_path / "reference"
    run_inline("generate", "--out", str(reference), *args)
    expected = committed_checksums(reference, texts=True)
    out = tmp_path / "run"
    for kill, delay in enumerate((0.0, 0.3, 0.6, 0.9)):
        command = [*DATAGEN, "generate", "--out", str(out), *(args if kill == 0 else ["--workers", "0"])]
        proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            shards = out / "shards"
            before = len(os.listdir(shards)) if shards.is_dir() else 0
            while proc.poll() is None and time.monotonic() < deadline:  # until it renders, then a little further
                if shards.is_dir() and len(os.listdir(shards)) > before:
                    break
                time.sleep(0.01)
            time.sleep(delay)
            assert proc.poll() is None, f"kill {kill}: the run finished first"
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
        assert [p for p in verify(out).problems if "nothing was rendered" not in p] == []
    run_cli("generate", "--out", str(out), "--workers", "0", "--no-progress")
    assert committed_checksums(out, texts=True) == expected, "byte-identical to the uninterrupted run"


@pytest.mark.slow
def test_a_tiny_sessions_run_judges_every_turn(tiny_dir, tmp_path):
    """The neural stack: every turn rendered by tiny models, scored and judged against its own input."""
    out = tmp_path / "run"
    run_inline("generate", "--tasks", "remove,color", "--pipeline", "tiny", "--turns", "2", "--n", "2",
               "--shard-size", "1", "--out", str(out), "--workers", "0", "--no-progress")  # fmt: skip
    assert verify(out).problems == []
    second = [r for r in manifest_rows(out) if r["turn"] == 2]
    assert second, "some first turn was kept and followed"
    judged = [r for r in manifest_rows(out) if r["judge_reasoning"]]
    assert {r["turn"] for r in judged} == {1, 2}, "the judge saw every turn"
    assert all(json.loads(r["models"]).get("judge") for r in judged)


def test_training_and_eval_read_sessions_turn_by_turn(tiny_dir, tmp_path):
    """The trainer takes every turn as a pair; eval --checkpoint reports each turn in MagicBrush's two settings: the
    first turns alike (same inputs), the later ones apart (from the true previous image, or the model's own)."""
    from datagen.train import TrainConfig, train

    out = tmp_path / "run"
    run_inline("generate", "--tasks", "remove,color", "--n", "4", "--shard-size", "2", "--turns", "2", "--pipeline",
               "local", "--out", str(out), "--workers", "0", "--no-progress", "--set",
               "pipeline.image_size=64")  # fmt: skip
    assert {r["turn"] for r in manifest_rows(out) if r["status"] == "kept"} == {1, 2}
    train(TrainConfig(shards=[str(out)], out=str(tmp_path / "editor"), steps=1, resolution=32, batch_size=2,
                      checkpoint_every=1), progress=False)  # fmt: skip
    proc = run_inline("eval", "--shards", str(out), "--checkpoint", str(tmp_path / "editor"), "--pipeline", "tiny",
                      "--json", str(tmp_path / "m.json"), "--no-progress")  # fmt: skip
    assert "per turn, each turn from the true previous image:" in proc.stdout
    assert "per turn, each turn from the model's own previous output:" in proc.stdout
    by_turn = json.loads((tmp_path / "m.json").read_text())["by_turn"]
    independent, chained = by_turn["independent"], by_turn["chained"]
    assert set(independent) == set(chained) == {"turn 1", "turn 2", "all"}
    assert independent["turn 1"] == pytest.approx(chained["turn 1"], rel=1e-4), "the same inputs (batched apart)"
    assert independent["turn 2"]["n"] == chained["turn 2"]["n"] > 0
    assert independent["turn 2"]["l1"] != chained["turn 2"]["l1"]


def test_the_report_draws_sessions_as_strips(sessions_run, tmp_path):
    from datagen.report.command import build_report

    index = build_report(str(sessions_run), str(tmp_path / "report"), progress=False)
    page = Path(index).read_text()
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    counts = summary["sessions"]
    assert counts["sessions"] == 24 and counts["turns"] == 3
    assert sum(counts["dropped_at_turn"].values()) == 24 - counts["kept"]
    assert '<section id="sessions">' in page and page.count('class="strip ') == 12
    assert page.count('class="strip kept"') >= 8, "two thirds of the strips are whole sessions"
    assert "1. " in page and "3. " in page and (tmp_path / "report" / "thumbs").is_dir()
    tasks = summary["tasks"]
    assert sum(t["samples"] for t in tasks.values()) == len({r["key"] for r in manifest_rows(sessions_run)})
    assert tasks["detect"]["samples"] > 0 and tasks["detect"]["shards"] == 1, "each turn counted under its own task"


def test_the_summary_the_report_and_the_card_count_from_one_tally(sessions_run, tmp_path):
    """datagen/shards/tally.py counts the run for all three: the runner's summary (from each shard's stats as it
    commits), the report (each sample under its own task, from the manifests) and the card agree with it."""
    from datagen.report.command import build_report
    from datagen.runner import Summary
    from datagen.shards import RunFolder
    from datagen.shards.tally import count_manifests, count_stats

    run = RunFolder(str(sessions_run))
    shards = run.committed()
    by_stats, by_rows = count_stats(shards), count_manifests(run)
    assert by_stats.sessions == by_rows.sessions and by_stats.sessions.sessions == 24
    assert sum(t.samples for t in by_stats.tasks.values()) == sum(t.samples for t in by_rows.tasks.values())
    assert sum(by_rows.turns[turn]["attempted"] for turn in by_rows.turns) == len(
        {r["key"] for r in manifest_rows(sessions_run)}
    )
    summaries = {}
    for shard in shards:
        summaries.setdefault(shard.task, Summary("render", task=shard.task)).add(shard.stats)
    assert {task: (s.samples, s.kept) for task, s in summaries.items()} == {
        task: (t.samples, t.kept) for task, t in by_stats.tasks.items()
    }
    build_report(str(sessions_run), str(tmp_path / "report"), progress=False)
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["sessions"] == json.loads(json.dumps(by_stats.sessions.as_dict()))
    assert {task: t["kept"] for task, t in summary["tasks"].items()} == {
        task: t.kept for task, t in by_rows.tasks.items()
    }
    export(str(sessions_run), str(tmp_path / "flat"), "hf-parquet", progress=False)
    card = (tmp_path / "flat" / "README.md").read_text()
    sessions = by_stats.sessions
    assert f"{sessions.sessions} sessions attempted, {sessions.complete} complete, {sessions.kept} kept" in card
    for task, counts in by_rows.tasks.items():
        assert f"| {task} |" in card and f"| {counts.samples} | {counts.kept} |" in card, task


def test_a_backtracking_turn_goes_back_to_an_earlier_image_exactly(tmp_path):
    """ImgEdit's version backtracking: the target is the session's earlier image, byte for byte, and the instruction
    names which one; the task runs only in sessions."""
    out = tmp_path / "run"
    run_inline("generate", "--tasks", "remove,color,global,backtrack", "--n", "24", "--shard-size", "6",
               "--out", str(out), *SESSIONS)  # fmt: skip
    assert verify(out).problems == []
    rows = [r for r in manifest_rows(out) if r["status"] == "kept"]
    by_key = {r["key"]: r for r in rows}
    members = _kept_members(out)
    back = [r for r in rows if r["task"] == "backtrack"]
    assert len(back) >= 5 and {r["turn"] for r in back} == {2, 3}
    for row in back:
        target = json.loads(row["params"])["back_to"]
        chain = [row["previous"]]  # the session's turns before this one, last first
        while by_key[chain[-1]]["previous"]:
            chain.append(by_key[chain[-1]]["previous"])
        images = [members[chain[-1]]["input"]] + [members[key]["output"] for key in reversed(chain)]
        assert members[row["key"]]["output"] == images[target]
        if target == len(chain) - 1:
            assert (
                row["instruction"].lower().startswith(("undo", "revert", "go back", "take back", "put it", "actually"))
            )
        else:
            assert ("first", "second")[target] in row["instruction"]
    proc = run_inline("generate", "--task", "backtrack", "--n", "2", "--out", str(tmp_path / "single"),
                      "--workers", "0", "--no-progress", check=False)  # fmt: skip
    assert proc.returncode == 2 and "runs only in sessions: give --turns 2 or more" in proc.stderr


def test_a_later_turn_asks_a_translation_for_the_map_of_the_image_it_is_given():
    """The LLM writer's schema holds a later turn's direction to image -> map; the template writer draws only it."""
    from datagen.config import RoleSpec
    from datagen.resolve import load_run
    from datagen.sources import SourceItem
    from datagen.template_writer import TemplateWriter
    from datagen.writer import later_turn

    prompt = load_run("sketch", "local", out="/nonexistent-never-written", n=1).prompt
    first = SourceItem(ref={}, caption="a red ball on a table", objects=["red ball"])
    later = SourceItem(ref={}, caption="a red ball on a table", objects=["red ball"], history=["a", None])
    assert later_turn(prompt.output_schema, first) is prompt.output_schema
    assert later_turn(prompt.output_schema, later)["properties"]["direction"] == {"type": "string", "enum": ["to_map"]}
    writer = TemplateWriter(RoleSpec(backend="template"), prompt)
    directions = {w["direction"] for w in writer.write_batch([later] * 20, list(range(20)))}
    assert directions == {"to_map"}
    assert {w["direction"] for w in writer.write_batch([first] * 20, list(range(20)))} == {"to_map", "from_map"}


def test_the_worker_keeps_the_interface_the_session_shard_declares(tmp_path):
    """session_shard.Worker is the whole of what a sessions shard uses of a worker; ShardWorker keeps it, and the
    session shard never imports datagen.worker (the dependency runs one way)."""
    import ast
    import inspect

    from datagen import session_shard
    from datagen.resolve import load_run
    from datagen.worker import ShardWorker

    worker = ShardWorker(load_run("remove", "local", out=str(tmp_path), n=1))
    assert isinstance(worker, session_shard.Worker)
    imported = {
        node.module
        for node in ast.walk(ast.parse(inspect.getsource(session_shard)))
        if isinstance(node, ast.ImportFrom)
    }
    assert "datagen.worker" not in imported
