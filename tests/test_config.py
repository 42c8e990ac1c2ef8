"""Every shipped YAML validates; every bad configuration fails early with file, field, value and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from datagen.config import PipelineSpec, PromptSpec, TaskSpec, config_root, read_yaml, validate
from datagen.errors import ConfigError
from datagen.resolve import load_run

ROOT = config_root()


@pytest.mark.parametrize(
    "folder,model",
    [("tasks", TaskSpec), ("prompts", PromptSpec), ("pipelines", PipelineSpec)],
)
def test_every_shipped_file_validates(folder, model):
    files = sorted((ROOT / folder).glob("*.yaml"))
    assert files, f"no YAML in {folder}/"
    for path in files:
        spec = validate(model, read_yaml(path), str(path))
        assert spec.name == path.stem, f"{path}: name {spec.name!r} must equal the file stem"


def test_every_task_has_its_prompt_and_every_prompt_its_task():
    tasks = {p.stem for p in (ROOT / "tasks").glob("*.yaml")}
    prompts = {p.stem for p in (ROOT / "prompts").glob("*.yaml")}
    # caption.yaml writes captions from topics, caption_image.yaml from photos that come without one
    assert tasks | {"caption", "caption_image"} == prompts, "every task has its agent"


def test_every_task_with_a_classical_method_loads_on_local(tmp_path):
    for path in sorted((ROOT / "tasks").glob("*.yaml")):
        if read_yaml(path).get("local") == "none":
            continue
        sessions_only = (read_yaml(path).get("session") or {}).get("position") == "later"  # backtrack
        config = load_run(path.stem, "local", out=str(tmp_path), n=10, turns=2 if sessions_only else 1)
        assert config.task.name == path.stem
        assert config.run.num_shards == 1


def _copy_configs(tmp_path: Path, monkeypatch) -> Path:
    for folder in ("tasks", "prompts", "pipelines"):
        (tmp_path / folder).mkdir(parents=True)
        for path in (ROOT / folder).glob("*.yaml"):
            (tmp_path / folder / path.name).write_text(path.read_text())
    monkeypatch.setenv("DATAGEN_CONFIG_DIR", str(tmp_path))
    return tmp_path


def _edit(path: Path, change) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data))


def test_unknown_task_and_pipeline_list_the_known_ones(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown task 'rmove'; known tasks: .*remove"):
        load_run("rmove", "local", out=str(tmp_path), n=1)
    with pytest.raises(ConfigError, match=r"unknown pipeline 'gpu9000'; known pipelines: .*local"):
        load_run("remove", "gpu9000", out=str(tmp_path), n=1)


def test_malformed_yaml_names_file_and_line(tmp_path, monkeypatch):
    root = _copy_configs(tmp_path / "cfg", monkeypatch)
    (root / "tasks" / "remove.yaml").write_text("name: remove\ngroup: [region\n")
    with pytest.raises(ConfigError) as error:
        load_run("remove", "local", out=str(tmp_path / "out"), n=1)
    message = str(error.value)
    assert "tasks/remove.yaml" in message and "line 3" in message and "not valid YAML" in message


def test_top_level_not_a_mapping(tmp_path, monkeypatch):
    root = _copy_configs(tmp_path / "cfg", monkeypatch)
    (root / "pipelines" / "local.yaml").write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match=r"pipelines/local.yaml: expected a mapping.*got list"):
        load_run("remove", "local", out=str(tmp_path / "out"), n=1)


def test_bad_value_names_file_field_value_and_allowed(tmp_path, monkeypatch):
    root = _copy_configs(tmp_path / "cfg", monkeypatch)
    _edit(root / "tasks" / "remove.yaml", lambda d: d.update(group="regional"))
    with pytest.raises(ConfigError) as error:
        load_run("remove", "local", out=str(tmp_path / "out"), n=1)
    message = str(error.value)
    assert "tasks/remove.yaml" in message
    assert "field `group`" in message
    assert "'regional'" in message
    assert "'region'" in message and "'free-form'" in message  # what is allowed


def test_unknown_field_lists_allowed_fields(tmp_path, monkeypatch):
    root = _copy_configs(tmp_path / "cfg", monkeypatch)
    _edit(root / "pipelines" / "local.yaml", lambda d: d["roles"]["inpaint"].update(bakend="opencv"))
    with pytest.raises(ConfigError) as error:
        load_run("remove", "local", out=str(tmp_path / "out"), n=1)
    message = str(error.value)
    assert "field `roles.inpaint.bakend`: unknown field; allowed:" in message
    assert "backend" in message and "batch_size" in message


def test_missing_field(tmp_path, monkeypatch):
    root = _copy_configs(tmp_path / "cfg", monkeypatch)
    _edit(root / "prompts" / "remove.yaml", lambda d: d.pop("system"))
    with pytest.raises(ConfigError, match=r"prompts/remove.yaml: field `system`: required field is missing"):
        load_run("remove", "local", out=str(tmp_path / "out"), n=1)


def test_template_placeholders_are_checked(tmp_path, monkeypatch):
    root = _copy_configs(tmp_path / "cfg", monkeypatch)
    _edit(root / "prompts" / "add.yaml", lambda d: d["templates"]["instruction"].append("Add {an} {object}"))
    with pytest.raises(ConfigError, match=r"add.yaml: .*instruction\[10\] 'Add {an} {object}': bad placeholder 'an'"):
        load_run("add", "local", out=str(tmp_path / "out"), n=1)


def test_template_writer_needs_templates(tmp_path, monkeypatch):
    root = _copy_configs(tmp_path / "cfg", monkeypatch)
    _edit(root / "prompts" / "remove.yaml", lambda d: d.pop("verbs"))
    with pytest.raises(ConfigError, match=r"local.yaml: roles.llm: backend 'template' needs `templates` and `verbs`"):
        load_run("remove", "local", out=str(tmp_path / "out"), n=1)


def test_prompt_example_must_match_schema(tmp_path, monkeypatch):
    root = _copy_configs(tmp_path / "cfg", monkeypatch)
    _edit(root / "prompts" / "remove.yaml", lambda d: d["examples"][3]["output"].pop("objects"))
    with pytest.raises(ConfigError, match=r"examples\[3\]\.output does not match the schema.*objects"):
        load_run("remove", "local", out=str(tmp_path / "out"), n=1)


def test_threshold_out_of_range_and_min_over_max(tmp_path):
    with pytest.raises(
        ConfigError, match=r"filters.inside_change.min`: 1.5 is outside the score.s range \[0.0, 1.0\]"
    ):
        load_run("remove", "local", out=str(tmp_path), n=1, overrides=["filters.inside_change.min=1.5"])
    with pytest.raises(ConfigError, match=r"filters.mask_area.*min \(0.6\) must not exceed max \(0.5\)"):
        load_run("remove", "local", out=str(tmp_path), n=1, overrides=["filters.mask_area.min=0.6"])


def test_unknown_score_generator_backend_and_role(tmp_path):
    with pytest.raises(ConfigError, match=r"field `filters.sharpness`: unknown score; known: mask_area"):
        load_run("remove", "local", out=str(tmp_path), n=1, overrides=["filters.sharpness.min=0.1"])
    with pytest.raises(ConfigError, match=r"unknown kind 'magic'; known: grounded_inpaint"):
        load_run("remove", "local", out=str(tmp_path), n=1, overrides=["generator.kind=magic"])
    with pytest.raises(
        ConfigError, match=r"roles.inpaint.backend`: unknown backend 'lama'; known for inpaint: opencv"
    ):
        load_run("remove", "local", out=str(tmp_path), n=1, overrides=["pipeline.roles.inpaint.backend=lama"])
    with pytest.raises(ConfigError, match=r"field `roles.inpaint.args.method`: 'fancy'; allowed: telea, ns"):
        load_run("remove", "local", out=str(tmp_path), n=1, overrides=["pipeline.roles.inpaint.args.method=fancy"])
    with pytest.raises(ConfigError, match=r"mask_variants`: \['blob'\]; allowed: .*exact, dilated, bbox"):
        load_run("remove", "local", out=str(tmp_path), n=1, overrides=["generator.args.mask_variants=[blob]"])


def test_missing_role(tmp_path, monkeypatch):
    root = _copy_configs(tmp_path / "cfg", monkeypatch)
    _edit(root / "pipelines" / "local.yaml", lambda d: d["roles"].pop("segmenter"))
    with pytest.raises(
        ConfigError, match=r"task 'remove' needs role 'segmenter', which this pipeline does not define"
    ):
        load_run("remove", "local", out=str(tmp_path / "out"), n=1)


def test_overrides_reach_task_prompt_and_pipeline(tmp_path):
    config = load_run(
        "remove",
        "local",
        out=str(tmp_path),
        n=250,
        shard_size=100,
        overrides=[
            "filters.mask_area.min=0.02",
            "pipeline.image_size=128",
            "prompt.verbs=[Erase]",
            "task.select_by=[-gt_l1, inside_change]",
        ],
    )
    assert config.task.filters["mask_area"].min == 0.02
    assert config.task.filters["mask_area"].max == 0.5  # untouched sibling
    assert config.pipeline.image_size == 128
    assert config.prompt.verbs == ["Erase"]
    assert config.task.select_by == ["-gt_l1", "inside_change"]
    assert config.run.num_shards == 3 and config.run.shard_len(2) == 50


def test_bad_override_syntax_and_type(tmp_path):
    with pytest.raises(ConfigError, match=r"expected PATH=VALUE"):
        load_run("remove", "local", out=str(tmp_path), n=1, overrides=["filters.mask_area.min"])
    with pytest.raises(ConfigError, match=r"with --set overrides.*field `image_size`.*multiple of 8.*got 100"):
        load_run("remove", "local", out=str(tmp_path), n=1, overrides=["pipeline.image_size=100"])


def test_source_checks(tmp_path):
    with pytest.raises(ConfigError, match=r"--source images needs --input DIR"):
        load_run("remove", "local", out=str(tmp_path), n=1, source="images")
    with pytest.raises(ConfigError, match=r"--input '/nonexistent/x': no such directory"):
        load_run("remove", "local", out=str(tmp_path), n=1, source="images", input="/nonexistent/x")
    with pytest.raises(ConfigError, match=r"--source 'flickr': unknown source; known: scene, images, "):
        load_run("remove", "local", out=str(tmp_path), n=1, source="flickr")
    with pytest.raises(ConfigError, match=r"--source captions: .* need a text-to-image role .*local.yaml has no"):
        load_run("remove", "local", out=str(tmp_path), n=1, source="captions")
    with pytest.raises(ConfigError, match=r"--source topics: the LLM writes the captions, .* template writer"):
        load_run(
            "remove",
            "local",
            out=str(tmp_path),
            n=1,
            source="topics",
            overrides=["pipeline.roles.t2i={backend: diffusers, model: tiny:t2i}"],
        )


def test_tensor_parallel_needs_the_gpus(tmp_path):
    with pytest.raises(
        ConfigError,
        match=r"emu.yaml .*: field `writer_actor.num_gpus`: 2.0 GPUs cannot hold .* 4; allowed: at least 4",
    ):
        load_run("remove", "emu", out=str(tmp_path), n=1, overrides=["pipeline.writer_actor.num_gpus=2"])


def test_run_values_validated(tmp_path):
    with pytest.raises(ConfigError, match=r"command line: field `n`: .*greater than or equal to 1.*got 0"):
        load_run("remove", "local", out=str(tmp_path), n=0)


def test_yaml_is_loaded_safely(tmp_path, monkeypatch):
    root = _copy_configs(tmp_path / "cfg", monkeypatch)
    (root / "tasks" / "remove.yaml").write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_run("remove", "local", out=str(tmp_path / "out"), n=1)
