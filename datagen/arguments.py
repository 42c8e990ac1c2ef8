"""Typed arguments of the plug-ins a YAML file configures: a generator kind's `generator.args` (task files) and a
model backend's `roles.ROLE.args` (pipeline files).

Each plug-in declares its arguments as pydantic fields (type, default, range, a docstring each). An unknown,
misspelt or out-of-range argument is a ConfigError naming the field, the value and what is allowed, before any work
starts; nothing is ignored silently.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from datagen.errors import ConfigError

Parsed = TypeVar("Parsed", bound=BaseModel)


class Arguments(BaseModel):
    """A plug-in's arguments: unknown keys are errors, and a parsed value cannot change under the code using it."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)


def parse_arguments(model: type[Parsed], args: dict[str, Any], field: str, owner: str, where: str = "") -> Parsed:
    """`args` checked against `model`'s fields; a ConfigError says `[where: ]field `FIELD.NAME`: value; allowed: ...`.

    owner: what takes the arguments ("backend", "generator"), for the message of one that takes none.
    """
    try:
        return model.model_validate(args)
    except ValidationError as e:
        error = e.errors()[0]
        prefix = f"{where}: " if where else ""
        name = str(error["loc"][0]) if error["loc"] else ""  # the argument, not the list item or union member
        if error["type"] == "extra_forbidden":
            allowed = ", ".join(model.model_fields) or f"none (this {owner} takes no arguments)"
            raise ConfigError(f"{prefix}field `{field}.{name}`: unknown argument; allowed: {allowed}") from None
        if error["type"] == "literal_error":
            what = error["ctx"]["expected"].replace("'", "").replace(" or ", ", ")
        elif error["type"] == "too_short":
            what = f"a list of at least {error['ctx']['min_length']} items"
        elif error["type"] == "too_long":
            what = f"a list of at most {error['ctx']['max_length']} items"
        else:
            what = error["msg"].removeprefix("Value error, ").removeprefix("Input should be ")
        value = args[name] if name in args else error.get("input")
        raise ConfigError(f"{prefix}field `{field}.{name}`: {value!r}; allowed: {what}") from None
