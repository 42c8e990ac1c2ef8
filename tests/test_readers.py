"""Proven readers: the shards of one real two-task run read by WebDataset, Hugging Face datasets, Ray Data and
datagen's own training loader, each checked against the tars read with tarfile alone."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

MEMBERS = ("input.png", "output.png", "mask.png", "json", "txt")


@pytest.fixture(scope="module")
def run_dir(two_task_run, tmp_path_factory) -> Path:
    """remove + color, two shards each, plus a tar without its stats marker (a commit cut short) to be ignored."""
    out = tmp_path_factory.mktemp("readers") / "run"
    shutil.copytree(two_task_run, out)
    shutil.copy(out / "shards" / "remove-000000.tar", out / "shards" / "remove-000009.tar")
    return out


@pytest.fixture(scope="module")
def urls(run_dir) -> list[str]:
    """The committed tars (those with their .stats.json), by name."""
    return sorted(str(p).replace(".stats.json", ".tar") for p in (run_dir / "shards").glob("*.stats.json"))


@pytest.fixture(scope="module")
def expected(urls) -> dict[str, dict[str, bytes]]:
    """key -> member suffix -> bytes, read with tarfile alone."""
    samples: dict[str, dict[str, bytes]] = {}
    for url in urls:
        with tarfile.open(url) as tar:
            for member in tar:
                key, suffix = member.name.split(".", 1)
                samples.setdefault(key, {})[suffix] = tar.extractfile(member).read()
    assert {k.split("_")[0] for k in samples} == {"remove", "color"} and len(samples) >= 16
    return samples


def pixels(data: bytes, mode: str | None = None) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    return np.asarray(image.convert(mode) if mode else image)


def test_webdataset(urls, expected):
    import webdataset as wds

    seen = []
    for sample in wds.WebDataset(urls, shardshuffle=False).decode("pil"):
        members = expected[sample["__key__"]]
        assert set(MEMBERS) <= set(sample)
        for name in ("input.png", "output.png", "mask.png"):
            assert isinstance(sample[name], Image.Image) and sample[name].mode == "RGB"  # "pil" means RGB, masks too
            assert np.array_equal(np.asarray(sample[name]), pixels(members[name], "RGB"))
        assert sample["json"] == json.loads(members["json"])
        assert sample["txt"] == members["txt"].decode()
        seen.append(sample["__key__"])
    assert sorted(seen) == sorted(expected) and len(set(seen)) == len(seen)


def test_hf_datasets_webdataset(urls, expected):
    datasets = pytest.importorskip("datasets")
    ds = datasets.load_dataset("webdataset", data_files={"train": urls}, split="train", streaming=True)
    seen = []
    for row in ds:
        members = expected[row["__key__"]]
        assert all(row.get(name) is not None for name in MEMBERS), row["__key__"]
        for name in ("input.png", "output.png", "mask.png"):
            assert isinstance(row[name], Image.Image)
            assert np.array_equal(np.asarray(row[name]), pixels(members[name]))
        assert row["txt"] == members["txt"].decode()
        meta = json.loads(members["json"])
        for field in ("key", "task", "instruction", "input_caption", "output_caption", "seed"):
            assert row["json"][field] == meta[field]
        seen.append(row["__key__"])
    assert sorted(seen) == sorted(expected) and len(set(seen)) == len(seen)


def test_hf_datasets_webdataset_json_is_lossless(urls, expected):
    datasets = pytest.importorskip("datasets")
    ds = datasets.load_dataset("webdataset", data_files={"train": urls}, split="train", streaming=True)
    for row in ds:
        assert row["json"] == json.loads(expected[row["__key__"]]["json"]), row["__key__"]


def test_ray_data(urls, expected, ray_cluster):
    import ray

    ds = ray.data.read_webdataset(urls).materialize()
    assert ds.count() == len(expected)
    assert {"__key__", *MEMBERS} <= set(ds.schema().names)
    rows = ds.take_all()
    assert sorted(r["__key__"] for r in rows) == sorted(expected)
    for row in rows:
        members = expected[row["__key__"]]
        for name in ("input.png", "output.png", "mask.png"):
            assert np.array_equal(np.asarray(row[name]), pixels(members[name]))
        assert row["json"] == json.loads(members["json"])
        assert row["txt"] == members["txt"].decode()


def test_datagen_training_loader(run_dir, urls, expected, tmp_path):
    from datagen.shards import tar_urls
    from datagen.train import TrainConfig, read_samples

    assert sorted(tar_urls([str(run_dir)])) == urls  # the run folder: committed shards only
    config = TrainConfig(shards=[str(run_dir)], out=str(tmp_path), shuffle=1)
    seen: set[str] = set()
    for n, sample in enumerate(read_samples(config, tar_urls(config.shards))):  # resampled: endless
        members = expected[sample["key"]]
        meta = json.loads(members["json"])
        assert sample["task"] == config.tasks.index(meta["task"])
        assert sample["instruction"] == members["txt"].decode()
        assert np.array_equal(sample["input"], pixels(members["input.png"]))
        assert np.array_equal(sample["output"], pixels(members["output.png"]))
        seen.add(sample["key"])
        if seen == set(expected) or n > 40 * len(expected):
            break
    assert seen == set(expected)
