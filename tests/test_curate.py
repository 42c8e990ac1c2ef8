"""The curate phase's look at input photos, on scikit-image's real photos with the real NSFW detector: each input's
scores and hashes, and the pipeline's gates (pipelines/*.yaml: curate) keeping or dropping it with a reason."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from datagen import curate, dedup, models
from datagen.errors import ConfigError
from datagen.resolve import load_pipeline
from datagen.text_photos import PHOTOS, photo


@pytest.fixture(scope="module")
def gates():
    return load_pipeline("local").curate


@pytest.fixture(scope="module")
def looked():
    pipeline = load_pipeline("local")
    nsfw = models.build("nsfw", pipeline.roles["nsfw"])
    images = {name: photo(name) for name in PHOTOS}
    images.update({f"{name}/blurred": cv2.GaussianBlur(photo(name), (0, 0), 5) for name in PHOTOS})
    return dict(zip(images, curate.look(list(images.values()), nsfw), strict=True)), images


def test_sharp_photos_pass_and_blurred_copies_are_dropped_as_blurry(looked, gates):
    found, _ = looked
    reasons = {name: curate.gate(item["scores"], gates) for name, item in found.items()}
    assert {name: reason for name, reason in reasons.items() if "/" not in name and reason} == {
        "colorwheel": "blurry"  # a smooth gradient: no edge to be sharp (and NudeNet's false positive besides)
    }
    assert all(reasons[f"{name}/blurred"] == "blurry" for name in PHOTOS), reasons
    sharp = [found[name]["scores"]["blur"] for name in PHOTOS if name != "colorwheel"]
    assert max(sharp) < 0.55 < 0.7 < min(found[f"{name}/blurred"]["scores"]["blur"] for name in PHOTOS)


def test_every_input_gets_its_scores_and_hashes(looked):
    found, images = looked
    for name, item in found.items():
        height, width = images[name].shape[:2]
        assert item["scores"]["short_side"] == min(height, width)
        assert item["scores"]["aspect"] == pytest.approx(max(height, width) / min(height, width), abs=1e-6)
        assert 0 <= item["scores"]["nsfw"] <= 1 and len(item["hashes"]) == len(dedup.VIEWS)
    assert found["colorwheel"]["scores"]["nsfw"] > 0.5, "NudeNet's false positive, measured for real"


def test_size_and_shape_gates_come_first_and_say_why(gates):
    sharp = {"blur": 0.3, "nsfw": 0.0}
    assert curate.gate({"short_side": 300.0, "aspect": 1.5, **sharp}, gates) == ""
    assert curate.gate({"short_side": 200.0, "aspect": 4.0, **sharp}, gates) == "too_small"
    assert curate.gate({"short_side": 300.0, "aspect": 4.0, **sharp}, gates) == "too_elongated"
    assert curate.gate({"short_side": 300.0, "aspect": 1.0, "blur": 0.3, "nsfw": 0.9}, gates) == "nsfw"
    assert curate.gate({"short_side": 300.0, "aspect": 1.0, "blur": float("nan")}, gates) == "nan_blur"
    measured = curate.measure(np.zeros((100, 400, 3), np.uint8))
    assert (measured["short_side"], measured["aspect"]) == (100.0, 4.0)


def test_a_gate_on_an_unknown_score_is_refused():
    with pytest.raises(ConfigError, match=r"curate.*unknown curation score\(s\) sharpness: allowed short_side"):
        load_pipeline("local", overrides=["curate.sharpness={max: 1}"])
