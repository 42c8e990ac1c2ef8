"""`roles.ROLE.args` of a pipeline file are checked against the arguments its backend declares
(datagen/models/options.py), without building anything: every shipped pipeline passes, and a misspelt or bad
argument is one ConfigError naming the file, the field and what is allowed."""

from __future__ import annotations

import pytest
import yaml

from datagen import models
from datagen.config import PipelineSpec, find_config, known, read_yaml, validate
from datagen.errors import ConfigError
from datagen.models.options import WriterOptions


def pipeline_roles(path) -> dict:
    return validate(PipelineSpec, read_yaml(path), str(path)).roles


@pytest.mark.parametrize("name", known("pipelines"))
def test_every_shipped_pipeline_passes_its_backends_declared_arguments(name):
    path = find_config("pipelines", name)
    roles = pipeline_roles(path)
    assert any(spec.args for spec in roles.values()) or name == "local", "the check sees arguments to check"
    for role, spec in roles.items():
        models.check_args(role, spec, str(path))


def misspelt(tmp_path, name: str, role: str, wrong: str, right: str):
    """A copy of a shipped pipeline file with one argument of one role renamed."""
    raw = read_yaml(find_config("pipelines", name))
    args = raw["roles"][role]["args"]
    args[wrong] = args.pop(right)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path, pipeline_roles(path)[role]


@pytest.mark.parametrize(
    "name, role, wrong, right",
    [
        ("sd15", "inpaint", "stepz", "steps"),
        ("sd15", "grounding", "box_treshold", "box_threshold"),
        ("sd15", "llm", "temprature", "temperature"),  # the vLLM writer declares its arguments like any backend
        ("sd15", "judge", "image_egde", "image_edge"),
    ],
)
def test_a_misspelt_argument_names_the_file_and_the_field(tmp_path, name, role, wrong, right):
    path, spec = misspelt(tmp_path, name, role, wrong, right)
    with pytest.raises(ConfigError) as caught:
        models.check_args(role, spec, str(path))
    message = str(caught.value)
    assert message.startswith(f"{path}: field `roles.{role}.args.{wrong}`: unknown argument; allowed: ")
    assert right in message.split("allowed: ", 1)[1].split(", ")


def test_a_bad_value_names_the_field_and_what_is_allowed(tmp_path):
    path = find_config("pipelines", "tiny")
    spec = pipeline_roles(path)["llm"].model_copy(update={"args": {"temperature": 3}})
    allowed = r"field `roles\.llm\.args\.temperature`: 3; allowed: less than or equal to 2"
    with pytest.raises(ConfigError, match=rf"^{path}: {allowed}"):
        models.check_args("llm", spec, str(path))


def test_the_writer_options_default_to_what_the_writer_used_before():
    """Declaring the vLLM writer's arguments kept their defaults (temperature and top-p are Emu Edit's)."""
    assert WriterOptions.parse({}, "llm").model_dump() == {
        "tensor_parallel_size": 1,
        "temperature": 0.9,
        "top_p": 0.9,
        "max_tokens": 256,
        "max_model_len": 4096,
        "gpu_memory_utilization": 0.9,
        "kv_cache_memory_bytes": None,
        "enforce_eager": None,
        "engine_args": {},
        "see_image": False,
        "image_edge": 768,
    }


def test_preflight_and_every_run_stop_at_a_misspelt_argument(tmp_path):
    from conftest import run_inline

    from datagen.resolve import load_run

    proc = run_inline("preflight", "--pipeline", "local", "--set", "roles.inpaint.args.radus=3", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    where = str(find_config("pipelines", "local"))
    assert f"{where} (with --set overrides)" in proc.stderr or where in proc.stderr
    assert "field `roles.inpaint.args.radus`: unknown argument; allowed: method, radius" in proc.stderr
    with pytest.raises(ConfigError, match=r"local\.yaml.*field `roles\.inpaint\.args\.radus`: unknown argument"):
        load_run("remove", "local", out=str(tmp_path), n=1, overrides=["pipeline.roles.inpaint.args.radus=3"])
