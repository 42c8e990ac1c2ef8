"""A run's configuration loaded and checked against the registries: generator kinds, model backends, scores,
sources. config.py holds the schemas and YAML loading; what needs the registries lives here, above them, so that
none of them imports back. Also the runs the command line asks for (one task, a mixture, or the run in OUT) and
`datagen tasks`, which says where each task runs."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from typing import Any

from datagen import generators, models
from datagen.config import (
    PipelineSpec,
    PromptSpec,
    RunConfig,
    RunSpec,
    TaskSpec,
    apply_override,
    config_root,
    find_config,
    known,
    parse_override,
    read_thresholds,
    read_yaml,
    validate,
    with_thresholds,
)
from datagen.errors import ConfigError
from datagen.flags import default, flag_name, given_flags
from datagen.scores import SCORES
from datagen.sources import SOURCES, check_source, source_class

OVERRIDE_TARGETS = ("task", "prompt", "pipeline")


def load_run(
    task: str, pipeline: str | None = None, *, out: str, overrides: Sequence[str] = (), **run: Any
) -> RunConfig:
    """Load and cross-check everything a run needs; raises ConfigError before any work starts. `run` holds RunSpec's
    other fields (n, seed, shard_size, source, ...); those not given take RunSpec's defaults.

    Overrides are dotted paths into the task (bare, or prefixed `task.`), the prompt (`prompt.`) or the pipeline
    (`pipeline.`).
    """
    pipeline = pipeline or default(RunSpec, "pipeline")
    paths = {"task": find_config("tasks", task), "pipeline": find_config("pipelines", pipeline)}
    raw = {kind: read_yaml(path) for kind, path in paths.items()}
    prompt_name = raw["task"].get("prompt") or raw["task"].get("name") or paths["task"].stem
    paths["prompt"] = find_config("prompts", str(prompt_name))
    raw["prompt"] = read_yaml(paths["prompt"])
    origins = {kind: str(path) for kind, path in paths.items()}
    for text in overrides:
        parts, value = parse_override(text)
        target = parts[0] if parts[0] in OVERRIDE_TARGETS and len(parts) > 1 else "task"
        if target == parts[0] and len(parts) > 1 and parts[0] in OVERRIDE_TARGETS:
            parts = parts[1:]
        apply_override(raw[target], parts, value, text)
        origins[target] = f"{paths[target]} (with --set overrides)"

    if run.get("thresholds"):
        entry = read_thresholds(run["thresholds"]).get(raw["task"].get("name") or paths["task"].stem)
        raw["task"]["filters"] = with_thresholds(raw["task"].get("filters") or {}, entry)
        origins["task"] = f"{origins['task']} (with the gates of {run['thresholds']})"
    task_spec = validate(TaskSpec, raw["task"], origins["task"])
    prompt_spec = validate(PromptSpec, raw["prompt"], origins["prompt"])
    pipeline_spec = validate(PipelineSpec, raw["pipeline"], origins["pipeline"])
    run["source"] = run.get("source") or task_sources(task_spec, origins["task"])[0]
    run_spec = validate(
        RunSpec, dict(task=task_spec.name, pipeline=pipeline_spec.name, out=out, **run), "command line"
    )
    if run_spec.input is None and run_spec.source in task_spec.default_inputs:
        run_spec.input = str(config_root() / task_spec.default_inputs[run_spec.source])
    caption_prompt = None
    declared = source_class(run_spec.source)
    if "topic" in declared.fills or declared.photos:  # captions written from topics, or from uncaptioned photos
        paths["caption_prompt"] = find_config("prompts", "caption" if "topic" in declared.fills else "caption_image")
        origins["caption_prompt"] = str(paths["caption_prompt"])
        caption_prompt = validate(PromptSpec, read_yaml(paths["caption_prompt"]), origins["caption_prompt"])
    config = RunConfig(
        run=run_spec, task=task_spec, prompt=prompt_spec, pipeline=pipeline_spec, caption_prompt=caption_prompt
    )
    check(config, origins)
    return config


def load_pipeline(name: str, overrides: list[str] = ()) -> PipelineSpec:
    """One pipeline file, validated, with each role's backend, model and arguments checked (for preflight): a
    misspelt argument is an error naming the file and the field."""
    path = find_config("pipelines", name)
    raw = read_yaml(path)
    for text in overrides:
        parts, value = parse_override(text)
        apply_override(raw, parts[1:] if parts[0] == "pipeline" and len(parts) > 1 else parts, value, text)
    spec = validate(PipelineSpec, raw, str(path))
    for role, role_spec in spec.roles.items():
        models.check_args(role, role_spec, str(path))
        models.check_model(role, role_spec, str(path))
    return spec


def _can_run(task: TaskSpec, pipeline: str) -> bool:
    """Whether a pipeline file has a generator family and the roles this task needs (a quick look, for messages)."""
    try:
        raw = read_yaml(find_config("pipelines", pipeline))
        spec = task.generator_for(str(raw.get("family", "neural")), raw.get("roles") or {})
        if spec is None:
            return False
        needed = {"llm", *generators.roles(generators.get(spec.kind), spec.args)}
    except ConfigError:  # an unreadable file, an unknown kind, bad arguments: not a pipeline to suggest
        return False
    return needed <= set(raw.get("roles") or {})


def task_sources(task: TaskSpec, where: str) -> list[str]:
    """The sources a task accepts, its default first: those its file names (only to restrict them), else every
    registered one; a ConfigError names a source the registry does not know."""
    if task.sources is None:
        return list(SOURCES)
    unknown = [name for name in task.sources if name not in SOURCES]
    if unknown:
        raise ConfigError(
            f"{where}: field `sources`: unknown source(s) {', '.join(unknown)}; known: {', '.join(SOURCES)}"
        )
    return list(task.sources)


def check(config: RunConfig, origins: dict[str, str]) -> None:
    """Cross-file checks: generator kind, roles, filters, scores, source."""
    task, pipe, run = config.task, config.pipeline, config.run
    where = origins["task"]
    spec = task.generator_for(pipe.family, pipe.roles)
    if spec is None:
        why = "no classical method makes it" if pipe.family == "local" else "it has no neural generator yet"
        able = ", ".join(p for p in known("pipelines") if _can_run(task, p)) or "none yet"
        raise ConfigError(
            f"{where}: task {task.name!r} does not run on pipeline {pipe.name!r} (family {pipe.family}): {why}; "
            f"pipelines that run it: {able}"
        )
    if task.session.position == "later" and run.turns < 2:
        raise ConfigError(
            f"{where}: task {task.name!r} goes back to an earlier image of a multi-turn session, so it runs only "
            f"in sessions: give --turns 2 or more (with other tasks to make the edits it undoes)"
        )
    generator = generators.get(spec.kind, where)
    needed = (
        *generators.write_roles(generator, spec.args, run.source, where),
        *generators.roles(generator, spec.args, where, source=run.source),
    )
    for role in ("llm", *needed):
        if role not in pipe.roles:
            raise ConfigError(
                f"{origins['pipeline']}: field `roles`: task {task.name!r} needs role {role!r}, which this pipeline "
                f"does not define (it has: {', '.join(sorted(pipe.roles))})"
            )
    for role, spec in pipe.roles.items():
        models.check_args(role, spec, origins["pipeline"])
        models.check_model(role, spec, origins["pipeline"])
        try:
            # constructors are cheap and validate their args
            models.build(role, spec, **config.model_context())
        except ConfigError as e:
            raise ConfigError(f"{origins['pipeline']}: {e}") from None
    known_scores = SCORES
    for field, specs in (("filters", task.filters), ("oracle", task.oracle)):
        for name, spec in specs.items():
            if name not in known_scores:
                raise ConfigError(f"{where}: field `{field}.{name}`: unknown score; known: {', '.join(known_scores)}")
            low, high = known_scores[name].range
            for bound in ("min", "max"):
                value = getattr(spec, bound)
                if value is not None and not low <= value <= high:
                    raise ConfigError(
                        f"{where}: field `{field}.{name}.{bound}`: {value} is outside the score's range "
                        f"[{low}, {high}]"
                    )
    for name in task.select_by:
        if name.lstrip("-") not in known_scores:
            raise ConfigError(f"{where}: field `select_by`: unknown score {name!r}; known: {', '.join(known_scores)}")
    llm = pipe.roles["llm"]
    tensor_parallel = llm.args.get("tensor_parallel_size", 1)
    if llm.backend == "vllm" and llm.device == "cuda" and pipe.writer_actor.num_gpus < tensor_parallel:
        raise ConfigError(
            f"{origins['pipeline']}: field `writer_actor.num_gpus`: {pipe.writer_actor.num_gpus} GPUs cannot hold "
            f"roles.llm.args.tensor_parallel_size {tensor_parallel}; allowed: at least {tensor_parallel}"
        )
    if source_class(run.source).text_only and "t2i" not in pipe.roles:
        raise ConfigError(
            f"--source {run.source}: captions without images need a text-to-image role to draw the inputs; "
            f"{origins['pipeline']} has no `roles.t2i` (pipelines with one: tiny, sd15, sdxl, emu, flux)"
        )
    if "topic" in source_class(run.source).fills and pipe.roles["llm"].backend == "template":
        raise ConfigError(
            f"--source topics: the LLM writes the captions, and {origins['pipeline']} uses the template writer "
            f"(roles.llm.backend: template); use a pipeline whose llm is vllm (tiny, sd15, sdxl, emu, flux)"
        )
    accepted = task_sources(task, where)
    if run.source not in accepted:
        raise ConfigError(
            f"--source {run.source!r}: task {task.name!r} accepts sources {', '.join(accepted)} ({where})"
        )
    check_source(run.source, run.input, n=run.n, repeat=run.repeat)


SCORING_ROLES = ("clip", "dino", "classifier", "judge", "reward", "grounding")
"""Roles that score every rendered candidate where the pipeline has them (grounding: the detector gate, with a backend
that scores presence)."""


def roles_used(config: RunConfig, phase: str) -> dict[str, str]:
    """The one list of the models a phase of this run loads, role -> why: write, the LLM (and what reads the input
    first: the OCR of the text task on photos); render, the generator's roles for this source, every scoring model
    the pipeline has (the judge and the detector gate among them), and text-to-image for text-only sources;
    generate, both (a sessions run's render writes its later turns: the writer too). Workers load all of them at
    start (datagen/worker.py), preflight checks them, and a record names those that made or scored it."""
    used: dict[str, str] = {}
    spec, source = config.generator, config.run.source
    kind = generators.get(spec.kind)
    if phase in ("write", "generate") or (phase == "render" and config.run.turns > 1):  # sessions write as they go
        used["llm"] = "writer"
        for role in generators.write_roles(kind, spec.args, source):
            used.setdefault(role, "reader")
    if phase in ("render", "generate"):
        for role in generators.roles(kind, spec.args, source=source):
            used.setdefault(role, "generator")
        for role in SCORING_ROLES:
            if role in config.pipeline.roles:
                used.setdefault(role, "score")
        if source_class(config.run.source).text_only:
            used.setdefault("t2i", "input")
    return used


# ------------------------------------------------------------------------ runs and tasks from the command line


RUN_FLAGS = ("pipeline", "n", "seed", "shard_size", "source", "input", "repeat", "turns", "keep_prefix", "thresholds")
"""The RunSpec fields `generate`, `write` and `render` take as flags (datagen/flags.py); a resume takes none."""


def parse_mixture(text: str) -> dict[str, float]:
    """'remove:0.2,add:0.1' -> weights; 'remove,add' -> equal weights."""
    weights = {}
    for part in text.split(","):
        name, _, weight = part.strip().partition(":")
        try:
            value = float(weight) if weight else 1.0
        except ValueError:
            value = -1.0
        if not name or not math.isfinite(value) or value <= 0:
            raise ConfigError(f"--tasks {text!r}: expected NAME[:WEIGHT],... with positive weights (got {part!r})")
        weights[name] = weights.get(name, 0.0) + value
    return weights


def split_n(n: int, weights: dict[str, float]) -> dict[str, int]:
    """N samples shared by weight, largest remainders first, so the parts add up to N exactly."""
    total = sum(weights.values())
    exact = {task: n * w / total for task, w in weights.items()}
    parts = {task: int(value) for task, value in exact.items()}
    for task in sorted(exact, key=lambda t: (parts[t] - exact[t], t))[: n - sum(parts.values())]:
        parts[task] += 1
    return parts


def configs_from_flags(args: argparse.Namespace) -> list:
    """The run's task configurations: one task, a mixture (--tasks, or --task all / a,b), or OUT's run.json."""
    from datagen import sessions
    from datagen.shards.run import load_runs

    given = given_flags(args, RUN_FLAGS)
    if not args.task and not args.tasks:
        named = [flag_name(name) for name in given] + ["--set"] * bool(args.overrides)
        if named:
            raise ConfigError(
                f"{', '.join(named)} given without --task: resuming {args.out} uses its run.json as it is; start a "
                f"new run (another --out) to change the configuration"
            )
        return load_runs(args.out)
    if args.task and args.tasks:
        raise ConfigError("give --task or --tasks, not both")
    spec = args.tasks or args.task
    weights = {name: 1.0 for name in known("tasks")} if spec == "all" else parse_mixture(spec)
    n, pipeline = given.pop("n", default(RunSpec, "n")), given.pop("pipeline", default(RunSpec, "pipeline"))

    def load(name: str, n: int):
        return load_run(name, pipeline, out=args.out, n=n, overrides=args.overrides, **given)

    skipped = []
    if spec == "all":  # every task the pipeline runs (in a session, where it can stand), N shared among those
        for name in list(weights):
            try:
                why = sessions.unplaceable(load(name, 1), given.get("turns", default(RunSpec, "turns")))
            except ConfigError as e:
                why = str(e).splitlines()[0]
            if why:
                skipped.append(f"{name}: {why}")
                del weights[name]
    if n < 1:
        raise ConfigError(f"--n {n}: allowed: a positive number of samples")
    counts = split_n(n, weights) if weights else {}
    configs = [load(name, n) for name, n in counts.items() if n > 0]
    if skipped:
        print(f"skipped {len(skipped)} task(s) pipeline {pipeline!r} cannot run:", file=sys.stderr)
        for line in skipped:
            print(f"  {line}", file=sys.stderr)
    if not configs:
        raise ConfigError(f"no task of {spec!r} runs on pipeline {pipeline!r}")
    sessions.check(configs)
    return configs


def tasks_flags(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "List every task in tasks/ with its group, its generators (neural, on pipelines with an editor, local) and "
        "the pipelines in pipelines/ it runs on."
    )
    parser.add_argument("--json", action="store_true", help="as JSON, with the reason a task does not run somewhere")


def tasks(args: argparse.Namespace) -> int:
    """Every task: group, generators, and the pipelines it runs on (or why not)."""
    import tempfile

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for name in known("tasks"):
            path = find_config("tasks", name)
            task = validate(TaskSpec, read_yaml(path), str(path))
            runs, why = [], {}
            for pipeline in known("pipelines"):
                try:
                    load_run(name, pipeline, out=scratch, n=1)
                    runs.append(pipeline)
                except ConfigError as e:
                    why[pipeline] = str(e).splitlines()[0]
            neural = task.generator.kind if task.generator else "-"
            local = task.local if isinstance(task.local, str) else (task.local.kind if task.local else neural)
            rows.append(
                {
                    "task": name,
                    "group": task.group,
                    "generator": neural,
                    "local": local,
                    "editor": task.editor.kind if task.editor else neural,
                    "pipelines": runs,
                    "not_on": why,
                    "description": task.description,
                }
            )
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'task':<11} {'group':<12} {'generator':<17} {'editor':<17} {'local':<17} pipelines")
    for row in rows:
        print(
            f"{row['task']:<11} {row['group']:<12} {row['generator']:<17} {row['editor']:<17} {row['local']:<17} "
            f"{', '.join(row['pipelines']) or '(none yet)'}"
        )
    print(f"{len(rows)} tasks; `datagen tasks --json` says why a task does not run on a pipeline")
    return 0
