"""Instruction writers: source item -> {instruction, output_caption, objects} in the prompt's JSON schema.

The template writer (pipeline `local`) fills the prompt file's templates and verb lists; it returns exactly what the
LLM writer returns, validated against the same schema, so everything downstream is writer-agnostic.
"""

from __future__ import annotations

import re
from typing import Any

import jsonschema
import numpy as np

from datagen.config import PromptSpec, RoleSpec
from datagen.scenes import article, compose_caption
from datagen.sources import SourceItem


class WriterReject(Exception):
    """The writer could not produce a valid record for this item; `reason` is counted in the stats."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class OutputValidator:
    """Checks a writer output against the prompt's schema; the same check for template and LLM writers."""

    def __init__(self, prompt: PromptSpec):
        self._validator = jsonschema.Draft202012Validator(prompt.output_schema)

    def __call__(self, output: Any) -> dict[str, Any]:
        error = jsonschema.exceptions.best_match(self._validator.iter_errors(output))
        if error is not None:
            path = ".".join(str(p) for p in error.absolute_path) or "(top level)"
            raise WriterReject("schema_invalid", f"{path}: {error.message[:200]}")
        return output


class TemplateWriter:
    """Offline writer: picks the edited object(s), a verb and a template, and rewrites the caption."""

    def __init__(self, spec: RoleSpec, prompt: PromptSpec, **_):
        self.prompt = prompt
        self.validate = OutputValidator(prompt)
        self.model_id = f"template:{prompt.name}"

    def load(self) -> None:
        pass

    def write(self, item: SourceItem, rng: np.random.Generator) -> dict[str, Any]:
        if not item.objects:
            raise WriterReject("no_objects", "the source names no objects to edit")
        templates = self.prompt.templates
        if templates.edit == "remove_object":
            target = str(rng.choice(item.objects))
            output_caption = caption_without(item, target)
            objects = [target]
        else:  # pragma: no cover - the config schema admits only the kinds above
            raise ValueError(templates.edit)
        verb = str(rng.choice(self.prompt.verbs))
        template = str(rng.choice(templates.instruction))
        instruction = template.format(verb=verb.lower(), Verb=verb[:1].upper() + verb[1:], object=objects[0])
        return self.validate({"instruction": instruction, "output_caption": output_caption, "objects": objects})


def caption_without(item: SourceItem, name: str) -> str:
    """The caption with one object removed: recomposed for scenes, edited textually otherwise."""
    if item.setting is not None:
        return compose_caption([o for o in item.objects if o != name], item.setting)
    caption = item.caption or ""
    pattern = re.compile(rf"\b(?:{article(name)}|the|a|an)\s+{re.escape(name)}\b", re.IGNORECASE)
    edited = pattern.sub("", caption, count=1)
    if edited == caption:
        return caption or f"a scene without the {name}"
    edited = re.sub(r"\s*,\s*(,|and\b)", r" \1", edited)  # ", , x" / ", and x" left by the cut
    edited = re.sub(r"^\s*(?:,|and\b|with\b)\s*", "", edited)
    edited = re.sub(
        r"\s*(?:,|\band|\bwith|\bnext to|\bbeside|\bnear|\bon|\bin front of|\bbehind|\bunder)\s*$", "", edited
    )
    edited = re.sub(r"\s{2,}", " ", edited).strip(" ,")
    return edited or f"a scene without the {name}"


def build_writer(spec: RoleSpec, prompt: PromptSpec) -> TemplateWriter:
    if spec.backend == "template":
        return TemplateWriter(spec, prompt)
    raise ValueError(f"unknown writer backend {spec.backend!r}")
