"""FLUX.1 on the tiny-flux pipeline: Fill as `inpaint` under grounded_inpaint, Kontext as `editor` under
instruct_edit (whole image, and inside the grounded guard), the adapters' padding, batching and forward counts, and
the arguments both check.

The runs write their instructions with the template writer and leave the judge out (`--set` overrides): the vLLM
writer and judge have their own tests, and without their engines these runs take seconds."""

from __future__ import annotations

import json

import numpy as np
import pytest

from datagen import models
from datagen.config import RoleSpec
from datagen.errors import ConfigError
from datagen.images import decode_member
from datagen.resolve import load_pipeline, load_run
from datagen.runner import execute_all
from datagen.shards import RunFolder

QUICK = ["pipeline.roles.llm={backend: template}", "pipeline.roles.judge=null"]
"""Instructions from the templates, no judge: only the FLUX roles and the scoring models load."""
TASKS = ("remove", "style", "texture")
"""Fill under grounded_inpaint; Kontext on the whole image (two guidance values); Kontext inside the object guard."""


@pytest.fixture(scope="module")
def flux_run(tiny_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("flux") / "run"
    configs = [load_run(task, "tiny-flux", out=str(out), n=4, overrides=QUICK) for task in TASKS]
    summaries = execute_all(configs, "generate", workers=0, progress=False)
    assert all(not summary.failed for summary in summaries)
    return RunFolder(out)


def kept_pairs(folder: RunFolder, task: str):
    """(meta, input, output, mask) of every kept sample of `task`."""
    for shard in folder.committed(task):
        for sample in folder.samples(shard):
            images = {name: decode_member(data) for name, (_, data) in sample.images.items()}
            yield sample.meta, images["input"], images["output"], images["mask"]


def stage(folder: RunFolder, task: str, name: str) -> dict:
    (shard,) = folder.committed(task)
    return shard.stats["stages"][name]


def test_a_task_chooses_the_editor_where_the_pipeline_has_one(tmp_path):
    on = {pipe: load_run("style", pipe, out=str(tmp_path), n=1).generator.kind for pipe in ("tiny-flux", "tiny")}
    assert on == {"tiny-flux": "instruct_edit", "tiny": "prompt_to_prompt"}
    back = load_run("style", "tiny-flux", out=str(tmp_path), n=1, overrides=["editor=null"])
    assert back.generator.kind == "prompt_to_prompt", "--set editor=null goes back to the task's generator"
    assert load_run("remove", "tiny-flux", out=str(tmp_path), n=1).pipeline.roles["inpaint"].backend == "flux_fill"


def test_fill_removal_keeps_every_pixel_outside_the_mask(flux_run):
    pairs = list(kept_pairs(flux_run, "remove"))
    assert len(pairs) == 4
    for meta, before, after, mask in pairs:
        assert before.shape == after.shape == (72, 72, 3), "padded to 80 for FLUX, cropped back to the input's size"
        assert (before[mask == 0] == after[mask == 0]).all()
        assert (before[mask == 255] != after[mask == 255]).any(), "the masked region was repainted"
        assert json.loads(meta["models"])["inpaint"] == "tiny:flux_fill"
    generate = stage(flux_run, "remove", "generate")
    assert generate["items"]["inpaint"] == 4 * 3, "three mask variants per sample, all in the micro-batch's call"
    assert generate["forwards"]["inpaint"] == 2 * generate["calls"]["inpaint"], "2 steps, one forward each"


def test_kontext_edits_the_whole_image_with_each_seed_and_guidance(flux_run):
    rows = list(flux_run.rows("style"))
    by_sample: dict[str, list] = {}
    for row in rows:
        by_sample.setdefault(row["key"], []).append(json.loads(row["params"]))
    assert len(by_sample) == 4
    for params in by_sample.values():
        draws = sorted((p["guidance"], p["edit_seed"]) for p in params)
        assert len(set(draws)) == 4 and {g for g, _ in draws} == {2.5, 4.0}, "2 seeds x 2 guidance values"
        assert not any(p["guarded"] for p in params) and {p["region"] for p in params} == {"image"}
    for meta, before, after, mask in kept_pairs(flux_run, "style"):
        assert (mask == 255).all(), "no region: the whole image is the edit"
        assert np.abs(before.astype(int) - after.astype(int)).mean() > 1, "the editor redrew it"
        assert json.loads(meta["models"])["editor"] == "tiny:flux_kontext"
    generate = stage(flux_run, "style", "generate")
    assert generate["items"]["editor"] == 16 and generate["calls"]["editor"] == 2, "one call per guidance value"
    assert generate["forwards"]["editor"] == 2 * generate["calls"]["editor"]


def test_kontext_inside_the_grounded_guard_changes_nothing_outside(flux_run):
    pairs = list(kept_pairs(flux_run, "texture"))
    assert pairs
    for meta, before, after, mask in pairs:
        params = json.loads(meta["params"])
        assert params["guarded"] and params["mask_variant"] == "dilated" and meta["boxes"]
        assert 0 < (mask > 0).mean() < 1, "a region, not the whole image"
        assert (before[mask == 0] == after[mask == 0]).all(), "pixels outside the guard are the input's own"
        assert set(json.loads(meta["models"])) >= {"editor", "grounding", "segmenter"}
    assert stage(flux_run, "texture", "generate")["items"]["editor"] == 4 * 3


@pytest.fixture(scope="module")
def editor(tiny_dir):
    adapter = models.build("editor", load_pipeline("tiny-flux").roles["editor"])
    adapter.load()
    return adapter


def test_editor_batches_like_single_items_and_keeps_odd_sizes(editor):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (50, 70, 3), np.uint8), rng.integers(0, 256, (50, 70, 3), np.uint8)]
    calls, forwards = editor.calls, editor.forwards
    batched = editor.edit_batch(images, ["make it night", "make it snow"], [1, 2], [2.5, 2.5])
    assert [image.shape for image in batched] == [(50, 70, 3)] * 2, "padded to 64 x 80 and cropped back"
    assert (editor.calls - calls, editor.forwards - forwards) == (1, 2)
    alone = editor.edit_batch(images[1:], ["make it snow"], [2])[0]
    assert np.abs(alone.astype(int) - batched[1].astype(int)).max() <= 1, "an item never depends on its neighbours"
    stronger = editor.edit_batch(images[1:], ["make it snow"], [2], [9.0])[0]
    assert np.abs(stronger.astype(int) - alone.astype(int)).max() > 0, "guidance reaches the transformer"


def test_flux_arguments_are_checked():
    with pytest.raises(ConfigError, match=r"roles\.editor\.args\.strength.*unknown"):
        models.build("editor", RoleSpec(backend="flux_kontext", model="tiny:flux_kontext", args={"strength": 0.5}))
    with pytest.raises(ConfigError, match=r"roles\.inpaint\.args\.steps"):
        models.build("inpaint", RoleSpec(backend="flux_fill", model="tiny:flux_fill", args={"steps": 0}))
    fill = models.build("inpaint", RoleSpec(backend="flux_fill", model="tiny:flux_fill"))
    kontext = models.build("editor", RoleSpec(backend="flux_kontext", model="tiny:flux_kontext"))
    assert (fill.options.guidance, kontext.guidance) == (30.0, 2.5), "each model's own default guidance"


def test_instruct_edit_arguments_and_roles_are_checked(tmp_path):
    with pytest.raises(ConfigError, match=r"generator\.args\.seeds"):
        load_run("style", "tiny-flux", out=str(tmp_path), n=1, overrides=["editor.args.seeds=0"])
    with pytest.raises(ConfigError, match=r"generator\.args\.region"):
        load_run("style", "tiny-flux", out=str(tmp_path), n=1, overrides=["editor.args.region=everywhere"])
    with pytest.raises(ConfigError, match=r"task 'texture' needs role 'segmenter'"):
        load_run("texture", "tiny-flux", out=str(tmp_path), n=1, overrides=["pipeline.roles.segmenter=null"])
