"""The offline instruction writer: templates and value lists from the prompt file, one edit kind per task.

It returns exactly what the LLM writer returns for the same task, validated against the same schema, so the render
phase never knows which wrote a record. Each kind draws what it needs from the source item (its objects, its scene)
and from `templates.choices`.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from datagen import glyphs, scenes
from datagen.config import EDIT_KINDS, PromptSpec, RoleSpec
from datagen.errors import ConfigError
from datagen.generators.text import LINE_MODES
from datagen.scenes import article, compose_caption
from datagen.sources import SourceItem
from datagen.writer import OutputValidator, WriterReject

COLOR_OPS = ("brightness", "contrast", "saturation", "hue", "warmth", "blur", "sharpen")
"""Colour operations of the color task; blur and sharpen only go up."""

TRANSLATION_DIRECTIONS = ("to_map", "from_map")
TEXT_MODES = ("add", "remove", "change")


class TemplateWriter:
    """Offline writer: picks the edited object and a value, fills a template, rewrites the caption."""

    def __init__(self, spec: RoleSpec, prompt: PromptSpec, caption_prompt: PromptSpec | None = None, **_):
        if prompt.templates is None:
            raise ConfigError(
                f"roles.llm: backend 'template' needs `templates` in prompts/{prompt.name}.yaml, which has none; "
                f"use backend vllm"
            )
        if prompt.templates.edit in VERB_KINDS and not prompt.verbs:
            raise ConfigError(
                f"roles.llm: backend 'template' needs `templates` and `verbs` in prompts/{prompt.name}.yaml for "
                f"edit {prompt.templates.edit!r}; use backend vllm"
            )
        if prompt.templates.edit in ("translate", "text_edit", "backtrack") and not prompt.templates.inverse:
            raise ConfigError(
                f"prompts/{prompt.name}.yaml: field `templates.inverse`: edit {prompt.templates.edit!r} needs "
                f"templates for its other direction"
            )
        missing = [
            key for key in REQUIRED_CHOICES.get(prompt.templates.edit, ()) if key not in prompt.templates.choices
        ]
        if missing:
            raise ConfigError(
                f"prompts/{prompt.name}.yaml: field `templates.choices`: edit {prompt.templates.edit!r} needs "
                f"{', '.join(missing)}"
            )
        unknown = [m for m in prompt.templates.choices.get("line_modes", []) if m not in (*LINE_MODES, "add")]
        if prompt.templates.edit == "text_edit" and unknown:
            raise ConfigError(
                f"prompts/{prompt.name}.yaml: field `templates.choices.line_modes`: {', '.join(map(repr, unknown))}: "
                f"allowed {', '.join((*LINE_MODES, 'add'))}"
            )
        self.prompt = prompt
        self.templates = prompt.templates
        self.validate = OutputValidator(prompt)
        self.model_id = f"template:{prompt.name}"

    def load(self) -> None:
        pass

    def write_batch(self, items: list[SourceItem], seeds: list[int]) -> list[dict[str, Any] | WriterReject]:
        out: list[dict[str, Any] | WriterReject] = []
        for item, seed in zip(items, seeds, strict=True):
            try:
                out.append(self.write(item, np.random.default_rng(seed)))
            except WriterReject as e:
                out.append(e)
        return out

    def write(self, item: SourceItem, rng: np.random.Generator) -> dict[str, Any]:
        if item.topic is not None:
            raise WriterReject("no_caption", "the template writer cannot write captions from topics")
        return self.validate(KINDS[self.templates.edit](self, item, rng))

    # ------------------------------------------------------------------------------------------- helpers

    def fill(self, templates: list[str], rng: np.random.Generator, **values: str) -> str:
        verb = str(rng.choice(self.prompt.verbs)) if self.prompt.verbs else ""
        values = {**dict.fromkeys(("object", "a", "new", "a_new", "value", "old", "where", "nth"), ""), **values}
        text = str(rng.choice(templates)).format(verb=verb.lower(), Verb=verb[:1].upper() + verb[1:], **values)
        return re.sub(r"\s{2,}", " ", text).strip()

    def choice(self, key: str, rng: np.random.Generator, exclude: str = "", where=None) -> str:
        """One of templates.choices[key], not `exclude`, and where the predicate `where` holds if any does."""
        if key not in self.templates.choices:
            raise WriterReject(
                "no_template_choices", f"prompts/{self.prompt.name}.yaml has no templates.choices.{key}"
            )
        options = [o for o in self.templates.choices[key] if o != exclude] or self.templates.choices[key]
        if where is not None:
            options = [o for o in options if where(o)] or options
        return str(rng.choice(options))


def _target(item: SourceItem, rng: np.random.Generator) -> str:
    if not item.objects:
        raise WriterReject("no_objects", "the source names no objects to edit")
    return str(rng.choice(item.objects))


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


def caption_replacing(item: SourceItem, name: str, new: str) -> str:
    """The caption with one object named anew: recomposed for scenes, substituted textually otherwise."""
    if item.setting is not None:
        return compose_caption([new if o == name else o for o in item.objects], item.setting)
    caption = item.caption or ""
    pattern = re.compile(rf"\b(?:an?\s+)?{re.escape(name)}\b", re.IGNORECASE)
    edited = pattern.sub(f"{article(new)} {new}", caption, count=1)
    return edited if edited != caption else f"{caption} with {article(new)} {new}".strip()


# ------------------------------------------------------------------------------------------------ kinds


def remove_object(w: TemplateWriter, item: SourceItem, rng) -> dict[str, Any]:
    target = _target(item, rng)
    instruction = w.fill(w.templates.instruction, rng, object=target, a=article(target))
    return {"instruction": instruction, "output_caption": caption_without(item, target), "objects": [target]}


def add_object(w: TemplateWriter, item: SourceItem, rng) -> dict[str, Any]:
    target = _target(item, rng)
    instruction = w.fill(w.templates.instruction, rng, object=target, a=article(target))
    return {"instruction": instruction, "input_caption": caption_without(item, target), "objects": [target]}


def replace_object(w: TemplateWriter, item: SourceItem, rng) -> dict[str, Any]:
    """local: another object in its place. Scenes draw a new colour and shape (the scene can render it)."""
    target = _target(item, rng)
    parts = scenes.parse_name(target)
    if parts is not None and item.setting is not None:
        taken = {(scenes.parse_name(o) or ("", "", ""))[2] for o in item.objects}
        shapes = [s for s in scenes.SHAPES if s not in taken] or [parts[2]]
        colors = [c for c in scenes.COLORS if c != parts[0]]
        new = scenes.object_name(str(rng.choice(colors)), parts[1], str(rng.choice(shapes)))
    else:
        new = w.choice("objects", rng, exclude=target)
    instruction = w.fill(w.templates.instruction, rng, object=target, a=article(target), new=new, a_new=article(new))
    return {
        "instruction": instruction,
        "output_caption": caption_replacing(item, target, new),
        "objects": [target],
        "new_object": new,
    }


def retexture_object(w: TemplateWriter, item: SourceItem, rng) -> dict[str, Any]:
    """texture: same object and shape, another material or pattern."""
    target = _target(item, rng)
    parts = scenes.parse_name(target)
    if parts is not None and item.setting is not None:
        texture = str(rng.choice([p for p in scenes.PATTERNS if p != parts[1]]))
        new = scenes.object_name(parts[0], texture, parts[2])
    else:
        texture = w.choice("textures", rng)
        new = f"{texture} {target}"
    instruction = w.fill(
        w.templates.instruction, rng, object=target, a=article(target), new=new, a_new=article(new), value=texture
    )
    return {
        "instruction": instruction,
        "output_caption": caption_replacing(item, target, new),
        "objects": [target],
        "texture": texture,
    }


def change_background(w: TemplateWriter, item: SourceItem, rng) -> dict[str, Any]:
    if item.setting is not None:
        current = item.setting.split(" ", 2)[-1]
        value = str(rng.choice([b for b in scenes.BACKGROUNDS if b != current]))
        preposition = scenes.BACKGROUND_PREPOSITION.get(value.split()[-1], "on")
        caption = compose_caption(item.objects, f"{preposition} {article(value)} {value}")
    else:
        value = w.choice("backgrounds", rng)
        caption = f"{item.caption}, in front of {article(value)} {value}".strip(", ")
    instruction = w.fill(w.templates.instruction, rng, value=value, a_new=article(value))
    return {"instruction": instruction, "output_caption": caption, "objects": [], "background": value}


def global_change(w: TemplateWriter, item: SourceItem, rng) -> dict[str, Any]:
    value = w.choice("changes", rng)
    instruction = w.fill(w.templates.instruction, rng, value=value)
    return {
        "instruction": instruction,
        "output_caption": f"{item.caption} {value}".strip(),
        "objects": [],
        "change": value,
    }


def stylize(w: TemplateWriter, item: SourceItem, rng) -> dict[str, Any]:
    value = w.choice("styles", rng)
    instruction = w.fill(w.templates.instruction, rng, value=value, a_new=article(value))
    caption = f"{article(value)} {value} of {item.caption}".strip()
    return {"instruction": instruction, "output_caption": caption, "objects": [], "style": value}


def color_adjust(w: TemplateWriter, item: SourceItem, rng) -> dict[str, Any]:
    """color: an operation and a signed strength in [-1, 1] are drawn; the wording comes from choices[op+ / op-]."""
    op = str(rng.choice(COLOR_OPS))
    sign = 1 if op in ("blur", "sharpen") else int(rng.choice((-1, 1)))
    amount = round(float(sign * rng.uniform(0.25, 0.9)), 2)
    key = f"{op}{'+' if amount > 0 else '-'}"
    value = w.choice(key, rng)
    instruction = w.fill(w.templates.instruction, rng, value=value)
    instruction = instruction[:1].upper() + instruction[1:]
    caption = f"{item.caption}, {op} {'raised' if amount > 0 else 'lowered'}".strip(", ")
    return {"instruction": instruction, "output_caption": caption, "objects": [], "op": op, "amount": amount}


def detect_object(w: TemplateWriter, item: SourceItem, rng) -> dict[str, Any]:
    target = _target(item, rng)
    instruction = w.fill(w.templates.instruction, rng, object=target, a=article(target))
    caption = f"{item.caption}, with a box drawn around the {target}".strip(", ")
    return {"instruction": instruction, "output_caption": caption, "objects": [target]}


def segment_object(w: TemplateWriter, item: SourceItem, rng) -> dict[str, Any]:
    target = _target(item, rng)
    instruction = w.fill(w.templates.instruction, rng, object=target, a=article(target))
    caption = f"{item.caption}, with the {target} highlighted".strip(", ")
    return {"instruction": instruction, "output_caption": caption, "objects": [target]}


def translate(w: TemplateWriter, item: SourceItem, rng) -> dict[str, Any]:
    """depth, normal, pose, sketch, segmap: image -> map or map -> image, drawn per sample."""
    value = w.choice("map", rng)
    # a later turn of a session starts from the image it is given (the previous turn's output): image -> map
    direction = "to_map" if item.history is not None else str(rng.choice(TRANSLATION_DIRECTIONS))
    if direction == "to_map":
        instruction = w.fill(w.templates.instruction, rng, value=value, a_new=article(value))
        captions = {"input_caption": item.caption, "output_caption": f"{article(value)} {value} of {item.caption}"}
    else:
        instruction = w.fill(w.templates.inverse, rng, value=value, a_new=article(value))
        captions = {"input_caption": f"{article(value)} {value} of {item.caption}", "output_caption": item.caption}
    return {"instruction": instruction, **captions, "objects": [], "direction": direction}


def text_edit(w: TemplateWriter, item: SourceItem, rng) -> dict[str, Any]:
    """text: add, remove or change a short text at a position; rendered with a real font by the generator. On a
    photo whose lines the OCR read (item.text_lines), remove, replace or restyle one of them, quoting it, or add a
    text: one of `templates.choices.line_modes` (all four when the prompt lists none)."""
    line_modes = w.templates.choices.get("line_modes") or (*LINE_MODES, "add")
    mode = str(rng.choice(line_modes if item.text_lines else TEXT_MODES))
    if mode in LINE_MODES and item.text_lines:
        return text_line_edit(w, item, rng, mode)
    where = w.choice("positions", rng)
    before = "" if mode == "add" else w.choice("texts", rng)
    after = "" if mode == "remove" else w.choice("texts", rng, exclude=before)
    templates = {
        "add": w.templates.instruction,
        "remove": w.templates.inverse,
        "change": w.templates.choices["change"],
    }
    instruction = w.fill(templates[mode], rng, value=after, old=before, where=where)
    caption = f'{item.caption}, with the text "{after}" at the {where}' if after else item.caption
    return {
        "instruction": instruction,
        "input_caption": f'{item.caption}, with the text "{before}" at the {where}' if before else item.caption,
        "output_caption": caption,
        "objects": [],
        "text_before": before,
        "text_after": after,
        "position": where,
    }


CASES = {"upper": str.upper, "lower": str.lower, "title": str.title}
"""A restyle's new cases: templates.choices.restyle_<case> asks for each."""


def _recolours(item: SourceItem, line: dict[str, Any]):
    """Whether a colour name of scenes.COLORS makes a restyle of the line: it contrasts with the line's background
    at WCAG's 3:1 for large text (glyphs.MIN_CONTRAST: black on a dark green sign does not, and a reader reads
    nothing) and is another colour than the old letters' (glyphs.NEW_COLOUR_DISTANCE: cream letters made white are
    no edit). None where the input's pixels are not at hand."""
    if item.image is None:
        return None
    behind, ink = glyphs.line_colours(item.image, line["quad"])

    def recolours(name: str) -> bool:
        colour = scenes.COLORS.get(name)
        return (
            colour is not None
            and glyphs.contrast(colour, behind) >= glyphs.MIN_CONTRAST
            and float(np.linalg.norm(np.subtract(colour, ink))) >= glyphs.NEW_COLOUR_DISTANCE
        )

    return recolours


def text_line_edit(w: TemplateWriter, item: SourceItem, rng, mode: str) -> dict[str, Any]:
    """One of the photo's legible lines removed, replaced by another text or restyled (another case, or a colour from
    templates.choices.text_colors), quoted as the OCR read it; the write phase finds the line again by that text
    and tells the modes apart by text_after (generators/text.py: with_seen)."""
    line = item.text_lines[int(rng.integers(len(item.text_lines)))]
    old = line["text"]
    where = position_of(line, item.image.shape if item.image is not None else None)
    offered = {"remove": w.templates.inverse, "replace": w.templates.choices["change"]}
    quoting = {name: [t for t in templates if "{old}" in t] or templates for name, templates in offered.items()}
    style: dict[str, str] = {}
    if mode == "remove":
        instruction, new, output_caption = w.fill(quoting["remove"], rng, old=old, where=where), "", item.caption
    elif mode == "replace":  # a string about as long as the old one, as a sign is rewritten: it fits the old box
        texts = _templates(w, "texts")
        fitting = [t for t in texts if t != old and 0.5 <= len(t) / max(1, len(old)) <= 1.5]
        new = str(rng.choice(fitting or [t for t in texts if t != old] or texts))
        instruction = w.fill(quoting["replace"], rng, value=new, old=old, where=where)
        output_caption = f'{item.caption}, with the text "{new}"'
    else:  # restyle: another case where one differs, or a colour
        kinds = ["color", *(case for case, change in CASES.items() if change(old) != old)]
        kind = str(rng.choice(kinds))
        if kind == "color":  # one that reads on the line's background and is not the old one, where one is
            new, colour = old, w.choice("text_colors", rng, where=_recolours(item, line))
            instruction = w.fill(_templates(w, "restyle_color"), rng, value=colour, old=old, where=where)
            output_caption, style = f'{item.caption}, with the text "{old}" in {colour}', {"text_color": colour}
        else:
            new = CASES[kind](old)
            instruction = w.fill(_templates(w, f"restyle_{kind}"), rng, value=new, old=old, where=where)
            output_caption = f'{item.caption}, with the text "{new}"'
    return {
        "instruction": instruction,
        "input_caption": f'{item.caption}, with the text "{old}"',
        "output_caption": output_caption,
        "objects": [],
        "text_before": old,
        "text_after": new,
        "position": where,
        **style,
    }


def backtrack(w: TemplateWriter, item: SourceItem, rng) -> dict[str, Any]:
    """Back to an earlier image of the session (ImgEdit's version backtracking): undo the last edit (templates
    `instruction`), or go back to before the n-th edit (`inverse`, {nth}), each half the time where there is a
    choice. `back_to` is the index of that image in the session (0: its input); the output caption is its caption."""
    history = item.history
    if not history or len(history) < 2:
        raise WriterReject("no_session", "a backtracking turn goes back to an earlier image of its session")
    edits = len(history) - 1
    choices = [k for k in range(edits) if history[k] is not None]  # None: the same image as the current one
    if not choices:
        raise WriterReject("nothing_to_undo", "every earlier image of the session is the image it has now")
    if edits - 1 in choices and (len(choices) == 1 or rng.random() < 0.5):
        back_to = edits - 1
        instruction = w.fill(w.templates.instruction, rng)
    else:
        earlier = [k for k in choices if k != edits - 1] or choices
        back_to = int(earlier[int(rng.integers(len(earlier)))])  # before the edit number back_to + 1
        instruction = w.fill(w.templates.inverse, rng, nth=ORDINALS[back_to])
    return {"instruction": instruction, "output_caption": history[back_to], "objects": [], "back_to": back_to}


ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh")
"""The edits a backtracking turn names (sessions have up to 8 turns)."""


def _templates(w: TemplateWriter, key: str) -> list[str]:
    if key not in w.templates.choices:
        raise WriterReject("no_template_choices", f"prompts/{w.prompt.name}.yaml has no templates.choices.{key}")
    return w.templates.choices[key]


def position_of(line: dict[str, Any], shape: tuple[int, ...] | None) -> str:
    """Where a line sits, in the words of the text prompt's positions (top left ... bottom right)."""
    if shape is None:
        return "center"
    xs, ys = zip(*line["quad"], strict=True)
    x, y = sum(xs) / 4 / shape[1], sum(ys) / 4 / shape[0]
    row = "top" if y < 1 / 3 else "bottom" if y > 2 / 3 else "center"
    column = "left" if x < 1 / 3 else "right" if x > 2 / 3 else ""
    return "center" if row == "center" else f"{row} {column}".strip()


KINDS = {kind: globals()[kind] for kind in EDIT_KINDS}
"""Offline edit kind -> its writer: the function of the same name for each of config.EDIT_KINDS, the one list."""
SESSION_KINDS = {"backtrack"}
"""Kinds written from a multi-turn session alone: the template writer writes them on every pipeline (an LLM could
name another image than the target is)."""
VERB_KINDS = {"remove_object", "add_object"}
"""Kinds whose templates use {verb}: their prompt must list verbs."""
REQUIRED_CHOICES = {
    "change_background": (),
    "global_change": ("changes",),
    "stylize": ("styles",),
    "color_adjust": tuple(
        f"{op}{sign}" for op in COLOR_OPS for sign in "+-" if op not in ("blur", "sharpen") or sign == "+"
    ),
    "translate": ("map",),
    "text_edit": ("texts", "positions", "change"),
    "backtrack": (),
}
"""templates.choices keys each kind reads (the ones only non-scene sources need are checked when used)."""
