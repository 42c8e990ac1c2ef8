"""The judge: a real vLLM engine serving a tiny random Idefics3 looks at every candidate of a `tiny` run; its scores,
reasoning and rewritten instruction reach the manifest and the sample's json; an answer that is cut off is that
candidate's rejection, never a crash; every task rejects a no-op edit as `unchanged`."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import jsonschema
import numpy as np
import pyarrow.parquet as pq
import pytest

from datagen.config import FilterSpec, RoleSpec, TaskSpec, find_config, known, read_yaml, validate
from datagen.filters import gate, pixel_scores
from datagen.models.judge import JudgeReject, Verdict, answer_schema, parse_verdict
from datagen.models.options import JudgeOptions

JUDGE_COLUMNS = ("score_judge_following", "score_judge_preservation", "score_judge_quality", "score_judge_overall")


def generate(out: Path, n: int, overrides: tuple[str, ...] = ()) -> None:
    """A tiny remove run in this process: its vLLM engines (writer, judge) are the process's, started once."""
    from datagen.resolve import load_run
    from datagen.runner import execute

    config = load_run("remove", "tiny", out=str(out), n=n, overrides=list(overrides))
    assert not execute(config, "generate", workers=0, progress=False).failed


@pytest.fixture
def judged_run(judged_tiny_run) -> Path:
    return judged_tiny_run


def test_every_candidate_carries_the_judges_verdict(judged_run):
    rows = pq.read_table(judged_run / "shards" / "remove-000000.parquet").to_pylist()
    assert len(rows) == 8 * 3  # three mask variants per sample, each judged
    for row in rows:
        assert row["status"] in ("kept", "rejected") and not row["reason"].startswith("judge_"), row["reason"]
        assert all(isinstance(row[c], float) and 0 <= row[c] <= 10 for c in JUDGE_COLUMNS), row
        assert row["judge_reasoning"] and "\n" not in row["judge_reasoning"]
        assert row["instruction_rewritten"]  # tiny's judge rewrites
        assert json.loads(row["models"])["judge"] == "tiny:vlm"
    with tarfile.open(judged_run / "shards" / "remove-000000.tar") as tar:
        metas = [json.loads(tar.extractfile(m).read()) for m in tar if m.name.endswith(".json")]
    kept = {r["key"]: r for r in rows if r["status"] == "kept"}
    assert len(metas) == len(kept) > 0
    for meta in metas:
        row = kept[meta["key"]]
        assert meta["judge_reasoning"] == row["judge_reasoning"]
        assert meta["scores"]["judge_overall"] == row["score_judge_overall"]
    stats = json.loads((judged_run / "shards" / "remove-000000.stats.json").read_text())
    assert stats["stages"]["judge"]["calls"]["judge"] >= 1 and stats["stages"]["judge"]["items"]["judge"] == 24


def test_a_cut_off_answer_rejects_its_candidate_and_nothing_crashes(tiny_dir, tmp_path):
    out = tmp_path / "run"
    generate(out, 4, ("pipeline.roles.judge.args.max_tokens=16",))
    rows = pq.read_table(out / "shards" / "remove-000000.parquet").to_pylist()
    assert {r["reason"] for r in rows} == {"judge_truncated"} and {r["status"] for r in rows} == {"rejected"}
    assert all(r["score_judge_overall"] is None for r in rows)


def test_answers_are_parsed_or_refused_with_a_reason():
    schema = answer_schema(rewrite=True)
    validator = jsonschema.Draft202012Validator(schema)
    good = {"reasoning": "the cup is gone", "following": 9, "preservation": 8, "quality": 7, "overall": 8,
            "instruction_rewritten": "Remove the cup"}  # fmt: skip
    verdict = parse_verdict(json.dumps(good), "stop", validator)
    assert isinstance(verdict, Verdict) and verdict.scores()["judge_overall"] == 8.0
    assert verdict.semantics == 8.0 and verdict.vie_overall == pytest.approx((8 * 7) ** 0.5)
    cut = parse_verdict(json.dumps(good)[:30], "length", validator)
    assert isinstance(cut, JudgeReject) and cut.reason == "judge_truncated"
    assert parse_verdict("not json", "stop", validator).reason == "judge_not_json"
    assert parse_verdict(json.dumps({**good, "following": 11}), "stop", validator).reason == "judge_schema_invalid"
    assert parse_verdict(json.dumps({**good, "reasoning": "a\nb"}), "stop", validator).reason == "judge_schema_invalid"
    assert list(schema["properties"])[0] == "reasoning"  # the model says what it saw before it scores


def test_judge_scores_gate_and_rank_like_any_score():
    filters = {"judge_overall": FilterSpec(min=7), "judge_following": FilterSpec(min=5)}
    assert gate({"judge_following": 9.0, "judge_overall": 6.0}, filters) == "judge_overall_low"
    assert gate({"judge_following": 4.0, "judge_overall": 9.0}, filters) == "judge_following_low"
    assert gate({"judge_following": 5.0, "judge_overall": 7.0}, filters) == ""


def test_judge_arguments_are_checked():
    from datagen.errors import ConfigError
    from datagen.models.judge import VLLMJudge

    spec = RoleSpec(backend="vllm", model="tiny:vlm", device="cpu")
    with pytest.raises(ConfigError, match=r"roles\.judge\.args\.rewrtie`: unknown argument"):
        JudgeOptions.parse({"rewrtie": True}, "judge")
    with pytest.raises(ConfigError, match=r"engine_args\.trust_remote_code`: not allowed"):
        VLLMJudge(spec, JudgeOptions.parse({"engine_args": {"trust_remote_code": True}}, "judge"))
    with pytest.raises(ConfigError, match="less than max_model_len"):
        VLLMJudge(spec, JudgeOptions.parse({"max_tokens": 4096, "max_model_len": 4096}, "judge"))


# ------------------------------------------------------------------------------------------------- no-op edits


@pytest.mark.parametrize("task", known("tasks"))
def test_every_task_rejects_a_no_op_edit_as_unchanged(task):
    path = find_config("tasks", task)
    spec = validate(TaskSpec, read_yaml(path), str(path))
    assert spec.filters["change"].reason == "unchanged" and spec.filters["change"].min > 0
    image = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    mask = np.full((32, 32), 255, np.uint8)
    same = pixel_scores(image, image.copy(), mask > 0, mask)
    assert gate({"change": same["change"]}, {"change": spec.filters["change"]}) == "unchanged"
    changed = pixel_scores(image, 255 - image, mask > 0, mask)
    assert gate({"change": changed["change"]}, {"change": spec.filters["change"]}) == ""


def test_change_is_measured_where_the_edit_was_made():
    before = np.zeros((10, 10, 3), np.uint8)
    after = before.copy()
    after[:5] = 255
    mask = np.zeros((10, 10), np.uint8)
    mask[:5] = 255
    assert pixel_scores(before, after, mask > 0, mask)["change"] == 1.0
    assert pixel_scores(before, after, mask > 0, np.full((10, 10), 255, np.uint8))["change"] == 0.5


@pytest.mark.parametrize("pipeline", ["sd15", "sdxl", "emu"])
def test_real_pipelines_name_a_judge_preflight_checks_and_null_leaves_out(pipeline):
    from datagen.preflight import preflight
    from datagen.resolve import load_pipeline

    spec = load_pipeline(pipeline)
    assert spec.roles["judge"].model == "Qwen/Qwen2.5-VL-7B-Instruct" and spec.roles["judge"].backend == "vllm"
    assert "judge" in {check.role for check in preflight(spec, build_tiny=False)}
    assert "judge" not in load_pipeline(pipeline, ["roles.judge=null"]).roles
