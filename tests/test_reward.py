"""The reward role: EditReward's architecture (Qwen2.5-VL with its two reward heads) as a tiny random twin, loaded
through from_pretrained from safetensors, batched, its score on every candidate of a tiny run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import manifest_rows

from datagen import models
from datagen.config import RoleSpec
from datagen.models.reward import rubrics
from datagen.models.reward_model import HEAD_WIDTHS, OUTPUTS, REWARD_TOKEN


@pytest.fixture(scope="module")
def reward(tiny_dir):
    spec = RoleSpec(backend="editreward", model="tiny:reward", batch_size=3, args={"pixels": 56 * 56})
    role = models.build("reward", spec)
    role.load()
    return role


def test_the_heads_have_the_published_names_shapes_and_dtype(reward):
    """EditReward-Qwen2.5-7B-VL's heads (qwen2_5_vl_trainer.py, rm_head_type ranknet_multi_head, no rm_head_kwargs):
    rm_heads.head_0 and head_1, each Linear(hidden, 1024), ReLU, Dropout(0.05), Linear(1024, 16), ReLU,
    Linear(16, 2), in float32 whatever the backbone's dtype: a checkpoint of theirs loads into it strictly."""
    hidden = reward.model.config.text_config.hidden_size
    state = {name: tuple(t.shape) for name, t in reward.model.state_dict().items() if name.startswith("rm_heads.")}
    wide, narrow = HEAD_WIDTHS
    expected = {}
    for head in ("head_0", "head_1"):
        expected |= {
            f"rm_heads.{head}.0.weight": (wide, hidden),
            f"rm_heads.{head}.0.bias": (wide,),
            f"rm_heads.{head}.3.weight": (narrow, wide),
            f"rm_heads.{head}.3.bias": (narrow,),
            f"rm_heads.{head}.5.weight": (OUTPUTS, narrow),
            f"rm_heads.{head}.5.bias": (OUTPUTS,),
        }
    assert state == expected
    assert (wide, narrow, OUTPUTS) == (1024, 16, 2)
    for head in reward.model.rm_heads.values():
        assert [type(m).__name__ for m in head] == ["Linear", "ReLU", "Dropout", "Linear", "ReLU", "Linear"]
        assert head[2].p == 0.05 and all(p.dtype == torch.float32 for p in head.parameters())
    # the reward token was added as the authors add it, and the embeddings are as long as the tokenizer
    assert reward.tokenizer.convert_tokens_to_ids(REWARD_TOKEN) == reward.token_id
    assert reward.model.get_input_embeddings().weight.shape[0] == len(reward.tokenizer)


def test_each_head_pools_at_the_one_reward_token_after_its_rubric(reward):
    """Each sequence holds the reward token once, at the end of the prompt (the rubric, the instruction, then the
    authors' suffix); a batch pads on the right, so a pair scores the same alone as in a batch; the instruction
    before the token changes the score."""
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(6)]
    items = [
        (images[k], images[k + 1], f"make the {word} red")
        for k, word in zip((0, 2, 4), ("cup", "car", "sky"), strict=True)
    ]
    for rubric in ("following", "quality"):
        batch = reward._batch(items, rubric)
        ids = batch["input_ids"]
        assert ((ids == reward.token_id).sum(dim=1) == 1).all()
        text = reward.tokenizer.decode(ids[0])
        assert "make the cup red" in text and text.index("make the cup red") < text.index(REWARD_TOKEN)
        assert rubrics()[rubric].split("\n")[1][:60] in text
        grid = batch["image_grid_thw"]
        assert grid.shape == (6, 3) and (grid.prod(-1) // 4 == 4).all()  # 56 x 56 pixels: 4 tokens an image
    together = reward.reward_batch(items)
    alone = [reward.reward_batch([item])[0] for item in items]
    assert together == pytest.approx(alone, abs=1e-5)
    other = reward.reward_batch([(items[0][0], items[0][1], "remove everything and paint it blue")])[0]
    assert other != pytest.approx(together[0], abs=1e-7)
    assert reward.calls >= 4 and reward.items >= 6


def test_a_tiny_run_stores_the_reward_of_every_candidate_and_times_it_beside_the_judge(judged_tiny_run):
    rows = manifest_rows(judged_tiny_run)
    scored = [row for row in rows if row.get("score_judge_overall") is not None]
    assert scored and all(isinstance(row["score_reward"], float) for row in scored)
    assert len({row["score_reward"] for row in scored}) > 1
    record = json.loads(next(iter((judged_tiny_run / "shards").glob("*.stats.json"))).read_text())
    assert record["timings"]["reward"] > 0 and record["timings"]["judge"] > 0
