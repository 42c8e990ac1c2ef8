"""Mends from trying datagen as a new user (issue 17): export's argument orders, input paths that leave their folder,
an image folder smaller than --n, other tasks' training samples, the scheduler's order, make's missing venv."""

from __future__ import annotations

import json
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import webdataset as wds
from conftest import REPO

from datagen import images
from datagen.cli import build_parser
from datagen.config import RunSpec
from datagen.errors import ConfigError
from datagen.resolve import load_run
from datagen.sources import BadSource, ImageFolderSource, ShardSource, check_source

SIZE = 32


def picture(seed: int, size: int = SIZE) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def png(seed: int, size: int = SIZE) -> bytes:
    return images.encode(picture(seed, size), "png")


# --------------------------------------------------------------------------------------------- export


@pytest.mark.parametrize(
    "argv",
    [
        ["OUT", "DEST", "--format", "hf-parquet"],
        ["OUT", "--format", "hf-parquet", "DEST"],  # docs/commands.md's command table
        ["--format", "hf-parquet", "OUT", "DEST"],
        ["OUT", "--format", "hf-parquet", "--dest", "DEST"],
    ],
)
def test_export_takes_dest_before_or_after_the_options(argv):
    args = build_parser().parse_args(["export", *argv])
    assert (args.out, args.dest or args.dest_arg, args.format) == ("OUT", "DEST", "hf-parquet")


def test_export_without_dest_still_asks_for_it():
    from datagen.export import run

    args = build_parser().parse_args(["export", "OUT", "--format", "imagefolder"])
    assert args.dest_arg is None and args.dest is None
    with pytest.raises(ConfigError, match="give DEST"):
        run(args)


# -------------------------------------------------------------------------------- paths leaving a folder


@pytest.fixture
def photos(tmp_path) -> Path:
    """photos/ with good.png, alias.png (a link to good.png), link.png (a link to outside/secret.png) and
    sidecar.png whose .json is a link to outside/secret.json."""
    outside, folder = tmp_path / "outside", tmp_path / "photos"
    outside.mkdir()
    folder.mkdir()
    (outside / "secret.png").write_bytes(png(99))
    (outside / "secret.json").write_text(json.dumps({"caption": "a secret caption"}))
    (folder / "good.png").write_bytes(png(1))
    (folder / "alias.png").symlink_to(folder / "good.png")
    (folder / "link.png").symlink_to(Path("..") / "outside" / "secret.png")
    (folder / "sidecar.png").write_bytes(png(2))
    (folder / "sidecar.json").symlink_to(outside / "secret.json")
    return folder


def reason(call) -> str:
    with pytest.raises(BadSource) as caught:
        call()
    return caught.value.reason


def test_image_folder_refuses_links_and_dotdot_out_of_the_folder(photos):
    source = ImageFolderSource(str(photos), SIZE)
    assert source.files == ["alias.png", "good.png", "link.png", "sidecar.png"]
    link = {"kind": "images", "path": "link.png"}
    assert reason(lambda: source.item(link)) == "path_outside_input"
    assert reason(lambda: source.load(link, 10**6)) == "path_outside_input"
    dotdot = {"kind": "images", "path": "../outside/secret.png"}  # a ref from an edited texts/ file
    assert reason(lambda: source.item(dotdot)) == "path_outside_input"
    assert reason(lambda: source.load(dotdot, 10**6)) == "path_outside_input"
    assert reason(lambda: source.item({"kind": "images", "path": "sidecar.png"})) == "path_outside_input"
    alias = source.load({"kind": "images", "path": "alias.png"}, 10**6).image
    assert (alias == source.load({"kind": "images", "path": "good.png"}, 10**6).image).all(), "a link inside is fine"


def test_a_run_over_an_image_folder_rejects_the_outside_file(photos, tmp_path):
    from datagen.runner import execute

    out = tmp_path / "out"
    config = load_run("remove", "local", out=str(out), n=4, shard_size=4, source="images", input=str(photos),
                      overrides=["pipeline.image_size=96"])  # fmt: skip
    execute(config, "generate", workers=0, progress=False)
    rows = {
        json.loads(r["source"])["path"]: r for r in pq.read_table(out / "shards" / "remove-000000.parquet").to_pylist()
    }
    assert {name: rows[name]["reason"] for name in ("link.png", "sidecar.png")} == {
        "link.png": "path_outside_input",
        "sidecar.png": "path_outside_input",
    }
    assert {rows[name]["reason"] for name in ("alias.png", "good.png")}.isdisjoint({"path_outside_input"})


def test_shard_folder_refuses_a_tar_linked_from_outside(tmp_path):
    outside, folder = tmp_path / "outside", tmp_path / "tars"
    outside.mkdir()
    folder.mkdir()
    for path, caption in ((outside / "secret.tar", "a secret caption"), (folder / "a.tar", "a mug on a desk")):
        with wds.TarWriter(str(path)) as sink:
            sink.write({"__key__": "k", "png": png(3), "txt": caption})
    (folder / "b.tar").symlink_to(outside / "secret.tar")
    source = ShardSource(str(folder), SIZE)
    assert len(source) == 2, "the outside tar stands for one sample, rejected"
    refs = [source.ref(0, i) for i in range(2)]
    assert source.item(refs[0]).caption == "a mug on a desk"
    assert refs[1]["tar"] == "b.tar"
    assert reason(lambda: source.item(refs[1])) == "path_outside_input"
    assert reason(lambda: source.load(refs[1], 10**6)) == "path_outside_input"
    assert len(ShardSource(str(folder / "b.tar"), SIZE)) == 1, "a tar named by --input itself is read"


# ------------------------------------------------------------------------------ fewer images than --n


def test_an_image_folder_smaller_than_n_stops_unless_repeat(photos):
    (photos / "link.png").unlink()
    with pytest.raises(ConfigError) as stop:
        check_source("images", str(photos), n=4)
    assert str(stop.value) == (
        f"--input {str(photos)!r} holds 3 images; --n 4 would reuse them; pass --repeat to allow it, or lower --n"
    )
    check_source("images", str(photos), n=3)
    check_source("images", str(photos), n=4, repeat=True)
    assert build_parser().parse_args(["generate", "--out", "x", "--repeat"]).repeat


@pytest.mark.skipif("repeat" not in RunSpec.model_fields, reason="needs the RunSpec field `repeat` (issue 17)")
def test_repeat_is_a_run_option_stored_in_run_json(photos, tmp_path):
    common = dict(out=str(tmp_path / "out"), n=8, source="images", input=str(photos))
    with pytest.raises(ConfigError, match="holds 4 images; --n 8 would reuse them; pass --repeat"):
        load_run("remove", "local", **common)
    config = load_run("remove", "local", repeat=True, **common)
    assert config.model_dump(mode="json")["run"]["repeat"] is True


# ---------------------------------------------------------------------------------------------- training


def training_tar(path: Path, tasks: list[str]) -> Path:
    """A tar of samples with every member a sample carries (the reader takes one that lacks any as corrupt)."""
    mask = images.encode(np.full((64, 64), 255, np.uint8), "png")
    with wds.TarWriter(str(path)) as sink:
        for n, task in enumerate(tasks):
            meta = {"task": task, "instruction": f"edit {n}", "scores": {}}
            sink.write({"__key__": f"{task}_{n:06d}", "input.png": png(n, 64), "output.png": png(n + 50, 64),
                        "mask.png": mask, "json": json.dumps(meta), "txt": f"edit {n}"})  # fmt: skip
    return path


def test_other_tasks_samples_are_filtered_not_corrupt(tmp_path):
    from datagen.train import TrainConfig, read_samples

    tar = training_tar(tmp_path / "mixed.tar", ["remove", "color"])
    settings = TrainConfig(shards=[str(tar)], out=str(tmp_path / "unused"), tasks=["remove"], shuffle=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stream = read_samples(settings, [str(tar)])
        samples = [next(stream) for _ in range(3)]
    assert {s["key"] for s in samples} == {"remove_000000"}
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if "corrupt" in m], messages
    assert messages[0] == (
        "filtered 1 training sample(s) of tasks the model was not given, the last of task 'color' (the model's "
        "tasks: remove)"
    )


def test_resume_steps_the_scheduler_after_the_optimizer(tiny_dir, tmp_path):
    from datagen.train import TrainConfig, train

    tar = training_tar(tmp_path / "remove.tar", ["remove"] * 4)
    base = dict(shards=[str(tar)], out=str(tmp_path / "run"), tasks=["remove"], resolution=32, batch_size=2,
                lr=1e-3, warmup=5, checkpoint_every=1, shuffle=4)  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(TrainConfig(steps=2, **base), progress=False)
        train(TrainConfig(steps=3, **base), progress=False)  # resumes at step 2
    assert not [w for w in caught if "lr_scheduler.step()" in str(w.message)], [str(w.message) for w in caught]
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").open()]
    assert [row["step"] for row in log] == [1, 2, 3]
    assert [row["lr"] for row in log] == pytest.approx([1e-3 * min(1.0, (k + 1) / 5) for k in (1, 2, 3)])


# -------------------------------------------------------------------------------------------------- make


@pytest.mark.skipif(shutil.which("make") is None, reason="no make on this machine")
def test_make_builds_the_environment_first_only_when_it_is_missing(tmp_path):
    def dry_run(target: str, venv: Path) -> str:
        proc = subprocess.run(["make", "-n", target, f"VENV={venv}"], cwd=REPO, capture_output=True, text=True,
                              timeout=60, check=True)  # fmt: skip
        return proc.stdout

    fresh = dry_run("generate", tmp_path / "fresh")
    assert f"-m venv {tmp_path / 'fresh'}" in fresh
    assert "pip install --no-deps --require-hashes -r requirements/cpu.lock" in fresh, "exactly the locked set"
    assert fresh.index("requirements/cpu.lock") < fresh.index("pip install --no-deps --no-build-isolation -e .")
    assert fresh.index("datagen.environment check cpu") < fresh.index(f"{tmp_path / 'fresh'}/bin/datagen generate")
    assert not (tmp_path / "fresh").exists(), "a dry run"
    ready = tmp_path / "ready"
    (ready / "bin").mkdir(parents=True)
    (ready / "bin" / "datagen").touch()
    for target in ("test", "generate"):
        assert "install" not in dry_run(target, ready), f"make {target} does not reinstall"
