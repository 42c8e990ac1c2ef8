"""The aesthetic role (LAION-Aesthetics V2's MLP over CLIP's image embedding) on real photos: a head converted from
the .pth LAION publishes scores exactly as torch's Linear layers do, the curate gate drops what scores below its
threshold with a reason, and a pipeline without the role or the head is told what to add."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from datagen import curate, models
from datagen.errors import ConfigError
from datagen.models import aesthetic
from datagen.models.weights import ModelMissing
from datagen.preflight import preflight
from datagen.resolve import load_pipeline
from datagen.text_photos import PHOTOS, photo


@pytest.fixture(scope="module")
def role():
    scorer = models.build("aesthetic", load_pipeline("tiny").roles["aesthetic"])
    scorer.load()
    return scorer


def test_a_head_in_laions_layout_scores_as_torch_linear_layers_do(role, tmp_path):
    """LAION's layout: Linear layers at indices 0, 2, 4, 6, 7 (dropouts between, nothing at inference)."""
    width = role.model.config.projection_dim
    torch.manual_seed(1)
    layers = [torch.nn.Linear(width, 32), torch.nn.Linear(32, 16), torch.nn.Linear(16, 8), torch.nn.Linear(8, 4),
              torch.nn.Linear(4, 1)]  # fmt: skip
    state = {f"layers.{i}.{name}": tensor for i, layer in zip((0, 2, 4, 6, 7), layers, strict=True)
             for name, tensor in layer.state_dict().items()}  # fmt: skip
    (tmp_path / "head").mkdir()
    save_file(state, str(tmp_path / "head" / "model.safetensors"))  # as aesthetic.CONVERT writes LAION's

    images = [photo(name) for name in PHOTOS[:4]]
    spec = load_pipeline("tiny", overrides=[f"pipeline.roles.aesthetic.args.head={tmp_path / 'head'}"]).roles
    scorer = models.build("aesthetic", spec["aesthetic"])
    scorer.load()
    with torch.inference_mode():
        expected = torch.nn.Sequential(*layers)(torch.from_numpy(role.embed_images(images))).numpy()[:, 0]
    assert np.allclose(scorer.score_batch(images), expected, atol=1e-5)
    assert scorer.score_batch(images) == scorer.score_batch(images)  # the same photos, the same scores


def test_the_gate_drops_inputs_below_its_threshold_with_a_reason(role):
    images = [photo(name) for name in PHOTOS]
    scores = role.score_batch(images)
    looked = curate.look(images, {"aesthetic": role})
    assert [item["scores"]["aesthetic"] for item in looked] == scores
    middle = float(np.median(scores))
    gates = load_pipeline("tiny", overrides=[f"curate.aesthetic.min={middle}"]).curate
    reasons = [curate.gate(item["scores"], {"aesthetic": gates["aesthetic"]}) for item in looked]
    low = {name for name, score in zip(PHOTOS, scores, strict=True) if score < middle}
    assert low and {name for name, reason in zip(PHOTOS, reasons, strict=True) if reason == "low_aesthetic"} == low
    assert all(curate.gate(item["scores"], load_pipeline("tiny").curate) != "low_aesthetic" for item in looked)


def test_a_gate_without_its_role_or_a_missing_head_says_what_to_add(tmp_path):
    with pytest.raises(ConfigError, match=r"field `curate.aesthetic`: gates the aesthetic role's score and the "
                                          r"pipeline has no `roles.aesthetic`"):  # fmt: skip
        curate.curate("images", str(tmp_path), str(tmp_path / "out"), pipeline="local",
                      overrides=["curate.aesthetic={min: 5}"])  # fmt: skip
    missing = str(tmp_path / "nowhere")
    checks = preflight(load_pipeline("tiny", overrides=[f"pipeline.roles.aesthetic.args.head={missing}"]),
                       build_tiny=False)  # fmt: skip
    (head,) = [c for c in checks if c.model == missing]
    assert not head.ok and "weights_only=True" in head.where and f"{missing}/model.safetensors" in head.where
    with pytest.raises(ModelMissing, match="improved-aesthetic-predictor"):
        aesthetic.head_path(missing)
    save_file({"layers.0.weight": torch.zeros(2, 3)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ConfigError, match="not an aesthetic head"):
        aesthetic.load_head(tmp_path / "bad.safetensors")
