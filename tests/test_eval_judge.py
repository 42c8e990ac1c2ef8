"""`datagen eval --judge`: VIEScore's SC, PQ and O beside Emu Edit's five metrics, from the tiny judge on vLLM, on
shards and on a GEdit-Bench parquet edited by a tiny checkpoint; the definitions checked against the judge's own
verdicts and the unjudged count against a judge whose answers are cut off; the benchmark formats told apart by their
columns; the errors that say what to give."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import run_inline

from datagen.cli import main
from datagen.config import find_config, read_yaml
from datagen.edit import to_png
from datagen.evaluate import (
    GEDIT_TASKS,
    JUDGE_METRICS,
    editor_task,
    evaluate,
    load_benchmark,
    summarise,
    table,
    task_group,
)

GEDIT_TYPES = ("background_change", "color_alter", "material_alter", "motion_change", "ps_human", "style_change",
               "subject-add", "subject-remove", "subject-replace", "text_change", "tone_transfer")  # fmt: skip


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    from datagen.resolve import load_run
    from datagen.runner import execute

    out = tmp_path_factory.mktemp("eval_shards")
    config = load_run("remove", "local", out=str(out), n=4, shard_size=4, overrides=["pipeline.image_size=64"])
    execute(config, "generate", workers=0, progress=False)
    return out


@pytest.fixture(scope="module")
def checkpoint(tiny_dir, shards, tmp_path_factory):
    """A run folder one training step from the tiny text-to-image model."""
    from datagen.train import TrainConfig, train

    out = tmp_path_factory.mktemp("eval_editor")
    train(TrainConfig(shards=[str(shards)], out=str(out), steps=1, resolution=32, batch_size=2, checkpoint_every=1,
                      shuffle=4), progress=False)  # fmt: skip
    return out


def images(n: int, seed: int = 0) -> list[np.ndarray]:
    """Small non-square images, as benchmarks have."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(n)]


@pytest.fixture(scope="module")
def gedit(tmp_path_factory):
    """A GEdit-Bench-format parquet: three rows, two task types, both languages, an unused column."""
    inputs = images(3)
    rows = {
        "key": ["a1", "a2", "a3"],
        "task_type": ["subject-remove", "tone_transfer", "subject-remove"],
        "instruction": ["remove the ball", "make it dusk", "去掉球"],
        "instruction_language": ["en", "en", "cn"],
        "input_image": [{"bytes": to_png(image), "path": None} for image in inputs],
        "input_image_raw": [{"bytes": to_png(image), "path": None} for image in inputs],
    }
    path = tmp_path_factory.mktemp("gedit") / "gedit.parquet"
    pq.write_table(pa.table(rows), path)
    return path


def test_gedit_task_types_map_to_datagen_tasks_of_their_group():
    assert sorted(GEDIT_TASKS) == sorted(GEDIT_TYPES)
    for task_type, (task, group) in GEDIT_TASKS.items():
        assert read_yaml(find_config("tasks", task))["group"] == group, task_type
        assert task_group(task_type) == group
    assert (task_group("remove"), task_group("color"), task_group("depth")) == ("region", "vision", "translation")
    assert task_group("not-a-task") == "free-form"
    assert [editor_task(t, ["remove", "global"]) for t in ("tone_transfer", "remove", "not-a-task")] == [
        "global", "remove", "remove"]  # fmt: skip


def test_benchmark_formats_are_told_by_their_columns(gedit, tmp_path):
    pairs = load_benchmark(str(gedit), None)
    assert [p["task"] for p in pairs] == ["subject-remove", "tone_transfer", "subject-remove"]
    assert pairs[2]["instruction"] == "去掉球" and pairs[0]["input"].shape == (48, 64, 3)
    assert all(p["input_caption"] is None and p["output_caption"] is None for p in pairs)
    assert [p["instruction"] for p in load_benchmark(str(gedit), None, language="en")] == ["remove the ball",
                                                                                          "make it dusk"]  # fmt: skip
    with pytest.raises(Exception, match=r"--language de: no such rows .*\(its languages: cn, en\)"):
        load_benchmark(str(gedit), None, language="de")
    emu = {"idx": [0], "instruction": ["remove the cup"], "image": [to_png(images(1)[0])], "task": ["remove"],
           "input_caption": ["a cup on a table"], "output_caption": ["a table"]}  # fmt: skip
    pq.write_table(pa.table(emu), tmp_path / "emu.parquet")
    (pair,) = load_benchmark(str(tmp_path / "emu.parquet"), None)
    assert (pair["task"], pair["input_caption"], pair["output_caption"]) == ("remove", "a cup on a table", "a table")
    with pytest.raises(Exception, match=r"--benchmark-format gedit needs columns input_image, task_type \(it has"):
        load_benchmark(str(tmp_path / "emu.parquet"), None, "gedit")
    with pytest.raises(Exception, match=r"--benchmark-format emu needs columns image, input_caption, output_caption"):
        load_benchmark(str(gedit), None, "emu")
    pq.write_table(pa.table({"instruction": ["x"]}), tmp_path / "bad.parquet")
    with pytest.raises(Exception, match=r"needs columns .*\(Emu Edit test set\) or .*\(GEdit-Bench\) \(it has instr"):
        load_benchmark(str(tmp_path / "bad.parquet"), None)


@pytest.fixture(scope="module")
def embedders(tiny_dir):
    from datagen import models
    from datagen.resolve import load_pipeline

    roles = load_pipeline("tiny").roles
    clip, dino = models.build("clip", roles["clip"]), models.build("dino", roles["dino"])
    clip.load()
    dino.load()
    return clip, dino


def tiny_judge(**args):
    """The tiny pipeline's judge (the real vLLM engine, shared by every judge of this process), args changed."""
    from datagen import models
    from datagen.resolve import load_pipeline

    overrides = [f"roles.judge.args.{name}={value}" for name, value in args.items()]
    return models.build("judge", load_pipeline("tiny", overrides).roles["judge"])


def test_sc_pq_o_are_viescores_definitions_and_unscored_pairs_are_counted(embedders):
    before, after = images(2, seed=1)
    pairs = [{"task": task, "instruction": f"edit {k}", "input_caption": caption, "output_caption": caption,
              "input": before, "output": after}
             for k, (task, caption) in enumerate([("remove", "a box"), ("tone_transfer", None), ("remove", "a cup"),
                                                  ("color", "a room"), ("remove", "a dog")])]  # fmt: skip
    judge = tiny_judge()
    rows = evaluate(pairs, *embedders, batch_size=2, progress=False, judge=judge)
    groups = [task_group(p["task"]) for p in pairs]
    assert groups == ["region", "free-form", "region", "vision", "region"]
    items = [
        (p["input"], p["output"], p["instruction"], g, k) for k, (p, g) in enumerate(zip(pairs, groups, strict=True))
    ]
    for row, verdict in zip(rows, judge.judge_batch(items), strict=True):  # the same requests, asked again
        sc = min(verdict.following, verdict.preservation)
        assert (row["SC"], row["PQ"], row["O"]) == pytest.approx(
            (sc, verdict.quality, math.sqrt(sc * verdict.quality))
        )
        assert row["unjudged"] == ""
    assert math.isnan(rows[1]["clip_out"]) and math.isnan(rows[1]["clip_dir"]), "no caption: no caption metrics"
    assert not math.isnan(rows[1]["clip_img"]) and not math.isnan(rows[0]["clip_out"])
    again = evaluate(pairs, *embedders, batch_size=5, progress=False, judge=judge)
    assert [r["O"] for r in again] == pytest.approx([r["O"] for r in rows]), "seeds by position, not by batch"

    cut = evaluate(pairs, *embedders, batch_size=2, progress=False, judge=tiny_judge(max_tokens=16))
    assert all(math.isnan(r[m]) for r in cut for m in JUDGE_METRICS)
    assert {r["unjudged"] for r in cut} == {"judge_truncated"}
    summary = summarise(cut[:2] + rows[2:])
    assert (summary["all"]["n"], summary["all"]["unjudged"], summary["remove"]["unjudged"]) == (5, 2, 1)
    assert summary["remove"]["SC"] == pytest.approx((rows[2]["SC"] + rows[4]["SC"]) / 2), "unjudged left out"
    printed = table(summary, {"CLIP": "c", "DINO": "d", "judge": "tiny:vlm"})
    assert printed.splitlines()[0] == "CLIP: c   DINO: d   judge: tiny:vlm"
    assert printed.splitlines()[1].split()[-4:] == ["SC", "PQ", "O", "unjudged"]
    assert "SC" not in summarise([{k: v for k, v in r.items() if k not in (*JUDGE_METRICS, "unjudged")}
                                  for r in rows])["all"]  # fmt: skip


def test_eval_with_the_tiny_judge_on_shards(tiny_dir, shards, tmp_path):
    proc = run_inline("eval", "--shards", str(shards), "--pipeline", "tiny", "--judge", "tiny", "--no-progress",
                      "--json", str(tmp_path / "m.json"))  # fmt: skip
    lines = proc.stdout.splitlines()
    start = next(k for k, line in enumerate(lines) if line.startswith("CLIP: "))
    assert lines[start] == "CLIP: tiny:clip   DINO: tiny:dino   judge: tiny:vlm"
    assert lines[start + 1].split() == ["task", "n", "clip_dir", "clip_img", "clip_out", "l1", "dino", "SC", "PQ",
                                        "O", "unjudged"]  # fmt: skip
    document = json.loads((tmp_path / "m.json").read_text())
    numbers = document["metrics"]["all"]
    assert document["judge"] == "tiny:vlm" and document["unjudged"] == {}
    assert set(numbers) == {"n", "clip_dir", "clip_img", "clip_out", "l1", "dino", "SC", "PQ", "O", "unjudged"}
    assert numbers["unjudged"] == 0 and all(0 <= numbers[m] <= 10 for m in JUDGE_METRICS)
    assert numbers["O"] <= max(numbers["SC"], numbers["PQ"]) + 1e-9, "a geometric mean of the two, pair by pair"
    assert f"judge: 0 of {numbers['n']} pairs unscored (SC, PQ, O NaN)" in proc.stdout


def test_eval_of_a_checkpoint_on_a_gedit_parquet_with_the_tiny_judge(tiny_dir, checkpoint, gedit, tmp_path):
    proc = run_inline("eval", "--benchmark", str(gedit), "--checkpoint", str(checkpoint), "--pipeline", "tiny",
                      "--judge", "tiny", "--batch-size", "2", "--no-progress",
                      "--json", str(tmp_path / "m.json"))  # fmt: skip
    metrics = json.loads((tmp_path / "m.json").read_text())["metrics"]
    assert sorted(metrics) == ["all", "subject-remove", "tone_transfer"]
    assert (metrics["subject-remove"]["n"], metrics["tone_transfer"]["n"]) == (2, 1)
    for values in metrics.values():
        assert math.isnan(values["clip_dir"]) and math.isnan(values["clip_out"]), "GEdit-Bench has no captions"
        assert 0 <= values["l1"] <= 1 and -1 <= values["clip_img"] <= 1
        assert values["unjudged"] < values["n"] and all(0 <= values[m] <= 10 for m in JUDGE_METRICS)
    assert "tone_transfer" in proc.stdout and "judge: " in proc.stdout


def test_eval_errors_say_what_to_give(shards, gedit, capsys):
    assert main(["eval", "--shards", str(shards), "--pipeline", "tiny", "--judge", "local"]) == 2
    assert "--judge local: pipeline 'local' has no judge role (roles.judge)" in capsys.readouterr().err
    assert main(["eval", "--benchmark", str(gedit), "--pipeline", "tiny"]) == 2
    assert "a GEdit-Bench parquet has input images only; give --checkpoint" in capsys.readouterr().err
    assert main(["eval", "--shards", str(shards), "--pipeline", "tiny", "--language", "en"]) == 2
    assert "--language picks GEdit-Bench rows" in capsys.readouterr().err
