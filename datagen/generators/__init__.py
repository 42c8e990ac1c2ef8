"""Generator kinds, one module each. A generator turns an instruction record and its loaded input into candidates.

Contract: `roles` names the model roles it needs (the pipeline supplies them built); `check_args(args, where)`
validates its task-file arguments before any work starts; `candidates(record, inputs, rng)` returns EditRecords
with images, mask, boxes, params and scores filled, or raises a reject exception whose `reason` is counted.
"""

from __future__ import annotations

import importlib

from datagen.errors import ConfigError

KINDS: dict[str, str] = {
    "grounded_inpaint": "datagen.generators.grounded_inpaint:GroundedInpaint",
    "scene_edit": "datagen.generators.scene_edit:SceneEdit",
    "overlay": "datagen.generators.overlay:Overlay",
    "color": "datagen.generators.color:ColorAdjust",
    "stylize": "datagen.generators.stylize:Stylize",
    "text": "datagen.generators.text:TextRender",
    "translate": "datagen.generators.translate:Translate",
    "prompt_to_prompt": "datagen.generators.prompt_to_prompt:PromptToPrompt",
}


def get(kind: str, where: str = "task file") -> type:
    if kind not in KINDS:
        raise ConfigError(f"{where}: field `generator.kind`: unknown kind {kind!r}; known: {', '.join(KINDS)}")
    module_name, _, class_name = KINDS[kind].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def roles(cls: type, args: dict) -> tuple[str, ...]:
    """The model roles a generator kind needs with these arguments."""
    return tuple(cls.roles_for(args)) if hasattr(cls, "roles_for") else tuple(cls.roles)
