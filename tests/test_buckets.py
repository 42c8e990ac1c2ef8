"""Aspect-ratio buckets: non-square photos become pairs in their nearest bucket (masks and boxes fitted with them),
scenes and text-to-image inputs are drawn in buckets from their seeds, every sample records its width and height,
and WebDataset, `datasets` (through the hf-parquet export), the report and the trainer read the mixed shapes."""

from __future__ import annotations

import io
import json
import math
import tarfile
from pathlib import Path

import numpy as np
import pytest
from conftest import run_inline
from PIL import Image

from datagen.errors import ConfigError
from datagen.images import bucket_list, draw_bucket, fit_square, fit_to_bucket, nearest_bucket
from datagen.resolve import load_run
from datagen.scenes import make_scene
from datagen.sources import SceneSource, ShardSource

BUCKETS = [(96, 64), (64, 96), (80, 80)]
BUCKET_SET = ["--set", "pipeline.image_size=80", "--set", "pipeline.buckets=[[96,64],[64,96],[80,80]]"]
"""The same buckets on the command line: about 80² pixels each."""
PHOTOS = {"wide.jpg": (300, 200), "tall.jpg": (200, 300), "square.png": (240, 240), "pano.jpg": (420, 170),
          "portrait.png": (180, 320)}  # fmt: skip
"""Photo -> (width, height): landscape, portrait and square ones, each with a sidecar box."""
NEAREST = {"wide.jpg": (96, 64), "tall.jpg": (64, 96), "square.png": (80, 80), "pano.jpg": (96, 64),
           "portrait.png": (64, 96)}  # fmt: skip


def photo(width: int, height: int, seed: int) -> tuple[np.ndarray, list[int]]:
    """A smooth textured picture with a red box in its middle, and the box [x0, y0, x1, y1]."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack(
        [120 + 60 * np.sin(xs / 17 + seed), 110 + 50 * np.cos(ys / 23), 100 + 40 * np.sin((xs + ys) / 31)]
    )
    image = image.transpose(1, 2, 0) + np.random.default_rng(seed).normal(0, 4, (height, width, 3))
    box = [int(width * 0.4), int(height * 0.35), int(width * 0.6), int(height * 0.65)]
    image[box[1] : box[3], box[0] : box[2]] = (210, 40, 40)
    return np.clip(image, 0, 255).astype(np.uint8), box


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for n, (name, (width, height)) in enumerate(PHOTOS.items()):
        image, box = photo(width, height, n)
        Image.fromarray(image).save(folder / name, quality=92)
        sidecar = {"caption": "a red box in a garden", "objects": [{"name": "red box", "box": box}]}
        (folder / name).with_suffix(".json").write_text(json.dumps(sidecar))
    return folder


@pytest.fixture(scope="module")
def photo_run(photos, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bucketed") / "run"
    run_inline("generate", "--task", "remove", "--source", "images", "--input", str(photos), "--pipeline", "local",
            "--n", "5", "--shard-size", "3", "--out", str(out), "--workers", "0", "--no-progress",
            *BUCKET_SET)  # fmt: skip
    return out


def tar_samples(out: Path) -> dict[str, dict[str, bytes]]:
    samples: dict[str, dict[str, bytes]] = {}
    for path in sorted((out / "shards").glob("*.tar")):
        with tarfile.open(path) as tar:
            for member in tar:
                key, suffix = member.name.split(".", 1)
                samples.setdefault(key, {})[suffix] = tar.extractfile(member).read()
    return samples


def manifest(out: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return [row for path in sorted((out / "shards").glob("*.parquet")) for row in pq.read_table(path).to_pylist()]


# ------------------------------------------------------------------------------------------- the functions


def test_nearest_bucket_is_by_aspect_ratio():
    assert nearest_bucket(300, 200, BUCKETS) == (96, 64)
    assert nearest_bucket(200, 300, BUCKETS) == (64, 96)
    assert nearest_bucket(1000, 990, BUCKETS) == (80, 80)
    assert nearest_bucket(4000, 100, BUCKETS) == (96, 64), "an extreme ratio gets the widest"
    assert nearest_bucket(16, 9, [(1024, 1024), (1360, 768), (768, 1360)]) == (1360, 768)
    assert nearest_bucket(100, 100, [(96, 64), (64, 96)]) == (96, 64), "3:2 and 2:3 tie for a square: the first"
    assert nearest_bucket(100, 100, [(64, 96), (96, 64)]) == (64, 96)
    # by the logarithm of the ratio: the boundary between 1:1 and 3:2 is their geometric mean, sqrt(1.5) = 1.225,
    # not their arithmetic mean 1.25
    edge = round(1000 * math.sqrt(1.5))
    assert nearest_bucket(edge - 2, 1000, [(80, 80), (96, 64)]) == (80, 80)
    assert nearest_bucket(edge + 2, 1000, [(80, 80), (96, 64)]) == (96, 64)
    assert nearest_bucket(1240, 1000, [(80, 80), (96, 64)]) == (96, 64)


def test_fit_to_bucket_covers_then_crops_the_middle():
    wide = np.zeros((200, 400, 3), np.uint8)
    wide[:, 190:210] = 255  # a white stripe in the middle
    out = fit_to_bucket(wide, (96, 64))
    assert out.shape == (64, 96, 3)
    assert out[:, 48].min() > 200 and out[:, 0].max() == 0 and out[:, -1].max() == 0, "the middle is kept"
    tall = fit_to_bucket(np.zeros((300, 200), np.uint8), (64, 96), nearest=True)
    assert tall.shape == (96, 64)
    square = np.random.default_rng(0).integers(0, 255, (150, 250, 3), dtype=np.uint8)
    np.testing.assert_array_equal(fit_to_bucket(square, (72, 72)), fit_square(square, 72))
    mask = np.zeros((170, 420), np.uint8)
    mask[50:120, 150:260] = 1
    fitted = fit_to_bucket(mask, (96, 64), nearest=True)
    assert set(np.unique(fitted)) == {0, 1}, "nearest keeps masks binary"


def test_draw_bucket_is_seeded_and_uses_every_bucket():
    drawn = [draw_bucket(seed, BUCKETS) for seed in range(60)]
    assert drawn == [draw_bucket(seed, BUCKETS) for seed in range(60)]
    assert set(drawn) == set(BUCKETS)
    assert all(draw_bucket(seed, [(64, 64)]) == (64, 64) for seed in range(5))
    assert bucket_list(64) == [(64, 64)] and bucket_list([[96, 64]]) == [(96, 64)]


def test_bad_bucket_configurations_say_what_is_wrong(tmp_path):
    cases = {
        "pipeline.buckets=[[100,64]]": r"field `buckets`.*\[100, 64\]: each side must be a multiple of "
        r"bucket_multiple \(8\)",
        "pipeline.buckets=[[96,64]]": r"field `buckets`.*\[96, 64\]: 6144 pixels, more than 15% off the pixel budget "
        r"image_size² = 65536; change the bucket or image_size",
        "pipeline.buckets=[]": r"field `buckets`.*give at least one \[width, height\]",
        "pipeline.buckets=[[96]]": r"field `buckets.0.1`: required field is missing",
    }
    for override, message in cases.items():
        with pytest.raises(ConfigError, match=rf"pipelines/local.yaml \(with --set overrides\): {message}"):
            load_run("remove", "local", out=str(tmp_path), n=1, overrides=[override])
    with pytest.raises(ConfigError, match=r"\[96, 64\] is listed twice"):
        load_run("remove", "local", out=str(tmp_path), n=1,
                 overrides=["pipeline.image_size=80", "pipeline.buckets=[[96,64],[96,64]]"])  # fmt: skip
    sixteens = ["pipeline.image_size=80", "pipeline.bucket_multiple=16", "pipeline.buckets=[[88,72]]"]
    with pytest.raises(ConfigError, match=r"\[88, 72\]: each side must be a multiple of bucket_multiple \(16\)"):
        load_run("remove", "local", out=str(tmp_path), n=1, overrides=sixteens)
    config = load_run("remove", "local", out=str(tmp_path), n=1, overrides=BUCKET_SET[1::2])
    assert config.pipeline.bucket_sizes() == BUCKETS
    assert load_run("remove", "local", out=str(tmp_path), n=1).pipeline.bucket_sizes() == [(256, 256)]


@pytest.mark.parametrize("pipeline", ["flux", "sdxl", "sd15"])
def test_shipped_buckets_keep_the_budget_and_the_models_multiple(pipeline, tmp_path):
    spec = load_run("remove", pipeline, out=str(tmp_path), n=1).pipeline
    sizes = spec.bucket_sizes()
    assert len(sizes) >= 7 and (spec.image_size, spec.image_size) in sizes
    assert {(h, w) for w, h in sizes} == set(sizes), "every landscape bucket has its portrait twin"
    assert spec.bucket_multiple == {"flux": 16, "sdxl": 64, "sd15": 64}[pipeline]
    assert all(w % spec.bucket_multiple == 0 and h % spec.bucket_multiple == 0 for w, h in sizes)


# -------------------------------------------------------------------------------------------------- scenes


def test_scenes_are_drawn_in_every_bucket_with_exact_masks():
    source = SceneSource(BUCKETS)
    seen = set()
    for seed in range(12):
        loaded = source.load(source.ref(seed, 0), 10**8)
        width, height = draw_bucket(seed, BUCKETS)
        assert loaded.image.shape == (height, width, 3)
        seen.add((width, height))
        for name, mask in loaded.masks.items():
            assert mask.shape == (height, width) and mask.any()
            without = loaded.scene.render(exclude=(name,))
            assert not ((without != loaded.image).any(axis=2) & ~mask).any(), "ground truth touches only the object"
            loaded.scene.render()
        assert loaded.scene.depth().shape == loaded.scene.classes().shape == (height, width)
    assert seen == set(BUCKETS)
    square = make_scene(5, 96)
    np.testing.assert_array_equal(square.render(), make_scene(5, 96, 96).render())


def test_a_local_scene_run_draws_its_buckets_from_the_seeds(tmp_path):
    run_inline("generate", "--task", "remove,color", "--pipeline", "local", "--n", "16", "--shard-size", "8", "--out",
            str(tmp_path), "--workers", "0", "--no-progress", *BUCKET_SET)  # fmt: skip
    rows = manifest(tmp_path)
    assert {(r["width"], r["height"]) for r in rows} == set(BUCKETS)
    for row in rows:
        assert (row["width"], row["height"]) == draw_bucket(row["seed"], BUCKETS), row["key"]
    samples = tar_samples(tmp_path)
    assert len(samples) >= 10
    for key, members in samples.items():
        meta = json.loads(members["json"])
        for name in ("input.png", "output.png", "mask.png"):
            assert Image.open(io.BytesIO(members[name])).size == (meta["width"], meta["height"]), (key, name)
    assert "OK" in run_inline("verify", str(tmp_path)).stdout


# ------------------------------------------------------------------------------------------ photos, readers


def test_photos_become_pairs_in_their_nearest_buckets(photo_run, photos):
    rows = manifest(photo_run)
    kept = {json.loads(r["source"])["path"]: r for r in rows if r["status"] == "kept"}
    assert set(kept) == set(PHOTOS), "every photo gives a pair"
    samples = tar_samples(photo_run)
    for name, row in kept.items():
        bucket = NEAREST[name]
        assert (row["width"], row["height"]) == bucket, name
        members = samples[row["key"]]
        meta = json.loads(members["json"])
        assert (meta["width"], meta["height"]) == bucket
        for member in ("input.png", "output.png", "mask.png"):
            assert Image.open(io.BytesIO(members[member])).size == bucket, (name, member)
        # the sidecar's box, in the photo's pixels, fitted with the photo: the record's box and the edit's mask
        box = json.loads(photos.joinpath(name).with_suffix(".json").read_text())["objects"][0]["box"]
        width, height = PHOTOS[name]
        original = np.zeros((height, width), np.uint8)
        original[box[1] : box[3], box[0] : box[2]] = 1
        fitted = fit_to_bucket(original, bucket, nearest=True) > 0
        ys, xs = np.nonzero(fitted)
        assert meta["boxes"] == [[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], name
        mask = np.asarray(Image.open(io.BytesIO(members["mask.png"])))
        assert (mask[fitted] > 0).mean() > 0.95, f"{name}: the edit covers the fitted box"
        before = np.asarray(Image.open(io.BytesIO(members["input.png"])).convert("RGB"))
        image = np.asarray(Image.open(photos / name).convert("RGB"))
        assert np.abs(before.astype(int) - fit_to_bucket(image, bucket).astype(int)).max() <= 2, "the fitted photo"


def test_webdataset_and_datasets_read_the_mixed_shapes(photo_run, tmp_path):
    import datasets
    import webdataset as wds

    from datagen.export import export
    from datagen.shards import RunFolder

    urls = RunFolder(str(photo_run)).tar_urls()
    sizes = []
    for sample in wds.WebDataset(urls, shardshuffle=False).decode("pil"):
        meta = sample["json"]
        size = (meta["width"], meta["height"])
        assert sample["input.png"].size == sample["output.png"].size == sample["mask.png"].size == size
        sizes.append(size)
    assert sorted(sizes) == sorted(NEAREST.values())

    export(str(photo_run), str(tmp_path / "hf"), "hf-parquet", progress=False)
    ds = datasets.load_dataset("parquet", data_dir=str(tmp_path / "hf"), split="train", cache_dir=str(tmp_path / "c"))
    assert ds.features["width"].dtype == "int32"
    rows = list(ds)
    assert sorted((r["width"], r["height"]) for r in rows) == sorted(NEAREST.values())
    for row in rows:
        assert row["input_image"].size == row["edited_image"].size == (row["width"], row["height"])

    run_inline("report", str(photo_run), "--no-progress")
    summary = json.loads((photo_run / "report" / "summary.json").read_text())
    assert summary["tasks"]["remove"]["sizes"] == {"64x96": 2, "80x80": 1, "96x64": 2}


def test_shard_inputs_are_fitted_to_their_nearest_bucket(tmp_path):
    with tarfile.open(tmp_path / "in.tar", "w") as tar:
        for key, (width, height) in {"a": (300, 200), "b": (200, 300)}.items():
            data = io.BytesIO()
            Image.fromarray(photo(width, height, 1)[0]).save(data, format="PNG")
            info = tarfile.TarInfo(f"{key}.png")
            info.size = len(data.getvalue())
            tar.addfile(info, io.BytesIO(data.getvalue()))
    source = ShardSource(str(tmp_path / "in.tar"), BUCKETS)
    shapes = [source.load(source.ref(0, n), 10**8).image.shape for n in range(2)]
    assert shapes == [(64, 96, 3), (96, 64, 3)]


# ----------------------------------------------------------------------------------- the trainer, t2i


def test_the_trainer_batches_by_shape_and_trains_on_mixed_shapes(tiny_dir, photo_run, tmp_path):
    import torch

    from datagen.shards import tar_urls
    from datagen.train import TrainConfig, augment, batches, train, train_shape

    assert train_shape(96, 64, 32, 8) == (40, 24) and train_shape(64, 96, 32, 8) == (24, 40)
    assert train_shape(80, 80, 32, 8) == (32, 32) and train_shape(512, 512, 256, 64) == (256, 256)
    assert train_shape(1456, 720, 256, 64) == (384, 192)
    sample = {"input": photo(96, 64, 0)[0], "output": photo(96, 64, 1)[0]}
    before, after = augment(sample, (40, 24), seed=3)
    assert before.shape == after.shape == (3, 24, 40)

    config = TrainConfig(shards=[str(photo_run)], out=str(tmp_path), tasks=["remove"], resolution=32, batch_size=2,
                         steps=3, lr=1e-3, warmup=1, checkpoint_every=3, shuffle=4)  # fmt: skip
    shapes = set()
    for step, batch in batches(config, tar_urls(config.shards)):
        assert batch["input"].shape == batch["output"].shape and batch["input"].shape[0] == 2
        shapes.add(tuple(batch["input"].shape[2:]))
        if step == 9:
            break
    assert shapes == {(24, 40), (40, 24), (32, 32)}, "each batch one shape; every bucket trained, unstretched"
    result = train(config, progress=False)
    assert result["step"] == 3 and all(math.isfinite(loss) for loss in result["losses"])
    resumed = train(TrainConfig(**{**config.__dict__, "steps": 4}), progress=False)
    again = train(TrainConfig(**{**config.__dict__, "out": str(tmp_path / "b"), "steps": 4}), progress=False)
    assert resumed["losses"] == again["losses"][3:], "resume is exact on mixed shapes"
    assert torch.isfinite(torch.tensor(again["losses"])).all()


def test_text_to_image_draws_each_item_in_its_size(tiny_dir):
    from datagen import models
    from datagen.resolve import load_pipeline

    t2i = models.build("t2i", load_pipeline("tiny").roles["t2i"], image_size=64)
    t2i.load()
    prompts, seeds, sizes = ["a red ball", "a blue box", "a red ball"], [1, 2, 3], [(96, 64), (64, 96), (96, 64)]
    images = t2i.generate_batch(prompts, seeds, sizes)
    assert [image.shape for image in images] == [(64, 96, 3), (96, 64, 3), (64, 96, 3)]
    for k in range(3):
        alone = t2i.generate(prompts[k], seeds[k], sizes[k])
        assert np.abs(alone.astype(int) - images[k].astype(int)).max() <= 1, "an item does not depend on its batch"
    assert t2i.generate_batch(["a red ball"], [1])[0].shape == (64, 64, 3), "no sizes: the pipeline's square"
    before, after = t2i.prompt_to_prompt("a red ball", "a blue ball", seed=1, size=(96, 64), cross_fraction=0.5)
    assert before.shape == after.shape == (64, 96, 3)


@pytest.mark.slow
def test_a_tiny_run_draws_text_only_inputs_in_buckets(tiny_dir, tmp_path):
    """The neural path on mixed shapes: text-to-image in buckets, Grounding DINO, SAM, inpainting chunked by shape,
    CLIP and DINO scores (the template writer stands in for vLLM, which this test does not need)."""
    captions = tmp_path / "captions.jsonl"
    captions.write_text("".join(json.dumps({"caption": f"a {c} ball on a wooden table", "objects": [f"{c} ball"]})
                                + "\n" for c in ("red", "blue", "green", "yellow")))  # fmt: skip
    out = tmp_path / "run"
    run_inline("generate", "--task", "remove", "--source", "captions", "--input", str(captions), "--pipeline", "tiny",
               "--n", "4", "--shard-size", "4", "--out", str(out), "--workers", "0", "--no-progress", *BUCKET_SET,
               "--set", "pipeline.roles.llm.backend=template", "--set", "pipeline.roles.llm.model=null",
               "--set", "pipeline.roles.llm.args={}", "--set", "pipeline.roles.judge=null")  # fmt: skip
    rows = manifest(out)
    assert len({r["key"] for r in rows if r["status"] == "kept"}) == 4
    assert len({(r["width"], r["height"]) for r in rows}) >= 2
    for row in rows:
        assert (row["width"], row["height"]) == draw_bucket(row["seed"], BUCKETS)
    for members in tar_samples(out).values():
        meta = json.loads(members["json"])
        assert Image.open(io.BytesIO(members["input.png"])).size == (meta["width"], meta["height"])
