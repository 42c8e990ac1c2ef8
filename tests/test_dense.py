"""Depth, semantic classes and pose on tiny random models: real transformers calls, the translate tasks end to end."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
import webdataset as wds

from datagen.config import RoleSpec
from datagen.generators.translate import PALETTE
from datagen.images import decode_member, encode
from datagen.models import backend, build
from datagen.models.oracle import Detection
from datagen.models.tiny import resolve
from datagen.resolve import load_run
from datagen.runner import execute
from datagen.sources import LoadedInput

BACKEND = {"depth": "depth_anything", "semseg": "segformer", "pose": "vitpose"}
SHAPES = [(64, 64), (48, 80)]
"""The tiny pipeline's square images, and a non-square one the processors resize with its aspect kept or not."""


def adapter(role: str, model: str | None = None, dtype: str = "float32"):
    built = build(role, RoleSpec(backend=BACKEND[role], model=model or f"tiny:{role}", dtype=dtype))
    built.load()
    return built


def image(shape: tuple[int, int], seed: int = 0) -> LoadedInput:
    return LoadedInput(image=np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def dense(tiny_dir):
    return {role: adapter(role) for role in BACKEND}


@pytest.mark.parametrize("role", list(BACKEND))
def test_tiny_dense_models_are_safetensors_folders_loaded_by_the_adapters(tiny_dir, dense, role):
    folder = resolve(f"tiny:{role}")
    files = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json"} <= files, role
    assert not any(n.endswith((".bin", ".pt", ".pth", ".ckpt")) for n in files), f"{role}: pickle weights"
    assert backend(role, BACKEND[role]).weights, "preflight checks its weights"
    built = dense[role]
    assert built.model_id == f"tiny:{role}"
    assert built.model.dtype.is_floating_point and not built.model.training


def test_tiny_processors_load_offline(tiny_dir):
    from transformers import AutoImageProcessor, AutoProcessor

    assert type(AutoImageProcessor.from_pretrained(resolve("tiny:depth"))).__name__ == "DPTImageProcessorPil"
    assert type(AutoProcessor.from_pretrained(resolve("tiny:pose"))).__name__ == "VitPoseImageProcessorPil"
    with open(resolve("tiny:semseg") / "preprocessor_config.json") as f:
        assert json.load(f)["image_processor_type"] == "SegformerImageProcessor", "what the real checkpoint names"


@pytest.mark.parametrize("shape", SHAPES)
def test_depth_is_float_in_unit_range_with_the_nearest_pixel_at_one(dense, shape):
    depth = dense["depth"].depth(image(shape))
    assert depth.shape == shape and depth.dtype == np.float32
    assert depth.min() == 0.0 and depth.max() == 1.0, "scaled per image"
    assert len(np.unique(depth)) > 100, "a map, not a constant"


def test_depth_keeps_the_disparity_order(dense):
    """At the processor's own size no resizing happens: the map is the prediction, scaled, larger still nearer."""
    import torch

    model = dense["depth"]
    inputs = image((56, 56), seed=3)
    with torch.inference_mode():
        predicted = model.model(pixel_values=model._pixels([inputs.image])).predicted_depth[0].numpy()
    expected = (predicted - predicted.min()) / (predicted.max() - predicted.min())
    np.testing.assert_allclose(model.depth(inputs), expected, atol=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
def test_classes_are_uint8_labels_shifted_past_the_reserved_zero(dense, shape):
    classes = dense["semseg"].classes(image(shape))
    assert classes.shape == shape and classes.dtype == np.uint8
    assert dense["semseg"].offset == 1, "the tiny model's label 0 is LABEL_0, a class like any other"
    assert 1 <= classes.min() and classes.max() <= 8, "8 model classes -> 1..8; 0 stays 'no class'"
    assert len(np.unique(classes)) > 1


def test_a_background_label_zero_keeps_the_model_ids(dense, tmp_path):
    folder = tmp_path / "semseg-bg"
    shutil.copytree(resolve("tiny:semseg"), folder)
    config = json.loads((folder / "config.json").read_text())
    config["id2label"]["0"] = "background"
    config["label2id"] = {v: int(k) for k, v in config["id2label"].items()}
    (folder / "config.json").write_text(json.dumps(config))
    with_background = adapter("semseg", model=str(folder))
    assert with_background.offset == 0
    inputs = image((48, 80), seed=1)
    np.testing.assert_array_equal(with_background.classes(inputs), dense["semseg"].classes(inputs) - 1)


@pytest.mark.parametrize("shape", SHAPES)
def test_keypoints_are_17_per_person_in_image_pixels_near_their_box(dense, shape):
    height, width = shape
    boxes = [[2.0, 2.0, 22.0, 30.0], [width - 26.0, height - 34.0, width - 2.0, height - 2.0]]
    people = dense["pose"].keypoints(image(shape), [Detection("person", box, 0.5) for box in boxes])
    assert len(people) == 2
    for keypoints, (x0, y0, x1, y1) in zip(people, boxes, strict=True):
        assert keypoints.shape == (17, 3) and keypoints.dtype == np.float32 and np.isfinite(keypoints).all()
        # the crop is the box padded by 1.25 and widened to the model's 3:4 aspect: keypoints stay around the box
        w, h = x1 - x0, y1 - y0
        assert (keypoints[:, 0] >= x0 - w).all() and (keypoints[:, 0] <= x1 + w).all()
        assert (keypoints[:, 1] >= y0 - h / 2).all() and (keypoints[:, 1] <= y1 + h / 2).all()
        assert (keypoints[:, 2] > 0).all()
    centres = np.array([[(x0 + x1) / 2, (y0 + y1) / 2] for x0, y0, x1, y1 in boxes])
    for n, keypoints in enumerate(people):
        distances = np.linalg.norm(centres - keypoints[:, :2].mean(0), axis=1)
        assert distances.argmin() == n, "each person's keypoints sit around its own box"
    assert dense["pose"].keypoints(image(shape), []) == []


def test_same_input_same_output_and_bfloat16_runs(dense):
    inputs, person = image((48, 80), seed=2), [Detection("person", [10.0, 5.0, 40.0, 45.0], 0.5)]
    fresh = {role: adapter(role) for role in BACKEND}
    for models in (dense, fresh):
        np.testing.assert_array_equal(models["depth"].depth(inputs), dense["depth"].depth(inputs))
        np.testing.assert_array_equal(models["semseg"].classes(inputs), dense["semseg"].classes(inputs))
        np.testing.assert_array_equal(
            models["pose"].keypoints(inputs, person)[0], dense["pose"].keypoints(inputs, person)[0]
        )
    half = {role: adapter(role, dtype="bfloat16") for role in BACKEND}
    depth = half["depth"].depth(inputs)
    assert depth.dtype == np.float32 and depth.min() == 0.0 and depth.max() == 1.0
    assert half["semseg"].classes(inputs).dtype == np.uint8
    [keypoints] = half["pose"].keypoints(inputs, person)
    assert keypoints.shape == (17, 3) and keypoints.dtype == np.float32, "bf16 heatmaps reach numpy as float32"


# ----------------------------------------------------------------------------------------- end to end


@pytest.fixture
def photos(tmp_path):
    """Two non-square photos with captions: pose reads images (procedural scenes have no people)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for n, caption in enumerate(["a person walking on a beach", "two people in a park"]):
        pixels = np.random.default_rng(n).integers(0, 256, (80, 120, 3), dtype=np.uint8)
        (folder / f"photo{n}.png").write_bytes(encode(pixels, "png"))
        (folder / f"photo{n}.json").write_text(json.dumps({"caption": caption}))
    return folder


def test_translation_tasks_on_tiny_end_to_end(tiny_dir, tmp_path, photos):
    for task, role in (("depth", "depth"), ("normal", "depth"), ("segmap", "semseg"), ("pose", "pose")):
        out = tmp_path / task
        source = {"source": "images", "input": str(photos)} if task == "pose" else {}
        config = load_run(task, "tiny", out=str(out), n=2, **source)
        summary = execute(config, "generate", workers=0, progress=False)
        assert not summary.failed and not summary.written.failed, task
        rows = pq.read_table(out / "shards" / f"{task}-000000.parquet").to_pylist()
        assert len(rows) == 2 and all(r["status"] == "kept" or r["reason"] for r in rows), task
        samples = list(wds.WebDataset(str(out / "shards" / f"{task}-000000.tar"), shardshuffle=False))
        assert samples, f"{task}: tiny keeps every sample (enforce_filters: false), pose included"
        for sample in samples:
            meta = json.loads(sample["json"])
            assert json.loads(meta["models"])[role] == f"tiny:{role}", task
            before, after = decode_member(sample["input.png"]), decode_member(sample["output.png"])
            shape = (56, 80, 3) if task == "pose" else (64, 64, 3)  # the 120x80 photos keep their 3:2 shape
            assert before.shape == after.shape == shape and (before != after).any(), task
            drawn = after if json.loads(meta["params"])["direction"] == "to_map" else before
            if task == "depth":
                assert (drawn[..., 0] == drawn[..., 1]).all() and drawn.max() == 255 and drawn.min() == 0
            elif task == "segmap":
                colours = {tuple(c) for c in drawn.reshape(-1, 3)}
                assert colours <= {tuple(c) for c in PALETTE} and (0, 0, 0) not in colours, "no class 0 on tiny"
            elif task == "pose":
                assert (drawn == 255).all(axis=2).any(), "keypoints drawn as white dots"
                assert (drawn == 0).all(axis=2).mean() > 0.5, "skeletons on black"
