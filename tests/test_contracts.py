"""The declared plug-in points, each contract checked once over everything on disk: every task file, every generator
kind, every model backend and every pipeline file. Nothing here counts them, so a new task is two YAML files
(tasks/NAME.yaml, prompts/NAME.yaml) and these tests pick it up; a new kind or backend is its module and one line
in its registry."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from datagen import generators, models
from datagen.classifier import TaskClassifier
from datagen.config import GeneratorSpec, PromptSpec, RoleSpec, TaskSpec, config_root, find_config, read_yaml, validate
from datagen.errors import ConfigError
from datagen.generators.base import Generator, GeneratorArgs
from datagen.models import tiny
from datagen.models.options import Options
from datagen.models.roles import PROTOCOLS, DetectorGate
from datagen.resolve import load_pipeline, load_run

UNKNOWN = "not_an_argument"
"""An argument no generator kind or backend declares."""
LOADED_ELSEWHERE = {"vllm": "an engine start takes tens of seconds on a CPU; tests/test_llm.py loads the run's one"}
"""Backends whose tiny model is built and whose adapter is constructed here, but loaded by another test."""


def config_files(folder: str) -> list[Path]:
    return sorted((config_root() / folder).glob("*.yaml"))


def generator_specs(task: TaskSpec) -> dict[str, GeneratorSpec]:
    """The task file's generators by field: `generator` (neural pipelines, and local ones unless `local` says
    otherwise), `editor` (pipelines with an editor role) and `local`."""
    specs = {"generator": task.generator, "editor": task.editor, "local": task.local}
    return {field: spec for field, spec in specs.items() if isinstance(spec, GeneratorSpec)}


# ---------------------------------------------------------------------------------------------- task files


@pytest.mark.parametrize("path", config_files("tasks"), ids=lambda path: path.stem)
def test_task_file_names_a_kind_its_arguments_and_declared_roles(path):
    where = str(path)
    task = validate(TaskSpec, read_yaml(path), where)
    specs = generator_specs(task)
    assert specs, f"{where}: no generator"
    for field, spec in specs.items():
        assert spec.kind in generators.KINDS, f"{where}: `{field}.kind` {spec.kind!r} is not a registered kind"
        cls = generators.get(spec.kind, where)
        args = cls.Args.parse(spec.args, where)
        assert args.model_dump(include=set(spec.args)) == spec.args, "every argument the file gives is used as given"
        roles = cls.roles_for(args)
        assert set(roles) <= set(PROTOCOLS), f"{where}: {spec.kind} needs undeclared roles"
        field_name = re.escape(f"{where}: field `generator.args.{UNKNOWN}`: unknown argument; allowed: ")
        with pytest.raises(ConfigError, match=field_name):
            cls.Args.parse({**spec.args, UNKNOWN: 1}, where)


@pytest.mark.parametrize("path", config_files("tasks"), ids=lambda path: path.stem)
def test_task_file_loads_on_a_pipeline_of_each_family_it_declares(path, tmp_path):
    task = validate(TaskSpec, read_yaml(path), str(path))
    for family, editor in (("local", False), ("neural", False), ("neural", True)):
        spec = task.generator_for(family, ["editor"] if editor else [])
        if spec is None or (editor and task.editor is None):
            continue
        needed = {"llm", *generators.roles(generators.get(spec.kind), spec.args)}
        pipelines = {pipe.stem: read_yaml(pipe) for pipe in config_files("pipelines")}
        able = [
            name
            for name, pipe in pipelines.items()
            if pipe.get("family", "neural") == family
            and needed <= set(pipe["roles"])
            and (task.editor is not None and "editor" in pipe["roles"]) == editor  # where `editor` is chosen
        ]
        what = f"{family} pipeline{' with an editor' if editor else ''}"
        assert able, f"{path}: no {what} has the roles {sorted(needed)}"
        turns = 2 if task.session.position == "later" else 1  # backtrack runs only in sessions
        config = load_run(path.stem, able[0], out=str(tmp_path / "never-written"), n=1, turns=turns)
        assert config.generator == spec


def test_a_new_task_is_two_yaml_files(tmp_path, monkeypatch):
    """Copies of remove's two files under a new name run, and the contracts above would collect them."""
    for folder in ("tasks", "prompts", "pipelines"):
        shutil.copytree(config_root() / folder, tmp_path / folder)
    for folder in ("tasks", "prompts"):
        text = (tmp_path / folder / "remove.yaml").read_text()
        (tmp_path / folder / "erase.yaml").write_text(re.sub(r"(?m)^(name|prompt): remove$", r"\1: erase", text))
    monkeypatch.setenv("DATAGEN_CONFIG_DIR", str(tmp_path))
    assert "erase" in [path.stem for path in config_files("tasks")]
    config = load_run("erase", "local", out=str(tmp_path / "never-written"), n=1)
    assert config.task.name == "erase" and config.prompt.name == "erase"


# ------------------------------------------------------------------------------------------ generator kinds


@pytest.mark.parametrize("kind", list(generators.KINDS))
def test_generator_kind_keeps_the_protocol(kind):
    cls = generators.get(kind)
    assert issubclass(cls.Args, GeneratorArgs), f"{kind}: `Args` is its typed arguments"
    assert cls.Args.model_config["extra"] == "forbid" and cls.Args.model_config["frozen"]
    for name, field in cls.Args.model_fields.items():
        assert field.description, f"{kind}: argument {name!r} has no docstring"
    defaults = cls.Args()  # every argument has a default: a task file may leave any out
    with pytest.raises(ConfigError, match=rf"field `generator.args.{UNKNOWN}`: unknown argument"):
        cls.Args.parse({UNKNOWN: 1})
    roles = cls.roles_for(defaults)
    assert set(roles) <= set(PROTOCOLS)
    generator = cls(defaults, {role: object() for role in roles})  # constructors only keep the roles they get
    assert isinstance(generator, Generator) and tuple(generator.roles) == tuple(roles)
    for name, value in defaults:
        with pytest.raises(ValueError, match="frozen"):
            setattr(generator.args, name, value)


# ------------------------------------------------------------------------------------------- model backends


@pytest.fixture(scope="module")
def context() -> dict:
    """What adapters are built with besides their RoleSpec (an LLM writer needs its prompt)."""
    path = find_config("prompts", "remove")
    return {"prompt": validate(PromptSpec, read_yaml(path), str(path)), "image_size": 64}


def classifier_folder(folder: Path) -> str:
    TaskClassifier(["remove", "add"]).save(folder)
    return str(folder)


MADE_HERE = {"bow": classifier_folder}
"""Backends whose model is a folder a datagen command writes (`datagen classify`), not weights with a tiny twin."""


def test_every_role_has_its_protocol_and_backends_are_unique():
    assert {entry.role for entry in models.BACKENDS} == set(PROTOCOLS)
    keys = [(entry.role, entry.name) for entry in models.BACKENDS]
    assert len(keys) == len(set(keys)), "a backend name is unique within its role"


@pytest.mark.parametrize("entry", models.BACKENDS, ids=lambda entry: f"{entry.role}-{entry.name}")
def test_backend_keeps_its_declaration(entry, context, tiny_dir, tmp_path):
    role, where = entry.role, "pipelines/contract.yaml"
    cls = models.adapter_class(entry)
    assert isinstance(cls, type), f"{entry.target} is not a class"
    assert issubclass(entry.options, Options) and entry.options.model_config["extra"] == "forbid"
    entry.options.parse({}, role)  # every argument has a default
    unknown = RoleSpec(backend=entry.name, model=entry.tiny or "unused", args={UNKNOWN: 1})
    with pytest.raises(ConfigError, match=rf"roles\.{role}\.args.*{UNKNOWN}"):
        models.build(role, unknown, **context)
    with pytest.raises(ConfigError, match=rf"^{where}: field `roles\.{role}\.args\.{UNKNOWN}`: unknown argument"):
        models.check_args(role, unknown, where)  # declared, so checked without building the adapter

    bare = RoleSpec(backend=entry.name)
    if entry.weights:
        with pytest.raises(ConfigError, match=rf"{where}: field `roles.{role}.model`: backend '{entry.name}' loads"):
            models.check_model(role, bare, where)
        assert entry.tiny is not None, "a backend with weights has a tiny twin for the tests"
        assert entry.tiny.removeprefix("tiny:") in tiny.BUILDERS, f"{entry.tiny}: no builder in models/tiny.py"
        folder = tiny.resolve(entry.tiny)  # built from config, offline
        assert (folder / "config.json").exists() or (folder / "model_index.json").exists()
    else:
        models.check_model(role, bare, where)
        assert entry.tiny is None, "a tiny twin of no weights"
        if entry.name in MADE_HERE:
            with pytest.raises(ConfigError, match=rf"field `roles.{role}.model`"):
                models.build(role, bare, **context)

    made = MADE_HERE[entry.name](tmp_path / "model") if entry.name in MADE_HERE else None
    adapter = models.build(role, RoleSpec(backend=entry.name, model=entry.tiny or made), **context)
    assert type(adapter) is cls
    if entry.name not in LOADED_ELSEWHERE:
        adapter.load()
    assert isinstance(adapter, PROTOCOLS[role]), f"{entry.target} lacks what role {role!r} is called with"
    assert isinstance(adapter.model_id, str) and adapter.model_id
    if role == "grounding":
        assert isinstance(adapter, DetectorGate) == bool(getattr(adapter, "scores_presence", False))


@pytest.mark.parametrize("path", config_files("pipelines"), ids=lambda path: path.stem)
def test_pipeline_file_names_declared_backends(path):
    pipeline = load_pipeline(path.stem)
    for role, spec in pipeline.roles.items():
        entry = models.backend(role, spec.backend, str(path))
        assert entry.role == role and (spec.model is not None or not entry.weights)
