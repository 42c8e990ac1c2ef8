"""The task contract, over every task on `local` (and on `tiny` where it runs): schema-valid records, the same
members for every task, deterministic bytes, the writer's text in the tar, roles declared; mixtures; exact edits."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import webdataset as wds

from datagen import generators
from datagen.config import TaskSpec, known, read_yaml
from datagen.errors import ConfigError
from datagen.generators.scene_edit import SceneEdit
from datagen.images import decode_member
from datagen.record import EditRecord
from datagen.resolve import SCORING_ROLES, load_run, split_n
from datagen.runner import execute, execute_all
from datagen.sources import SceneSource

ROOT = Path(__file__).resolve().parent.parent
MEMBERS = {"input.png", "output.png", "mask.png", "json", "txt"}


def runnable(pipeline: str) -> list[str]:
    out = []
    for task in known("tasks"):
        try:
            load_run(task, pipeline, out="/nonexistent-dir-not-created", n=1)
            out.append(task)
        except ConfigError:
            pass
    return out


def check_contract(config, out: Path, strict: bool = True) -> None:
    """strict (local): something is kept and every pair is an edit; random tiny models may produce neither."""
    schema = jsonschema.Draft202012Validator(config.prompt.output_schema)
    texts = [
        json.loads(line) for p in sorted((out / "texts").glob(f"{config.task.name}-*.jsonl")) for line in p.open()
    ]
    written = {t["key"]: t for t in texts}
    for text in texts:
        if text["status"] == "ok":
            answer = {
                k: text[k]
                for k in ("instruction", "input_caption", "output_caption", "objects")
                if k in config.prompt.output_schema["properties"]
            }
            assert list(schema.iter_errors({**answer, **text["edit"]})) == [], text["key"]
        else:
            assert text["reason"], "every rejected record says why"
    tars = sorted(str(p) for p in (out / "shards").glob(f"{config.task.name}-*.tar"))
    generator = generators.get(config.generator.kind)
    declared = set(generators.roles(generator, config.generator.args)) | set(SCORING_ROLES) | {"llm"}
    samples = list(wds.WebDataset(tars, shardshuffle=False, empty_check=False))
    assert samples or not strict, f"{config.task.name}: nothing kept"
    for sample in samples:
        assert set(sample) - {"__key__", "__url__", "__local_path__"} == MEMBERS, config.task.name
        meta = json.loads(sample["json"])
        text = written[sample["__key__"]]
        assert meta["instruction"] == text["instruction"] == sample["txt"].decode()
        assert meta["output_caption"] == text["output_caption"] and meta["objects"] == text["objects"]
        assert set(json.loads(meta["models"])) <= declared, f"{config.task.name} used roles it does not declare"
        before, after, mask = (decode_member(sample[k]) for k in ("input.png", "output.png", "mask.png"))
        assert before.shape == after.shape and mask.shape == before.shape[:2]
        assert (before[mask == 0] == after[mask == 0]).all(), f"{config.task.name}: pixels changed outside the mask"
        assert (before != after).any() or not strict, f"{config.task.name}: the pair is no edit"


def declared(family: str) -> set[str]:
    """The tasks whose files give them a generator on pipelines of `family` (what a new task file declares), but
    those that run only in multi-turn sessions (backtrack: tests/test_sessions.py)."""
    specs = {name: TaskSpec.model_validate(read_yaml(ROOT / "tasks" / f"{name}.yaml")) for name in known("tasks")}
    return {
        name
        for name, spec in specs.items()
        if spec.generator_for(family) is not None and spec.session.position != "later"
    }


def test_every_task_file_has_its_prompt_and_emu_edits_16_tasks_are_there():
    tasks = {p.stem for p in (ROOT / "tasks").glob("*.yaml")}
    for task in tasks:
        assert (ROOT / "prompts" / f"{task}.yaml").is_file(), task
    emu_edit = {"local", "remove", "add", "texture", "background", "global", "style", "text", "detect", "segment",
                "color", "depth", "normal", "sketch", "pose", "segmap"}  # fmt: skip
    assert emu_edit <= tasks, "a new task is added beside them, never instead"


def test_every_task_on_local_keeps_the_contract(tmp_path):
    tasks = runnable("local")
    assert set(tasks) == declared("local"), "every task whose file declares a classical method runs on local"
    for task in tasks:
        config = load_run(task, "local", out=str(tmp_path / task), n=6, overrides=["pipeline.image_size=96"])
        summary = execute(config, "generate", workers=0, progress=False)
        assert not summary.failed
        check_contract(config, tmp_path / task)
        again = load_run(task, "local", out=str(tmp_path / f"{task}-again"), n=6, overrides=["pipeline.image_size=96"])
        execute(again, "generate", workers=0, progress=False)
        name = f"shards/{task}-000000.tar"
        assert (tmp_path / task / name).read_bytes() == (tmp_path / f"{task}-again" / name).read_bytes(), task


def test_pose_says_where_it_runs(tmp_path):
    with pytest.raises(
        ConfigError,
        match=r"task 'pose' does not run on pipeline 'local'.*no classical method.*"
        r"that run it: emu, flux, sd15, sdxl, tiny, tiny-flux",
    ):
        load_run("pose", "local", out=str(tmp_path), n=1)
    with pytest.raises(ConfigError, match=r"--source 'scene': task 'pose' accepts sources captions, images, shards"):
        load_run("pose", "tiny", out=str(tmp_path), n=1, source="scene")
    config = load_run("pose", "tiny", out=str(tmp_path), n=1)
    assert config.run.source == "captions" and config.run.input.endswith("inputs/people.txt"), "its default input"


@pytest.mark.parametrize(
    "edit, field, value",
    [("replace", "new_object", None), ("retexture", "texture", "dotted"), ("background", "background", "grass field")],
)
def test_scene_edits_are_the_re_rendered_scene(edit, field, value):
    source = SceneSource(96)
    ref = source.ref(5, 0)
    inputs = source.load(ref, 10**7)
    target = source.item(ref).objects[0]
    if value is None:
        value = next(
            f"green striped {s}"
            for s in ("ball", "box", "ring", "star", "pyramid", "diamond")
            if all(s not in o for o in source.item(ref).objects)
        )
    record = EditRecord(
        key="k", task="t", shard=0, index=0, seed=1, source=ref, objects=[target], params={field: value}
    )
    [cand] = SceneEdit(SceneEdit.Args(edit=edit), {}).candidates(record, inputs, np.random.default_rng(0))
    assert (cand.input_image[cand.mask == 0] == cand.output_image[cand.mask == 0]).all()
    scene = source.load(ref, 10**7).scene
    if edit == "background":
        scene.background = value
        objects = np.logical_or.reduce(list(inputs.masks.values()))
        assert (cand.output_image[objects] == cand.input_image[objects]).all(), "the foreground is untouched"
    else:
        obj = next(o for o in scene.objects if o.name == target)
        if edit == "replace":
            obj.color, obj.pattern, obj.shape = value.split()
        else:
            obj.pattern = value
    assert (cand.output_image == scene.render()).all(), "the output is the edited scene, exactly"
    assert cand.scores["outside_l1"] == 0.0


def test_mixture_splits_n_and_shares_one_run_directory(tmp_path):
    assert split_n(10, {"remove": 0.2, "add": 0.1}) == {"remove": 7, "add": 3}
    assert sum(split_n(641, {t: 1.0 for t in known("tasks")}).values()) == 641
    configs = [
        load_run(task, "local", out=str(tmp_path), n=n, overrides=["pipeline.image_size=96"])
        for task, n in split_n(9, {"remove": 2, "color": 1}).items()
    ]
    summaries = execute_all(configs, "generate", workers=0, progress=False)
    assert [s.samples for s in summaries] == [6, 3]
    run = json.loads((tmp_path / "run.json").read_text())
    assert set(run["runs"]) == {"remove", "color"}
    assert {p.name.split("-")[0] for p in (tmp_path / "shards").glob("*.tar")} == {"remove", "color"}
    with pytest.raises(ConfigError, match=r"holds a run of task\(s\) color, remove, not remove"):
        execute(configs[0], "generate", workers=0, progress=False)


def test_the_tiny_stack_runs_every_task(tiny_dir, tmp_path):
    tasks = runnable("tiny")
    assert set(tasks) == declared("neural"), "every task with a neural generator runs on the tiny stack"
    configs = [load_run(task, "tiny", out=str(tmp_path), n=2) for task in tasks]
    summaries = execute_all(configs, "generate", workers=0, progress=False)
    for config, summary in zip(configs, summaries, strict=True):
        assert not summary.failed and summary.written.samples == 2, config.task.name
    again = [load_run(task, "tiny", out=str(tmp_path / "again"), n=2) for task in tasks]
    execute_all(again, "generate", workers=0, progress=False)
    for config in configs:
        check_contract(config, tmp_path, strict=False)
        for name in (f"texts/{config.task.name}-000000.jsonl", f"shards/{config.task.name}-000000.tar"):
            assert (tmp_path / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name


def test_text_to_image_draws_the_source_caption_not_the_rewritten_one(tiny_dir, tmp_path):
    from datagen import models as roles

    captions = tmp_path / "captions.txt"
    captions.write_text("a dog on a sofa\na red car in front of a house\n")
    config = load_run("depth", "tiny", out=str(tmp_path / "out"), n=6, source="captions", input=str(captions))
    execute(config, "generate", workers=0, progress=False)
    texts = [json.loads(line) for line in (tmp_path / "out" / "texts" / "depth-000000.jsonl").open()]
    assert [t["source_caption"] for t in texts] == ["a dog on a sofa", "a red car in front of a house"] * 3
    t2i = roles.build("t2i", config.pipeline.roles["t2i"], image_size=config.pipeline.image_size)
    t2i.load()
    seeds = {t["key"]: (t["seed"], t["source_caption"]) for t in texts}
    tar = str(tmp_path / "out" / "shards" / "depth-000000.tar")
    for sample in wds.WebDataset(tar, shardshuffle=False, empty_check=False):
        meta = json.loads(sample["json"])
        seed, caption = seeds[sample["__key__"]]
        from_map = json.loads(meta["params"])["direction"] == "from_map"
        photo = decode_member(sample["output.png" if from_map else "input.png"])
        # drawn in a batch of the shard's captions: the same image within 1/255 (docs/pipelines.md, "Batches")
        drawn = t2i.generate(caption, seed=seed).astype(np.int16)
        assert np.abs(photo - drawn).max() <= 1, "the photo side is the source caption's image"
        rewritten = t2i.generate(meta["output_caption"] or "a cat", seed=seed).astype(np.int16)
        assert np.abs(photo - rewritten).mean() > 2, "not the image of another caption (far above the batch tolerance)"
