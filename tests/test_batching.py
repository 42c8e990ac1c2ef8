"""The staged, batched render: what a batched run writes is what a batch-1 run writes, each role is called once per
stage and micro-batch, an out-of-memory micro-batch is halved, and role arguments are checked."""

from __future__ import annotations

import io
import json
import math
import tarfile

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from datagen.errors import ConfigError
from datagen.resolve import load_run
from datagen.runner import execute
from datagen.worker import ShardWorker

BATCH_1 = [
    "pipeline.micro_batch=1",
    *(f"pipeline.roles.{role}.batch_size=1" for role in ("t2i", "grounding", "segmenter", "inpaint", "clip", "dino")),
]
"""The tiny pipeline forced to one item per model call and one sample per micro-batch."""


def _run(out, overrides=()):
    """The judge is left out: its batching is the vLLM engine's, tested with it (tests/test_judge.py)."""
    config = load_run("remove", "tiny", out=str(out), n=8, shard_size=8,
                      overrides=["pipeline.roles.judge=null", *overrides])  # fmt: skip
    summary = execute(config, "generate", workers=0, progress=False)
    assert not summary.failed and summary.samples == 8
    return config


def _stats(out) -> dict:
    return json.loads((out / "shards" / "remove-000000.stats.json").read_text())


def _members(out) -> dict[str, bytes]:
    with tarfile.open(out / "shards" / "remove-000000.tar") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


@pytest.fixture(scope="module")
def runs(tiny_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("batching")
    batched = _run(root / "batched")
    single = _run(root / "single", BATCH_1)
    return root, batched, single


def test_a_batched_run_writes_what_a_batch_1_run_writes(runs):
    """Same keys, same kept set, same members; pixels within 1/255 and scores within 1e-3 (float32 on CPU: a
    batched matmul may sum in another order, see docs/pipelines.md, "Batches")."""
    root, _, _ = runs
    manifests = [
        pq.read_table(root / name / "shards" / "remove-000000.parquet").to_pylist() for name in ("batched", "single")
    ]
    batched, single = manifests
    assert [(r["key"], r["candidate"], r["status"]) for r in batched] == [
        (r["key"], r["candidate"], r["status"]) for r in single
    ]
    for a, b in zip(batched, single, strict=True):
        assert a["params"] == b["params"] and a["boxes"] == b["boxes"]
        for name, value in a.items():
            if name.startswith("score_") and value is not None:
                assert math.isclose(value, b[name], abs_tol=1e-3), (a["key"], name)
    first, second = _members(root / "batched"), _members(root / "single")
    assert list(first) == list(second)
    for name, data in first.items():
        if name.endswith(".png"):
            pixels = [np.asarray(Image.open(io.BytesIO(d))).astype(np.int16) for d in (data, second[name])]
            assert np.abs(pixels[0] - pixels[1]).max() <= 1, name


def test_each_role_is_called_once_per_stage_and_micro_batch(runs):
    root, batched, single = runs
    steps = batched.pipeline.roles["inpaint"].args["steps"]
    stats, one = _stats(root / "batched"), _stats(root / "single")
    stages = stats["stages"]
    assert stats["micro_batch"] == 8 and stats["micro_batches"] == 1 and stats["oom_backoff"] == 0
    texts = [json.loads(line) for line in (root / "batched" / "texts" / "remove-000000.jsonl").open()]
    objects = sum(len(t["objects"]) for t in texts)
    assert stages["ground"]["calls"] == {"grounding": 1} and stages["ground"]["items"] == {"grounding": objects}
    assert stages["segment"]["calls"] == {"segmenter": 1} and stages["segment"]["items"] == {"segmenter": 8}
    candidates = stats["candidates"]
    assert candidates == 24, "three mask variants per sample"
    batch = batched.pipeline.roles["inpaint"].batch_size
    assert stages["generate"]["calls"] == {"inpaint": math.ceil(candidates / batch)}
    assert stages["generate"]["forwards"] == {"inpaint": steps * math.ceil(candidates / batch)}
    images, texts = 8 * 4, 8 * 2  # one input and three outputs per sample; input and output caption
    assert stages["score"]["calls"]["clip"] == math.ceil(images / 8) + math.ceil(texts / 8)
    assert stages["score"]["calls"]["dino"] == math.ceil(images / 8)
    # batch 1: one call per item, one micro-batch per sample
    assert one["micro_batches"] == 8
    assert one["stages"]["generate"]["calls"] == {"inpaint": 24}
    assert one["stages"]["generate"]["forwards"] == {"inpaint": steps * 24}
    assert one["stages"]["ground"]["calls"]["grounding"] == one["stages"]["ground"]["items"]["grounding"]
    # the detector gate reuses the input's detections: only the three outputs of each sample are detected again
    assert stages["score"]["items"]["grounding"] == 3 * objects
    assert set(stats["timings"]) == set(stages)


def test_an_out_of_memory_micro_batch_is_halved_and_nothing_is_lost(runs, tmp_path):
    """A forward hook on the real UNet raises CUDA's out-of-memory error whenever more than one sample's three
    candidates (six rows with guidance) go through at once, as a small GPU would."""
    import torch

    root, _, _ = runs
    config = load_run("remove", "tiny", out=str(tmp_path), n=8, shard_size=8)
    execute(config, "write", workers=0, progress=False)
    worker = ShardWorker(config)

    def small_gpu(module, args):
        if args[0].shape[0] > 6:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    hook = worker.models["inpaint"].pipe.unet.register_forward_pre_hook(small_gpu)
    try:
        stats = worker.render_shard(0)
    finally:
        hook.remove()
    assert stats["oom_backoff"] == 7, "8 samples -> 4 + 4 -> 2 x 4 -> 1 x 8: seven halvings"
    assert stats["samples"] == 8 and stats["errors"] == 0 and stats["kept"] == 8
    assert list(_members(tmp_path)) == list(_members(root / "batched"))


def test_a_sample_that_runs_out_of_memory_alone_is_an_error_record(tiny_dir, tmp_path):
    import torch

    config = load_run("remove", "tiny", out=str(tmp_path), n=2, shard_size=2)
    execute(config, "write", workers=0, progress=False)
    worker = ShardWorker(config)

    def no_memory(module, args):
        raise torch.OutOfMemoryError("CUDA out of memory")

    worker.models["inpaint"].pipe.unet.register_forward_pre_hook(no_memory)
    stats = worker.render_shard(0)
    assert stats["samples"] == 2 and stats["errors"] == 2 and stats["kept"] == 0
    assert stats["reasons"] == {"error_OutOfMemoryError": 2} and stats["oom_backoff"] == 3
    rows = pq.read_table(tmp_path / "shards" / "remove-000000.parquet").to_pylist()
    assert [r["status"] for r in rows] == ["error", "error"] and "out of memory" in rows[0]["detail"]


@pytest.mark.parametrize(
    "override, field, allowed",
    [
        ("pipeline.roles.inpaint.args.channels_lst=true", "roles.inpaint.args.channels_lst", "channels_last"),
        ("pipeline.roles.grounding.args.box_treshold=0.3", "roles.grounding.args.box_treshold", "box_threshold"),
        ("pipeline.roles.clip.args.attention=flash", "roles.clip.args.attention", "sdpa"),
        ("pipeline.roles.inpaint.args.steps=0", "roles.inpaint.args.steps", "greater than or equal to 1"),
    ],
)
def test_a_misspelt_or_bad_role_argument_is_a_configuration_error(tmp_path, override, field, allowed):
    with pytest.raises(ConfigError) as error:
        load_run("remove", "tiny", out=str(tmp_path), n=1, overrides=[override])
    message = str(error.value)
    assert "pipelines/tiny.yaml" in message and f"`{field}`" in message and allowed in message, message


def test_compositing_and_pixel_scores_on_the_device_are_the_cpus_to_the_bit():
    """grounded_inpaint composites and scores the mask variants of a sample where the inpainter left its fills (a
    torch device): byte for byte the composite, and exactly the scores, of the numpy path, including empty masks
    (NaN inside_change, 0.0 outside) and the scene's ground-truth scores."""
    import torch

    from datagen.filters import pixel_scores, pixel_scores_on_device
    from datagen.generators.grounded_inpaint import composite, composite_on_device, mask_variants

    rng = np.random.default_rng(3)
    for trial in range(12):
        height, width = (int(v) for v in rng.integers(20, 80, 2))
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        found = np.zeros((height, width), bool)
        if trial % 4:  # every fourth: nothing found, every mask empty
            found[height // 4 : height // 2, width // 4 : width // 2] = True
        variants = mask_variants(found, [[width // 4, height // 4, width // 2, height // 2]], 3, 2)
        fills = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in variants]
        truth = (rng.integers(0, 256, (height, width, 3), dtype=np.uint8), rng.random((height, width)) < 0.3)
        truth = truth if trial % 2 else None
        masks = torch.stack([torch.from_numpy(mask) for mask in variants.values()])
        on_device = composite_on_device(torch.from_numpy(image), torch.stack([torch.from_numpy(f) for f in fills]),
                                        masks)  # fmt: skip
        device_truth = None if truth is None else tuple(torch.from_numpy(part) for part in truth)
        scores = pixel_scores_on_device(torch.from_numpy(image), on_device, torch.from_numpy(found), masks,
                                        device_truth)  # fmt: skip
        for mask, fill, made, measured in zip(variants.values(), fills, on_device, scores, strict=True):
            expected = composite(image, fill, mask)
            assert made.numpy().tobytes() == expected.tobytes()
            reference = pixel_scores(image, expected, found, mask, truth)
            assert measured.keys() == reference.keys()
            for name, value in reference.items():
                assert measured[name] == value or (np.isnan(value) and np.isnan(measured[name])), name
