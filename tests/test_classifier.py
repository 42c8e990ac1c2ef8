"""The task classifier: learns task from wording, scores task agreement in render, picks the task for edit."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq

from datagen import models
from datagen.classifier import TaskClassifier, held_out
from datagen.config import RoleSpec
from datagen.resolve import load_run
from datagen.runner import execute
from datagen.sources import SceneSource

TASKS = ["remove", "add", "color", "detect", "style", "depth"]


def instructions(per_task: int) -> list[tuple[str, str, str]]:
    source = SceneSource(64)
    rows = []
    for task in TASKS:
        config = load_run(task, "local", out="/nonexistent-not-created", n=1)
        writer = models.build("llm", config.pipeline.roles["llm"], prompt=config.prompt)
        for i in range(per_task):
            item = source.item(source.ref(i, i))
            rows.append((f"{task}_{i}", writer.write(item, np.random.default_rng(i))["instruction"], task))
    return rows


def test_the_classifier_beats_chance_by_a_wide_margin():
    rows = instructions(120)
    train = [r for r in rows if not held_out(r[0], 0.25)]
    test = [r for r in rows if held_out(r[0], 0.25)]
    model = TaskClassifier(TASKS)
    model.fit([r[1] for r in train], [r[2] for r in train])
    accuracy = np.mean([p == r[2] for p, r in zip(model.predict([r[1] for r in test]), test, strict=True)])
    assert accuracy > 0.8, f"held-out accuracy {accuracy:.2f}; chance is {1 / len(TASKS):.2f}"
    probabilities = model.probabilities(["Draw a box around the red ball"])
    assert probabilities.shape == (1, len(TASKS)) and np.isclose(probabilities.sum(), 1.0)


def test_task_agreement_is_a_score_and_a_gate(tmp_path):
    rows = instructions(60)
    model = TaskClassifier(TASKS)
    model.fit([r[1] for r in rows], [r[2] for r in rows])
    model.save(tmp_path / "clf")
    assert TaskClassifier.load(tmp_path / "clf").predict(["Remove the red ball"]) == model.predict(
        ["Remove the red ball"]
    )
    role = models.build("classifier", RoleSpec(backend="bow", model=str(tmp_path / "clf")))
    role.load()
    assert role.task_prob("Draw a box around the ball", "pose") is None, "a task it never saw is not judged"
    role_yaml = f"{{backend: bow, model: '{tmp_path / 'clf'}'}}"
    overrides = [f"pipeline.roles.classifier={role_yaml}", "filters.task_prob.min=0.99", "pipeline.image_size=96"]
    config = load_run("remove", "local", out=str(tmp_path / "out"), n=8, overrides=overrides)
    execute(config, "generate", workers=0, progress=False)
    table = pq.read_table(tmp_path / "out" / "shards" / "remove-000000.parquet").to_pylist()
    assert all(0 <= row["score_task_prob"] <= 1 for row in table)
    rejected = [row for row in table if row["reason"] == "task_prob_low"]
    assert all(row["score_task_prob"] < 0.99 for row in rejected)
    assert json.loads(table[0]["models"])["classifier"] == str(tmp_path / "clf")
