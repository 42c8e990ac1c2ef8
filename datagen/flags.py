"""Command-line flags built from a spec: each flag's type, default and help are its field's, written once, in the
spec's field docstrings (pydantic keeps them as descriptions), as `train` builds its own from TrainConfig.

    spec_flags(parser, RunSpec, ["pipeline", "n", ...])   # --pipeline, --n, ... default None: "not given"
    given = given_flags(args, RunSpec, [...])              # {field: value} of the flags given
    RunSpec(**given, ...)                                  # every default is the spec's

A flag defaults to None so that a command can tell what was given (a resume refuses any); the value a run gets when
a flag is not given is the field's default, shown in the help.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, get_args

from pydantic import BaseModel
from pydantic_core import PydanticUndefined


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def spec_flags(
    parser: argparse.ArgumentParser,
    spec: type[BaseModel],
    names: Sequence[str],
    choices: dict[str, Sequence[str]] | None = None,
    metavars: dict[str, str] | None = None,
    more: dict[str, str] | None = None,
) -> None:
    """One flag per named field of `spec`: booleans are switches, the rest take the field's type; a field without a
    default is a required flag. `more` adds to a field's help what only the running program knows (the registered
    sources, say)."""
    for name in names:
        field = spec.model_fields[name]
        required = field.default is PydanticUndefined
        text = " ".join(x for x in (field.description, (more or {}).get(name)) if x).replace("%", "%%")
        if not required and field.default is not None and field.default is not False:
            text += f" (default: {field.default})"
        if field.annotation is bool:
            parser.add_argument(flag_name(name), dest=name, action="store_true", default=None, help=text)
            continue
        scalar = next(t for t in (get_args(field.annotation) or (field.annotation,)) if t is not type(None))
        parser.add_argument(
            flag_name(name),
            dest=name,
            type=scalar,
            default=None,
            required=required,
            choices=(choices or {}).get(name),
            metavar=(metavars or {}).get(name),
            help=text,
        )


def given_flags(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    """The named fields whose flags were given, with their values."""
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def default(spec: type[BaseModel], name: str) -> Any:
    """A field's default, where a command needs it before it builds the spec."""
    return spec.model_fields[name].default


def overrides_flag(parser: argparse.ArgumentParser, example: str) -> None:
    """--set PATH=VALUE, repeatable: an override of a configuration field by its dotted path."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help=f"override a config field by dotted path: {example}; repeatable",
    )


def progress_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (or JSON lines)")
