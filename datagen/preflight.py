"""Before any work: is every model a pipeline names on this machine? One readable report, fetch commands included."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from datagen.config import PipelineSpec
from datagen.errors import ConfigError
from datagen.models import backend, missing_libraries, missing_packages
from datagen.models.weights import ModelMissing, fetch_command, locate


@dataclass
class Check:
    role: str
    model: str
    ok: bool
    where: str


def preflight(pipeline: PipelineSpec, build_tiny: bool = True, roles: set[str] | None = None) -> list[Check]:
    """One Check per weighted role (of `roles`, default all); tiny models are built when asked (no download)."""
    checks = []
    for role, spec in sorted(pipeline.roles.items()):
        if not backend(role, spec.backend).weights or not spec.model or (roles is not None and role not in roles):
            continue
        if spec.model.startswith("tiny:") and not build_tiny:
            checks.append(Check(role, spec.model, True, "built on first use"))
        else:
            try:
                checks.append(Check(role, spec.model, True, str(locate(spec.model, spec.revision))))
            except ModelMissing:
                checks.append(Check(role, spec.model, False, fetch_command(spec.model, spec.revision)))
        if role == "aesthetic":  # a head over the model, its own file
            from datagen.models.aesthetic import head_for

            checks.append(_head_check(role, head_for(spec), build_tiny))
        if role == "reward" and spec.args.get("checkpoint"):  # the reward model's own weights over its base
            from datagen.models.reward import checkpoint_file

            checkpoint = spec.args["checkpoint"]
            try:
                checks.append(Check(role, checkpoint, True, str(checkpoint_file(checkpoint))))
            except ModelMissing as e:
                checks.append(Check(role, checkpoint, False, str(e).split("; ", 1)[-1]))
    return checks


def _head_check(role: str, head: str, build_tiny: bool) -> Check:
    from datagen.models.aesthetic import head_path

    if head.startswith("tiny:") and not build_tiny:
        return Check(role, head, True, "built on first use")
    try:
        return Check(role, head, True, str(head_path(head)))
    except ModelMissing as e:
        return Check(role, head, False, str(e).split("; ", 1)[1])


def require(pipeline: PipelineSpec, phase: str = "generate", roles: set[str] | None = None) -> None:
    """Raise one ConfigError listing every model that is missing, with the command that fetches it: of `roles`
    when given (what a run's tasks use), else of the phase's (write: the LLM, render: the rest, generate: all).
    An OS library a role calls (the reader's Tesseract) is not required: a missing one is one line on stderr."""
    if roles is None:
        roles = set(pipeline.roles)
        if phase == "write":
            roles = {"llm"}
        elif phase == "render":
            roles.discard("llm")
    packages = missing_packages({role: spec for role, spec in pipeline.roles.items() if role in roles})
    if packages:
        raise ConfigError("; ".join(packages))
    for line in missing_libraries({role: spec for role, spec in pipeline.roles.items() if role in roles}):
        print(f"datagen: {line}", file=sys.stderr)  # once, before the run: its workers carry on without it
    missing = [c for c in preflight(pipeline, build_tiny=False, roles=roles) if not c.ok]
    if missing:
        lines = [
            f"pipeline {pipeline.name!r} needs models that are not on this machine (nothing is downloaded at "
            f"run time). Fetch them, then rerun:"
        ]
        lines += [f"  {c.role:<10} {c.model}\n             {c.where}" for c in missing]
        lines.append(
            f"(`datagen preflight --pipeline {pipeline.name}` rechecks; HF_HUB_CACHE or HF_HOME choose where "
            f"the cache is)"
        )
        raise ConfigError("\n".join(lines))


def flags(parser: argparse.ArgumentParser) -> None:
    from datagen.flags import overrides_flag

    parser.description = (
        "List each weighted role's model and where it was found; for a missing one, the command that fetches it. "
        "Tiny models are built. Exits 1 if any is missing. Nothing is downloaded."
    )
    parser.add_argument("--pipeline", required=True, help="pipeline name in pipelines/ or a YAML path")
    overrides_flag(parser, "roles.clip.model=/models/clip (the pipeline's fields)")


def run(args: argparse.Namespace) -> int:
    from datagen.resolve import load_pipeline

    checks = preflight(load_pipeline(args.pipeline, args.overrides))
    for c in checks:
        print(f"{'ok' if c.ok else 'MISSING':<8} {c.role:<10} {c.model:<45} {c.where}")
    missing = [c for c in checks if not c.ok]
    if missing:
        print(
            f"{len(missing)} model(s) missing; fetch them with the commands above (nothing is downloaded at run time)"
        )
    else:
        print(f"pipeline {args.pipeline}: every model is present ({len(checks)} checked)")
    return 1 if missing else 0
