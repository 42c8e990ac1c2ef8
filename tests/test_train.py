"""The editor trainer on the tiny model (CPU): it learns, resumes exactly, drops guidance as specified; the edit and
eval paths, batched ones against item by item; metrics and multi-turn thresholding against hand-computed values."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from datagen.edit import edit, edit_batch, keep_changed
from datagen.evaluate import load_pairs, pair_metrics, summarise
from datagen.resolve import load_run
from datagen.runner import execute
from datagen.train import TrainConfig, drop_masks, load_editor, train


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    config = load_run("remove", "local", out=str(out), n=16, shard_size=4, overrides=["pipeline.image_size=64"])
    execute(config, "generate", workers=0, progress=False)  # four shards: resampling order matters for resume
    return out


def config(shards, out, steps, **kw) -> TrainConfig:
    base = dict(resolution=32, batch_size=4, lr=1e-3, warmup=5, checkpoint_every=3, shuffle=16)
    return TrainConfig(shards=[str(shards)], out=str(out), steps=steps, **{**base, **kw})


def test_the_model_learns_a_handful_of_samples(tiny_dir, shards, tmp_path):
    result = train(config(shards, tmp_path, 60, checkpoint_every=60), progress=False)
    first, last = np.mean(result["losses"][:5]), np.mean(result["losses"][-5:])
    assert last < first / 4, f"loss {first:.3f} -> {last:.3f}"
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").open()]
    assert [row["step"] for row in log] == list(range(1, 61)) and all(row["samples_per_s"] > 0 for row in log)
    assert any((tmp_path / "tensorboard").glob("events.out.tfevents.*")), "TensorBoard logs"


def test_resume_gives_the_uninterrupted_losses(tiny_dir, shards, tmp_path):
    full = train(config(shards, tmp_path / "a", 5), progress=False)
    train(config(shards, tmp_path / "b", 3), progress=False)
    resumed = train(config(shards, tmp_path / "b", 5), progress=False)
    assert resumed["losses"] == full["losses"][3:], "exact: weights, optimizer, schedule and data position"
    assert sorted(p.name for p in (tmp_path / "b" / "checkpoints").iterdir()) == ["step-00000003", "step-00000005"]
    files = {p.name for p in (tmp_path / "b" / "checkpoints" / "step-00000005").iterdir()}
    assert files == {"model.safetensors", "optimizer.safetensors", "state.json"}, "no pickles"


def test_data_loader_workers_give_a_deterministic_stream(shards, tmp_path):
    from datagen.shards import tar_urls
    from datagen.train import batches

    def keys(workers: int) -> list[list[str]]:
        settings = config(shards, tmp_path, 1, workers=workers, shuffle=4)
        stream = batches(settings, tar_urls(settings.shards))
        return [[float(b["input"].sum())] + b["instruction"] for _, b in (next(stream) for _ in range(4))]

    assert keys(2) == keys(2), "two workers, the same batches twice"
    assert keys(0) == keys(0)


def test_guidance_dropout_rates():
    text, image = drop_masks(200_000, 0.05, torch.Generator().manual_seed(0))
    assert (text & ~image).float().mean() == pytest.approx(0.05, abs=0.003)
    assert (image & ~text).float().mean() == pytest.approx(0.05, abs=0.003)
    assert (text & image).float().mean() == pytest.approx(0.05, abs=0.003)


def test_edit_and_multi_turn(tiny_dir, shards, tmp_path):
    train(config(shards, tmp_path, 3), progress=False)
    model = load_editor(str(tmp_path))
    image = load_pairs([str(shards)], 1)[0]["input"]
    once = edit(model, image, "remove the ball", "remove", steps=3)
    assert once.shape == image.shape and once.dtype == np.uint8
    assert (edit(model, image, "remove the ball", "remove", steps=3) == once).all(), "seeded: the same edit"
    with pytest.raises(Exception, match="--task 'nope': the checkpoint knows"):
        edit(model, image, "x", "nope")


@pytest.fixture(scope="module")
def editor(tiny_dir, shards, tmp_path_factory):
    """A checkpoint one training step from the tiny text-to-image model, loaded on the CPU (float32)."""
    out = tmp_path_factory.mktemp("editor")
    train(config(shards, out, 1, checkpoint_every=1), progress=False)
    return load_editor(str(out), device="cpu")


def test_a_batched_edit_is_each_item_edited_alone(editor, shards):
    from datagen.images import fit_square

    inputs = [p["input"] for p in load_pairs([str(shards)], 3)]
    images = [inputs[0], inputs[0], inputs[1], fit_square(inputs[2], 72), inputs[0]]  # 72 px: a batch of its own
    instructions = ["remove the ball", "remove the ball", "remove the box", "remove the cup", "remove the ball"]
    seeds = [0, 1, 0, 0, 0]
    calls = []
    batch = edit_batch(
        editor, images, instructions, ["remove"] * 5, steps=2, seeds=seeds, on_step=lambda k, n: calls.append((k, n))
    )
    assert calls == [(1, 2), (2, 2), (1, 2), (2, 2)], "two sizes: two batches of two steps"
    for k, image in enumerate(images):
        alone = edit(editor, image, instructions[k], "remove", steps=2, seed=seeds[k])
        assert batch[k].shape == alone.shape == image.shape
        assert np.abs(batch[k].astype(int) - alone.astype(int)).max() <= 1, f"item {k} depends on its neighbours"
    assert (batch[0] == batch[4]).all(), "the same item twice in a batch: the same edit"
    assert np.abs(batch[0].astype(int) - batch[1].astype(int)).max() > 1, "each item's noise comes from its seed"


def test_eval_in_batches_gives_the_pair_by_pair_metrics_with_progress(editor, shards, capsys):
    from datagen import models
    from datagen.evaluate import evaluate
    from datagen.resolve import load_pipeline

    roles = load_pipeline("tiny").roles
    clip, dino = models.build("clip", roles["clip"]), models.build("dino", roles["dino"])
    clip.load()
    dino.load()
    pairs = load_pairs([str(shards)], 5)
    capsys.readouterr()
    rows = evaluate(pairs, clip, dino, editor, {"steps": 2}, batch_size=2)
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert (lines[0]["event"], lines[0]["done"], lines[0]["total"]) == ("progress", 0, 5), "a line before the edits"
    assert (lines[-1]["event"], lines[-1]["step"], lines[-1]["done"], lines[-1]["unit"]) == ("done", "eval", 5, "pair")
    assert lines[-1]["denoising"] == "2/2"
    stored = evaluate(pairs, clip, dino, batch_size=3, progress=False)
    assert capsys.readouterr().err == "", "--no-progress: silent"
    for pair, row, stored_row in zip(pairs, rows, stored, strict=True):
        after = edit(editor, pair["input"], pair["instruction"], "remove", steps=2)  # 64 px: the editor's own size
        for measured, output in ((row, after), (stored_row, pair["output"])):
            e_in, e_out = clip.embed_images([pair["input"], output])
            t_in, t_out = clip.embed_texts([pair["input_caption"] or " ", pair["output_caption"] or " "])
            d_in, d_out = dino.embed_images([pair["input"], output])
            alone = pair_metrics(pair["input"], output, e_in, e_out, t_in, t_out, d_in, d_out)
            assert measured["task"] == "remove"
            assert {m: measured[m] for m in alone} == pytest.approx(alone, abs=1e-3, nan_ok=True)


def test_multi_turn_threshold_keeps_unchanged_pixels_bit_exact():
    previous = np.full((32, 32, 3), 100, np.uint8)
    new = previous.copy()
    new += np.random.default_rng(0).integers(0, 3, new.shape, dtype=np.uint8)  # sub-threshold noise everywhere
    new[8:16, 8:16] = 250  # a real change
    out = keep_changed(previous, new, alpha=0.03)
    assert (out[20:, 20:] == previous[20:, 20:]).all(), "noise below alpha leaves the previous turn's pixels"
    assert (out[10:14, 10:14] == 250).all(), "the edit itself is kept"


def test_metrics_are_the_definitions():
    before = np.zeros((4, 4, 3), np.uint8)
    after = np.full((4, 4, 3), 51, np.uint8)
    e_in, e_out = np.array([1.0, 0, 0]), np.array([0.6, 0.8, 0])
    t_in, t_out = np.array([1.0, 0, 0]), np.array([0, 1.0, 0])
    row = pair_metrics(before, after, e_in, e_out, t_in, t_out, np.array([1.0, 1.0]), np.array([1.0, 0.0]))
    assert row["clip_img"] == pytest.approx(0.6) and row["clip_out"] == pytest.approx(0.8)
    assert row["clip_dir"] == pytest.approx(1.2 / (math.sqrt(0.8) * math.sqrt(2)))
    assert row["l1"] == pytest.approx(0.2) and row["dino"] == pytest.approx(1 / math.sqrt(2))
    summary = summarise([{"task": "a", **row}, {"task": "b", **{**row, "l1": 0.4}}])
    assert summary["all"]["l1"] == pytest.approx(0.3) and summary["a"]["n"] == 1


def test_train_edit_eval_from_the_command_line(tiny_dir, shards, tmp_path):
    from conftest import run_inline

    from datagen.edit import to_png

    run_inline("train", "--shards", str(shards), "--out", str(tmp_path / "run"), "--steps", "2", "--resolution", "32",
               "--batch-size", "2", "--no-progress")  # fmt: skip
    (tmp_path / "in.png").write_bytes(to_png(load_pairs([str(shards)], 1)[0]["input"]))
    proc = run_inline("edit", "--checkpoint", str(tmp_path / "run"), "--image", str(tmp_path / "in.png"),
                      "--instruction", "remove the ball", "--instruction", "remove the box", "--steps", "2",
                      "--out", str(tmp_path / "out.png"))  # fmt: skip
    assert "2 turn(s)" in proc.stdout and (tmp_path / "out-1.png").is_file() and (tmp_path / "out.png").is_file()
    done = json.loads(proc.stderr.strip().splitlines()[-1])
    assert (done["event"], done["step"], done["done"], done["total"], done["turn"]) == ("done", "edit", 4, 4, "2/2")
    proc = run_inline("eval", "--shards", str(shards), "--pipeline", "tiny", "--json", str(tmp_path / "m.json"))
    assert "CLIP: tiny:clip   DINO: tiny:dino" in proc.stdout
    numbers = json.loads((tmp_path / "m.json").read_text())["metrics"]
    assert set(numbers["all"]) == {"n", "clip_dir", "clip_img", "clip_out", "l1", "dino"} and numbers["all"]["n"] > 0
    proc = run_inline("eval", "--shards", str(shards), "--checkpoint", str(tmp_path / "run"), "--pipeline", "tiny",
                      "--limit", "3", "--batch-size", "2")  # fmt: skip
    done = json.loads(proc.stderr.strip().splitlines()[-1])
    assert (done["event"], done["step"], done["done"], done["unit"]) == ("done", "eval", 3, "pair")
    assert "remove" in proc.stdout.splitlines()[-1] and " 3 " in proc.stdout.splitlines()[-1]


def test_task_inversion_learns_only_the_new_vector(tiny_dir, tmp_path):
    from datagen.runner import execute_all

    out = tmp_path / "mix"
    configs = [
        load_run(t, "local", out=str(out), n=8, overrides=["pipeline.image_size=64"]) for t in ("color", "remove")
    ]
    execute_all(configs, "generate", workers=0, progress=False)
    known_tasks = [t for t in TrainConfig(shards=[], out="").tasks if t != "remove"]
    train(config(out, tmp_path / "base", 3, tasks=known_tasks), progress=False)
    base = load_editor(str(tmp_path / "base"))
    before = {n: p.detach().clone() for n, p in base.named_parameters()}
    inverted = config(out, tmp_path / "inv", 4, invert_task="remove", invert_from=str(tmp_path / "base"))
    result = train(inverted, progress=False)
    assert result["step"] == 4
    model = load_editor(str(tmp_path / "inv"))
    assert model.tasks == [*known_tasks, "remove"]
    for name, param in model.named_parameters():
        if name in ("unet.class_embedding.weight", "task_tokens.weight"):
            assert torch.equal(param[:-1], before[name]), "the other tasks' vectors are untouched"
            assert not torch.equal(param[-1], before[name].mean(dim=0)), "the new vector moved"
        else:
            assert torch.equal(param, before[name]), name
    with pytest.raises(Exception, match="already has that task"):
        train(config(out, tmp_path / "again", 2, invert_task="color", invert_from=str(tmp_path / "base")))


def test_data_parallel_training_under_torchrun(tiny_dir, shards, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    torchrun = Path(sys.executable).parent / "torchrun"
    args = ["train", "--shards", str(shards), "--out", str(tmp_path / "ddp"), "--steps", "3", "--resolution", "32",
            "--batch-size", "2", "--checkpoint-every", "3", "--no-progress"]  # fmt: skip
    env = {**os.environ, "DATAGEN_TINY_DIR": str(tiny_dir), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "datagen.cli", *args],
                          capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = [json.loads(line) for line in (tmp_path / "ddp" / "log.jsonl").open()]
    assert [row["step"] for row in log] == [1, 2, 3], "one log, from rank 0"
    assert (tmp_path / "ddp" / "checkpoints" / "step-00000003" / "model.safetensors").is_file()
    assert load_editor(str(tmp_path / "ddp")).tasks == TrainConfig(shards=[], out="").tasks


def test_corrupt_samples_are_skipped_with_a_counted_warning(shards, tmp_path):
    import webdataset as wds

    from datagen.train import read_samples

    good = next(iter(wds.WebDataset(str(shards / "shards" / "remove-000000.tar"), shardshuffle=False)))
    with wds.TarWriter(str(tmp_path / "mixed.tar")) as sink:
        sink.write({"__key__": "broken", "input.png": b"not a png", "output.png": b"x", "json": good["json"]})
        sink.write({k: v for k, v in good.items() if not k.startswith("__") or k == "__key__"})
    settings = config(tmp_path / "mixed.tar", tmp_path / "unused", 1, shuffle=1)
    stream = read_samples(settings, [str(tmp_path / "mixed.tar")])
    with pytest.warns(UserWarning, match=r"skipped 1 corrupt training sample\(s\), the last 'broken'"):
        samples = [next(stream) for _ in range(3)]
    assert {s["key"] for s in samples} == {good["__key__"]}


def test_shards_on_any_fsspec_filesystem(tiny_dir, shards, tmp_path):
    import fsspec

    from datagen.shards import tar_urls

    memory = fsspec.filesystem("memory")
    for tar in sorted((shards / "shards").glob("*.tar")):
        memory.pipe(f"/bucket/run/shards/{tar.name}", tar.read_bytes())
    urls = tar_urls(["memory://bucket/run"])
    assert urls == [f"memory://bucket/run/shards/remove-00000{i}.tar" for i in range(4)]
    result = train(config("memory://bucket/run", tmp_path, 2), progress=False)
    assert result["step"] == 2 and all(np.isfinite(result["losses"]))


def test_eval_of_a_checkpoint_on_a_benchmark_parquet(tiny_dir, shards, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from datagen import models
    from datagen.edit import to_png
    from datagen.evaluate import evaluate, load_benchmark
    from datagen.resolve import load_pipeline

    pairs = load_pairs([str(shards)], 2)
    rows = {
        "idx": [0, 1],
        "instruction": [p["instruction"] for p in pairs],
        "image": [{"bytes": to_png(p["input"]), "path": None} for p in pairs],
        "input_caption": [p["input_caption"] for p in pairs],
        "output_caption": [p["output_caption"] for p in pairs],
        "task": ["remove", "remove"],
    }
    pq.write_table(pa.table(rows), tmp_path / "bench.parquet")
    train(config(shards, tmp_path / "run", 1), progress=False)
    roles = load_pipeline("tiny").roles
    clip, dino = models.build("clip", roles["clip"]), models.build("dino", roles["dino"])
    clip.load()
    dino.load()
    bench = load_benchmark(str(tmp_path / "bench.parquet"), None)
    measured = evaluate(bench, clip, dino, load_editor(str(tmp_path / "run")), {"steps": 2})
    assert len(measured) == 2 and all(0 <= row["l1"] <= 1 and -1 <= row["clip_img"] <= 1 for row in measured)
    pq.write_table(pa.table({"instruction": ["x"]}), tmp_path / "bad.parquet")
    with pytest.raises(Exception, match=r"needs columns .*image.* \(it has instruction\)"):
        load_benchmark(str(tmp_path / "bad.parquet"), None)
