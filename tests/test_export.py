"""`datagen export`: a real two-task run exported in both formats, read back with Hugging Face datasets."""

from __future__ import annotations

import argparse
import glob
import io
import json
import math
import os
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from datagen.errors import ConfigError
from datagen.export import FORMATS, MARKER, add_parser, export, run
from datagen.scores import SCORES

datasets = pytest.importorskip("datasets")

IMAGES = {"input_image": "input.png", "edited_image": "output.png", "mask": "mask.png"}


@pytest.fixture(scope="module")
def run_dir(two_task_run, tmp_path_factory) -> Path:
    """remove + color, two shards each, plus a tar without its stats marker that every export must ignore."""
    out = tmp_path_factory.mktemp("export") / "run"
    shutil.copytree(two_task_run, out)
    shutil.copy(out / "shards" / "color-000000.tar", out / "shards" / "color-000009.tar")
    return out


def tar_samples(out: Path) -> dict[str, dict[str, bytes]]:
    """Every kept sample of the committed shards, read with tarfile alone: key -> member suffix -> bytes."""
    samples: dict[str, dict[str, bytes]] = {}
    for stats in sorted((out / "shards").glob("*.stats.json")):
        with tarfile.open(str(stats).replace(".stats.json", ".tar")) as tar:
            for member in tar:
                key, suffix = member.name.split(".", 1)
                samples.setdefault(key, {})[suffix] = tar.extractfile(member).read()
    return samples


def check_rows(rows, expected: dict[str, dict[str, bytes]], missing) -> None:
    """Every kept sample exactly once; images, prompt and scores equal the tar's; `missing(v)`: an absent score."""
    keys = [row["key"] for row in rows]
    assert sorted(keys) == sorted(expected) and len(set(keys)) == len(keys)
    present = absent = 0
    for row in rows:
        members = expected[row["key"]]
        meta = json.loads(members["json"])
        assert row["edit_prompt"] == members["txt"].decode() == meta["instruction"]
        assert (row["task"], row["input_caption"], row["output_caption"]) == (
            meta["task"], meta["input_caption"], meta["output_caption"])  # fmt: skip
        assert json.loads(row["json"]) == meta
        for column, member in IMAGES.items():
            stored = Image.open(io.BytesIO(members[member]))
            assert isinstance(row[column], Image.Image)
            assert row[column].size == stored.size
            assert np.array_equal(np.asarray(row[column]), np.asarray(stored)), (row["key"], column)
        for name in SCORES:
            want, got = meta["scores"].get(name), row[f"score_{name}"]
            if want is None:
                assert missing(got), (row["key"], name, got)
                absent += 1
            else:
                assert got == want, (row["key"], name)
                present += 1
    assert present and absent  # both kinds were checked (color has no gt_l1; remove has)


def test_hf_parquet_loads_with_datasets(run_dir, tmp_path):
    dest = tmp_path / "hf"
    counts = export(str(run_dir), str(dest), "hf-parquet", progress=False)
    expected = tar_samples(run_dir)
    assert counts["samples"] == len(expected) and counts["shards"] == 4
    assert counts["tasks"] == {"remove": sum(k.startswith("remove") for k in expected),
                               "color": sum(k.startswith("color") for k in expected)}  # fmt: skip
    files = sorted(glob.glob(f"{dest}/data/train/*.parquet"))
    assert [Path(f).stem for f in files] == ["color-000000", "color-000001", "remove-000000", "remove-000001"]
    assert json.loads((dest / MARKER).read_text())["samples"] == len(expected)
    assert not [p for p in dest.rglob("*") if p.name.endswith(".tmp")]

    schema = pq.read_schema(files[0])
    features = datasets.Features.from_arrow_schema(schema)
    assert all(isinstance(features[c], datasets.Image) for c in IMAGES)
    assert json.loads(schema.metadata[b"huggingface"]) == json.loads(features.arrow_schema.metadata[b"huggingface"])
    assert schema.names[:3] == ["input_image", "edit_prompt", "edited_image"]  # the diffusers script's defaults

    ds = datasets.load_dataset("parquet", data_files=files, split="train", cache_dir=str(tmp_path / "cache"))
    assert isinstance(ds.features["input_image"], datasets.Image)
    check_rows(list(ds), expected, missing=lambda v: v is None)
    # the folder alone, as the diffusers script's --dataset_name DEST loads it: the marker is not taken for data
    folder = datasets.load_dataset(str(dest), split="train", cache_dir=str(tmp_path / "cache"))
    assert folder.num_rows == len(expected)


def test_imagefolder_loads_with_datasets(run_dir, tmp_path):
    dest = tmp_path / "folder"
    counts = export(str(run_dir), str(dest), "imagefolder", progress=False)
    expected = tar_samples(run_dir)
    assert counts["samples"] == len(expected)
    assert sorted(p.name for p in (dest / "train").iterdir()) == [
        "000000", "000001", "000002", "000003"]  # fmt: skip

    ds = datasets.load_dataset("imagefolder", data_dir=str(dest), split="train", cache_dir=str(tmp_path / "cache"))
    assert all(isinstance(ds.features[c], datasets.Image) for c in IMAGES)
    check_rows(list(ds), expected, missing=lambda v: v is not None and math.isnan(v))
    # exactly how the diffusers InstructPix2Pix script loads --train_data_dir, and the columns it expects first
    pix2pix = datasets.load_dataset(
        "imagefolder", data_files={"train": os.path.join(dest, "**")}, cache_dir=str(tmp_path / "cache")
    )
    assert pix2pix["train"].column_names[:3] == ["input_image", "edit_prompt", "edited_image"]
    assert pix2pix["train"].num_rows == len(expected)


def test_shard_names_never_become_splits(run_dir, tmp_path):
    """load_dataset(DEST) infers splits from names: a task called `test` or `val` must stay in train."""
    out = tmp_path / "run"
    shutil.copytree(run_dir, out)
    for old, new in (("color-000000", "test-000000"), ("remove-000001", "val-000001")):
        for suffix in (".tar", ".parquet", ".stats.json"):
            (out / "shards" / f"{old}{suffix}").rename(out / "shards" / f"{new}{suffix}")
    for format in ("hf-parquet", "imagefolder"):  # preference: hf-parquet's layout, from a keep_rejected run
        export(str(out), str(tmp_path / format), format, progress=False)
        ds = datasets.load_dataset(str(tmp_path / format), cache_dir=str(tmp_path / "cache"))
        assert {split: d.num_rows for split, d in ds.items()} == {"train": len(tar_samples(run_dir))}, format


def test_cli_shape_and_existing_dest(run_dir, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    dest = tmp_path / "e"
    assert run(parser.parse_args(["export", str(run_dir), str(dest), "--format", "hf-parquet", "--no-progress"])) == 0
    printed = capsys.readouterr().out
    assert f"exported {len(tar_samples(run_dir))} samples" in printed and "load_dataset(" in printed

    again = ["export", str(run_dir), "--dest", str(dest), "--format", "imagefolder", "--no-progress"]
    with pytest.raises(ConfigError, match="already holds an export.*--overwrite"):
        run(parser.parse_args(again))
    assert run(parser.parse_args([*again, "--overwrite"])) == 0
    assert not (dest / "data").exists() and (dest / "train").is_dir()  # the old export was replaced, not mixed in
    assert json.loads((dest / MARKER).read_text())["format"] == "imagefolder"

    (dest / MARKER).unlink()  # an interrupted export: files but no marker
    with pytest.raises(ConfigError, match="unfinished export"):
        export(str(run_dir), str(dest), "imagefolder", progress=False)
    with pytest.raises(ConfigError, match="DEST given twice"):
        run(parser.parse_args(["export", str(run_dir), "a", "--dest", "b", "--format", "hf-parquet"]))
    with pytest.raises(ConfigError, match="give DEST"):
        run(parser.parse_args(["export", str(run_dir), "--format", "hf-parquet"]))
    with pytest.raises(SystemExit):
        parser.parse_args(["export", str(run_dir), "x", "--format", "csv"])
    assert capsys.readouterr().err.count("hf-parquet")


def test_errors_name_what_is_wrong(run_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"--format 'csv': allowed: " + ", ".join(FORMATS)):
        export(str(run_dir), str(tmp_path / "x"), "csv", progress=False)

    bare = tmp_path / "bare"
    (bare / "shards").mkdir(parents=True)
    shutil.copy(run_dir / "shards" / "remove-000000.tar", bare / "shards")  # a tar without its marker
    for out in (bare, tmp_path / "nothing"):
        with pytest.raises(ConfigError, match=f"{out}/shards: no committed shards"):
            export(str(out), str(tmp_path / "x"), "hf-parquet", progress=False)

    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    tar = broken / "shards" / "remove-000001.tar"
    tar.write_bytes(tar.read_bytes()[:3000])  # cut inside the first sample
    with pytest.raises(ConfigError, match="remove-000001.tar: unreadable shard"):
        export(str(broken), str(tmp_path / "out1"), "hf-parquet", progress=False)
    assert not (tmp_path / "out1" / MARKER).exists()
    assert not (tmp_path / "out1" / "data" / "train" / "remove-000001.parquet").exists()

    data = bytearray((run_dir / "shards" / "remove-000001.tar").read_bytes())
    data[700] ^= 0xFF  # one byte of the first image's pixels: the tar still parses, its checksum does not match
    tar.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match="remove-000001.tar: sha256 differs"):
        export(str(broken), str(tmp_path / "out2"), "imagefolder", progress=False)
    assert not (tmp_path / "out2" / "train" / "000003" / "metadata.jsonl").exists()

    (broken / "shards" / "color-000001.stats.json").write_text("{not json")
    with pytest.raises(ConfigError, match="color-000001.stats.json: unreadable stats marker"):
        export(str(broken), str(tmp_path / "out3"), "hf-parquet", progress=False)


def test_urls_for_out_and_dest(run_dir):
    """OUT and DEST as fsspec URLs (memory://): the same rows as from the local run."""
    import fsspec

    fs = fsspec.filesystem("memory")
    try:
        for path in (run_dir / "shards").iterdir():
            fs.pipe_file(f"/exp-run/shards/{path.name}", path.read_bytes())
        counts = export("memory://exp-run", "memory://exp-dest", "hf-parquet", progress=False)
        expected = tar_samples(run_dir)
        assert counts["samples"] == len(expected)
        names = sorted(fs.ls("/exp-dest/data/train", detail=False))
        keys = []
        for name in names:
            with fs.open(name, "rb") as f:
                table = pq.read_table(f)
            assert b"huggingface" in table.schema.metadata
            keys += table["key"].to_pylist()
            first = table.slice(0, 1).to_pylist()[0]
            assert first["input_image"]["bytes"] == expected[first["key"]]["input.png"]
        assert sorted(keys) == sorted(expected)
        assert fs.exists(f"/exp-dest/{MARKER}")
    finally:
        for root in ("/exp-run", "/exp-dest"):
            if fs.exists(root):
                fs.rm(root, recursive=True)


def test_every_export_has_a_dataset_card_the_hub_and_datasets_read(run_dir, tmp_path):
    """DEST/README.md: the Hub's YAML header (licence, configs, features, size) that huggingface_hub parses and
    load_dataset(DEST) follows; each task's counts, each gate with the candidates it rejected (as the shards'
    stats count them), the models with their licences, the command that made the run."""
    from huggingface_hub import DatasetCard

    from datagen.shards import RunFolder

    for format in ("hf-parquet", "imagefolder"):
        dest = tmp_path / format
        counts = export(str(run_dir), str(dest), format, progress=False)
        header = DatasetCard.load(dest / "README.md").data.to_dict()
        assert header["configs"][0]["data_files"][0]["split"] == "train"
        files = [p for p in dest.rglob("*") if p.is_file() and p.name not in ("README.md", ".datagen-export.json")]
        size = sum(p.stat().st_size for p in files)
        split = {"name": "train", "num_bytes": size, "num_examples": counts["samples"]}
        assert header["dataset_info"]["splits"] == [split]
        assert header["size_categories"] == ["n<1K"] and header["task_categories"] == ["image-to-image"]
        loaded = datasets.load_dataset(str(dest), split="train", cache_dir=str(tmp_path / "cache"))
        assert len(loaded) == counts["samples"]
        assert isinstance(loaded.features["input_image"], datasets.Image)
    features = {f["name"]: f.get("dtype") for f in header_of(tmp_path / "hf-parquet")["dataset_info"]["features"]}
    assert features["input_image"] == "image" and features["edit_prompt"] == "string"

    text = (tmp_path / "hf-parquet" / "README.md").read_text()
    run = RunFolder(run_dir)
    rejected = {}
    for shard in run.committed():
        for reason, n in (shard.stats.get("candidate_reasons") or {}).items():
            rejected[(shard.task, reason)] = rejected.get((shard.task, reason), 0) + n
    for task, config in run.configs().items():
        for name, spec in config["task"]["filters"].items():
            sides = [side for side, bound in (("low", "min"), ("high", "max")) if spec.get(bound) is not None]
            reasons = [spec["reason"]] if spec.get("reason") else [f"{name}_{side}" for side in sides]
            count = sum(rejected.get((task, reason), 0) for reason in reasons)
            assert f"| {task} | `{name}` |" in text and f"| {', '.join(reasons)} | {count} |" in text, (task, name)
    assert "| inpaint | opencv | — | — | apache-2.0 |" in text and "| llm | template | — | — | — |" in text
    assert "datagen generate --task remove,color --pipeline local" in text
    assert header_of(tmp_path / "hf-parquet")["license"] == "other"  # the template writer declares none


def header_of(dest: Path) -> dict:
    from huggingface_hub import DatasetCard

    return DatasetCard.load(dest / "README.md").data.to_dict()


def test_a_card_names_a_models_licence_that_binds_its_outputs():
    """FLUX.1 [dev]'s weights (and what they make) come under a non-commercial licence: the card's table says so."""
    from datagen.card import _licence, models_used
    from datagen.resolve import load_run

    config = load_run("remove", "flux", out="unused", n=1).model_dump(mode="json", by_alias=True)
    models = {m["role"]: m for m in models_used({"remove": config})}
    assert models["inpaint"]["license"] == "flux-1-dev-non-commercial-license"
    assert models["inpaint"]["model"] == "black-forest-labs/FLUX.1-Fill-dev"
    assert _licence(list(models.values())) == "other"
