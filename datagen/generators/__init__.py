"""Generator kinds, one module each. A generator turns a micro-batch of instruction records and their loaded
inputs into candidates.

Contract (`base.Generator`): `Args` declares its task-file arguments (`generator.args`), `roles_for(args)` names the
model roles it needs with them (the pipeline supplies them built), `render(batch, clock)` returns each sample's
EditRecords with images, mask, boxes, params and scores filled, or the reject exception whose `reason` is counted.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from datagen.errors import ConfigError

if TYPE_CHECKING:
    from datagen.generators.base import Generator

KINDS: dict[str, str] = {
    "grounded_inpaint": "datagen.generators.grounded_inpaint:GroundedInpaint",
    "scene_edit": "datagen.generators.scene_edit:SceneEdit",
    "overlay": "datagen.generators.overlay:Overlay",
    "color": "datagen.generators.color:ColorAdjust",
    "stylize": "datagen.generators.stylize:Stylize",
    "text": "datagen.generators.text:TextRender",
    "translate": "datagen.generators.translate:Translate",
    "prompt_to_prompt": "datagen.generators.prompt_to_prompt:PromptToPrompt",
    "instruct_edit": "datagen.generators.instruct_edit:InstructEdit",
    "backtrack": "datagen.generators.backtrack:Backtrack",
}
"""Kind (a task file's `generator.kind`) -> "module:Class"; the module is imported only when the kind is used."""


def get(kind: str, where: str = "task file") -> type[Generator]:
    if kind not in KINDS:
        raise ConfigError(f"{where}: field `generator.kind`: unknown kind {kind!r}; known: {', '.join(KINDS)}")
    module_name, _, class_name = KINDS[kind].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def roles(
    cls: type[Generator], args: dict[str, Any], where: str = "task file", source: str | None = None
) -> tuple[str, ...]:
    """The model roles a generator kind needs with these arguments; with a source, for that kind of input (a kind
    may declare `roles_for_source(args, source)`: the text task inpaints only on photos)."""
    parsed = cls.Args.parse(args, where)
    for_source = getattr(cls, "roles_for_source", None)
    return tuple(for_source(parsed, source) if for_source is not None and source else cls.roles_for(parsed))


def write_roles(cls: type[Generator], args: dict[str, Any], source: str, where: str = "task file") -> tuple[str, ...]:
    """The roles the write phase needs for this kind on this source besides the writer (a kind may declare
    `write_roles(args, source)`: the text task reads a photo's lines with the OCR role before the writer writes)."""
    declared = getattr(cls, "write_roles", None)
    return tuple(declared(cls.Args.parse(args, where), source)) if declared is not None else ()


def build(kind: str, args: dict[str, Any], models: Mapping[str, Any], where: str = "task file") -> Generator:
    """The generator a task file's `generator` names, with its arguments parsed and the built roles it needs."""
    cls = get(kind, where)
    return cls(cls.Args.parse(args, where), models)
