"""A run's configuration loaded and checked against the registries: generator kinds, model backends, scores,
sources. config.py holds the schemas and YAML loading; what needs the registries lives here, above them, so that
none of them imports back."""

from __future__ import annotations

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
    read_yaml,
    validate,
)
from datagen.errors import ConfigError
from datagen.scores import SCORES
from datagen.sources import check_source

OVERRIDE_TARGETS = ("task", "prompt", "pipeline")


def load_run(
    task: str,
    pipeline: str,
    *,
    out: str,
    n: int,
    seed: int = 0,
    shard_size: int = 100,
    source: str | None = None,
    input: str | None = None,
    repeat: bool = False,
    overrides: list[str] = (),
) -> RunConfig:
    """Load and cross-check everything a run needs; raises ConfigError before any work starts.

    Overrides are dotted paths into the task (bare, or prefixed `task.`), the prompt (`prompt.`) or the pipeline
    (`pipeline.`).
    """
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

    task_spec = validate(TaskSpec, raw["task"], origins["task"])
    prompt_spec = validate(PromptSpec, raw["prompt"], origins["prompt"])
    pipeline_spec = validate(PipelineSpec, raw["pipeline"], origins["pipeline"])
    run_spec = validate(
        RunSpec,
        dict(
            task=task_spec.name,
            pipeline=pipeline_spec.name,
            out=out,
            n=n,
            seed=seed,
            shard_size=shard_size,
            source=source or task_spec.sources[0],
            input=input,
            repeat=repeat,
        ),
        "command line",
    )
    if run_spec.input is None and run_spec.source in task_spec.default_inputs:
        run_spec.input = str(config_root() / task_spec.default_inputs[run_spec.source])
    caption_prompt = None
    if run_spec.source == "topics":
        paths["caption_prompt"] = find_config("prompts", "caption")
        origins["caption_prompt"] = str(paths["caption_prompt"])
        caption_prompt = validate(PromptSpec, read_yaml(paths["caption_prompt"]), origins["caption_prompt"])
    config = RunConfig(
        run=run_spec, task=task_spec, prompt=prompt_spec, pipeline=pipeline_spec, caption_prompt=caption_prompt
    )
    check(config, origins)
    return config


def load_pipeline(name: str, overrides: list[str] = ()) -> PipelineSpec:
    """One pipeline file, validated, with its backends checked (for preflight)."""
    path = find_config("pipelines", name)
    raw = read_yaml(path)
    for text in overrides:
        parts, value = parse_override(text)
        apply_override(raw, parts[1:] if parts[0] == "pipeline" and len(parts) > 1 else parts, value, text)
    spec = validate(PipelineSpec, raw, str(path))
    for role, role_spec in spec.roles.items():
        models.check_backend(role, role_spec.backend, str(path))
        models.check_model(role, role_spec, str(path))
    return spec


def _can_run(task: TaskSpec, pipeline: str) -> bool:
    """Whether a pipeline file has a generator family and the roles this task needs (a quick look, for messages)."""
    try:
        raw = read_yaml(find_config("pipelines", pipeline))
        spec = task.generator_for(str(raw.get("family", "neural")))
        if spec is None:
            return False
        needed = {"llm", *generators.roles(generators.get(spec.kind), spec.args)}
    except ConfigError:  # an unreadable file, an unknown kind, bad arguments: not a pipeline to suggest
        return False
    return needed <= set(raw.get("roles") or {})


def check(config: RunConfig, origins: dict[str, str]) -> None:
    """Cross-file checks: generator kind, roles, filters, scores, source."""
    task, pipe, run = config.task, config.pipeline, config.run
    where = origins["task"]
    spec = task.generator_for(pipe.family)
    if spec is None:
        why = "no classical method makes it" if pipe.family == "local" else "it has no neural generator yet"
        able = ", ".join(p for p in known("pipelines") if _can_run(task, p)) or "none yet"
        raise ConfigError(
            f"{where}: task {task.name!r} does not run on pipeline {pipe.name!r} (family {pipe.family}): {why}; "
            f"pipelines that run it: {able}"
        )
    generator = generators.get(spec.kind, where)
    for role in ("llm", *generators.roles(generator, spec.args, where)):
        if role not in pipe.roles:
            raise ConfigError(
                f"{origins['pipeline']}: field `roles`: task {task.name!r} needs role {role!r}, which this pipeline "
                f"does not define (it has: {', '.join(sorted(pipe.roles))})"
            )
    for role, spec in pipe.roles.items():
        models.check_backend(role, spec.backend, origins["pipeline"])
        models.check_model(role, spec, origins["pipeline"])
        try:
            # constructors are cheap and validate their args
            models.build(role, spec, **config.model_context())
        except ConfigError as e:
            raise ConfigError(f"{origins['pipeline']}: {e}") from None
    known_scores = SCORES
    for name, spec in task.filters.items():
        if name not in known_scores:
            raise ConfigError(f"{where}: field `filters.{name}`: unknown score; known: {', '.join(known_scores)}")
        low, high = known_scores[name].range
        for bound in ("min", "max"):
            value = getattr(spec, bound)
            if value is not None and not low <= value <= high:
                raise ConfigError(
                    f"{where}: field `filters.{name}.{bound}`: {value} is outside the score's range [{low}, {high}]"
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
    if run.source in ("captions", "topics") and "t2i" not in pipe.roles:
        raise ConfigError(
            f"--source {run.source}: captions without images need a text-to-image role to draw the inputs; "
            f"{origins['pipeline']} has no `roles.t2i` (pipelines with one: tiny, sd15, sdxl, emu)"
        )
    if run.source == "topics" and pipe.roles["llm"].backend == "template":
        raise ConfigError(
            f"--source topics: the LLM writes the captions, and {origins['pipeline']} uses the template writer "
            f"(roles.llm.backend: template); use a pipeline whose llm is vllm (tiny, sd15, sdxl, emu)"
        )
    if run.source not in task.sources:
        raise ConfigError(
            f"--source {run.source!r}: task {task.name!r} accepts sources {', '.join(task.sources)} ({where})"
        )
    check_source(run.source, run.input, n=run.n, repeat=run.repeat)


def roles_used(config: RunConfig, phase: str) -> set[str]:
    """The roles a phase of this run loads: write the LLM; render the generator's, the scoring models the
    pipeline has, and text-to-image for text-only sources."""
    if phase == "write":
        return {"llm"}
    spec = config.generator
    used = set(generators.roles(generators.get(spec.kind), spec.args))
    used |= {"clip", "dino", "grounding", "classifier"} & set(config.pipeline.roles)
    if config.run.source in ("captions", "topics"):
        used.add("t2i")
    return used | ({"llm"} if phase == "generate" else set())

