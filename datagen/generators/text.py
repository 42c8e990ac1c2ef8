"""The text task: a short text added, removed or changed.

Two paths, chosen by what the writer wrote:
- drawn text (scenes, sources without images, and `add` everywhere): the text is drawn with Pillow's bundled
  scalable font onto the clean image, so add, remove and change are exact (the image without it is known); the mask
  is the text's pixels, dilated a little (both texts for a change).
- a line that is really there (photos: `images`, `shards`), which the OCR role read at write time (and the reader
  role gave its word gaps): remove inpaints the letters' ink, dilated, where glyphs.py tells it from the background
  (else the line's whole quadrilateral; the record's `removal` says which), with OpenCV on `local` and the
  pipeline's inpainter elsewhere; replace and restyle (a new case or colour) remove it, then write the string into
  the same box as a sign painter would — the old letters' font size, baseline and weight, the installed font that
  best matches them (datagen/glyphs.py), their colour or, where it is lost on the background, black or white; an
  inpainter that follows its prompt also writes it itself, a second candidate. Both the OCR and the independent
  reader read every candidate again (filters.model_scores: ocr_* and reader_*).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydantic import Field

from datagen import glyphs, scenes
from datagen.errors import Reject
from datagen.generators.base import GeneratorArgs, NoClassicalMethod, Outcome, PerSample, Sample, attempt, candidate
from datagen.generators.grounded_inpaint import composite
from datagen.models.ocr import as_printed, ned_similarity, reread_regions
from datagen.models.ocr import normalise as ocr_normalise
from datagen.record import EditRecord
from datagen.sources import BadSource, LoadedInput, source_class

if TYPE_CHECKING:
    from datagen.stages import StageClock

LINE_MODES = ("remove", "replace", "restyle")
"""What an edit does to a line read in a photo."""

POSITIONS = {
    "top": (0.5, 0.15),
    "bottom": (0.5, 0.85),
    "center": (0.5, 0.5),
    "top left": (0.28, 0.15),
    "top right": (0.72, 0.15),
    "bottom left": (0.28, 0.85),
    "bottom right": (0.72, 0.85),
}


def draw_text(image: np.ndarray, text: str, position: str, size: float) -> tuple[np.ndarray, np.ndarray]:
    """(image with the text, bool mask of its pixels); the colour contrasts with the region behind it."""
    height, width = image.shape[:2]
    font = ImageFont.load_default(size=max(8, round(size * height)))
    canvas = Image.new("L", (width, height), 0)
    pen = ImageDraw.Draw(canvas)
    fx, fy = POSITIONS[position]
    left, top, right, bottom = pen.textbbox((0, 0), text, font=font)
    span = right - left
    if span > 0.95 * width:  # shrink long texts to fit
        font = ImageFont.load_default(size=max(8, round(size * height * 0.95 * width / span)))
        left, top, right, bottom = pen.textbbox((0, 0), text, font=font)
    x = min(max(0, fx * width - (right - left) / 2 - left), width - (right - left))
    y = min(max(0, fy * height - (bottom - top) / 2 - top), height - (bottom - top))
    pen.text((x, y), text, fill=255, font=font)
    ink = np.asarray(canvas) > 127
    behind = image[ink].mean() if ink.any() else 128.0
    colour = np.array([20, 20, 20] if behind > 128 else [245, 245, 245], np.uint8)
    out = image.copy()
    out[ink] = colour
    return out, ink


class TextRender(PerSample):
    class Args(GeneratorArgs):
        size: float = Field(default=0.12, ge=0.03, le=0.4)
        """Font size as a share of the image height (long texts shrink to fit the width)."""
        min_text_height: int = Field(default=16, ge=6, le=512)
        """A line read in a photo is editable from this height in pixels (below it, detection and recognition
        are unreliable: the detector finds under 90% of lines 12 px high, see docs/benchmarks.md)."""
        max_line_chars: int = Field(default=48, ge=1, le=48)
        """Longer lines (a page's running text) are not offered to the writer: an edit quotes a sign, a title, a
        label. At most the 48 characters prompts/text.yaml allows text_before."""
        lengthen: float = Field(default=0.3, ge=0, le=2)
        """The removed box grows by this share of the line's height at each end along its baseline: a detector's
        box often clips a first or last glyph (it read "us Stop" for "Bus Stop"), which would stay behind."""
        dilate: int = Field(default=3, ge=0, le=64)
        """Pixels the removed letters' ink (or the line's quadrilateral) grows by before it is inpainted (the glyphs'
        anti-aliased rims and shadows)."""
        min_read_agreement: float = Field(default=0.8, ge=0, le=1)
        """A line is offered to the writer only where the independent reader (the reader role) reads it in the input
        as the OCR does, to this normalised edit similarity (models/ocr.py: ned_similarity): an OCR that misreads
        the line ("OORRE NT" for "FOR RENT", "ooks" for "Books") would have the instruction quote what is not there,
        and both read-back gates check only the new string. On 44 lines of the text-on-photo set (seed 0, 512 px)
        the OCR read 37 right; at 0.8 the two agree on 23, 22 of them right (at 0 every misreading stays). 0 turns
        it off; without a reader installed it does not apply."""
        remove_ink: bool = True
        """Remove only the old letters' ink (glyphs.read_glyphs finds it), so a sign keeps its background; false
        inpaints the whole quadrilateral. Lines whose ink is not told from its background (glyphs.separable) take
        the whole quadrilateral either way; the record's `removal` says which."""

    roles = ()

    @classmethod
    def roles_for(cls, args: Args) -> tuple[str, ...]:
        return cls.roles

    @classmethod
    def roles_for_source(cls, args: Args, source: str) -> tuple[str, ...]:
        """On photos, the inpainter removes a line that is really there, and the OCR and the independent reader read
        every candidate again."""
        return ("inpaint", "ocr", "reader") if source_class(source).photos else cls.roles

    @classmethod
    def follows_edits(cls, args: Args, source: str) -> bool:
        """On photos it edits the text that is there; elsewhere it draws a text into its input first, so as a later
        turn of a session (datagen/sessions.py) its pair would not start from the previous turn's output."""
        return source_class(source).photos

    @classmethod
    def write_roles(cls, args: Args, source: str) -> tuple[str, ...]:
        """On photos, the write phase reads the input's lines first (the writer edits one of them): the OCR finds
        them, the independent reader gives them their word gaps and case and must read them alike."""
        return ("ocr", "reader") if source_class(source).photos else ()

    @classmethod
    def look(cls, args: Args, roles: Mapping[str, Any], images: list[np.ndarray]) -> list[dict[str, Any] | Reject]:
        """The write phase's look at photos, one batched OCR call: each input's legible lines (at least
        min_text_height high, at most max_line_chars long) for the writer, or the input rejected when it has
        none."""
        out: list[dict[str, Any] | Reject] = []
        found = roles["ocr"].read_batch(images)
        legible_lines = [
            [
                line
                for line in lines
                if line.height >= args.min_text_height and line.text.strip() and len(line.text) <= args.max_line_chars
            ]
            for lines in found
        ]
        printed = _as_printed(roles.get("reader"), images, legible_lines)
        for lines, read in zip(found, printed, strict=True):
            agreed = [
                (line, text)
                for line, text, reread in read
                if reread is None or ned_similarity(line.text, reread) >= args.min_read_agreement
            ]
            legible = [{**line.as_dict(), "text": text, "ocr_text": line.text} for line, text in agreed]
            if legible:
                out.append({"text_lines": legible})
            elif read:
                readings = "; ".join(f"{line.text!r} against {reread!r}" for line, _, reread in read[:3])
                out.append(
                    BadSource(
                        "text_read_differently",
                        f"the independent reader reads none of the {len(read)} legible line(s) as the OCR does "
                        f"({readings}; generator.args.min_read_agreement {args.min_read_agreement}): no text to "
                        f"quote",
                    )
                )
            else:
                out.append(
                    BadSource(
                        "no_legible_text",
                        f"the OCR read {len(lines)} line(s) in the input, none at "
                        f"least {args.min_text_height} px high and at most {args.max_line_chars} "
                        f"characters long: no text to edit",
                    )
                )
        return out

    @classmethod
    def with_seen(cls, seen: dict[str, Any], edit: dict[str, Any]) -> dict[str, Any] | Reject:
        """The writer's edit with what the look saw: every legible line, and the one the instruction quotes (found
        by its text) for a remove, a replace or a restyle. The mode follows from the texts: no text after removes;
        the same text (up to case and spaces) restyles it, in its new case or `text_color`; another text replaces
        it (in `text_color` too, when the writer names one)."""
        lines = seen.get("text_lines") or []
        edit = {**edit, "lines": lines}
        if edit.get("text_before"):  # about a line that is there
            before, after = str(edit["text_before"]), str(edit.get("text_after") or "")
            same = after and ocr_normalise(after) == ocr_normalise(before)
            edit["mode"] = "remove" if not after else "restyle" if same else "replace"
            if after == before and not edit.get("text_color"):
                return BadSource("no_edit", f"the edit keeps {before!r} as it is: neither a new case nor a colour")
            line = next((line for line in lines if line["text"] == edit.get("text_before")), None)
            if line is None:
                read = ", ".join(repr(x["text"]) for x in lines)
                quoted = edit.get("text_before")
                return BadSource(
                    "text_not_read",
                    f"the instruction quotes {quoted!r}, which the OCR did not read in the input (it read {read})",
                )
            edit["line"] = line
        return edit

    def __init__(self, args: Args, models: Mapping[str, Any]):
        self.args = args
        self.models = models

    def candidates(self, record: EditRecord, inputs: LoadedInput, rng: np.random.Generator) -> list[EditRecord]:
        before_text = str(record.params.get("text_before", "")).strip()
        after_text = str(record.params.get("text_after", "")).strip()
        position = str(record.params.get("position", "center"))
        if position not in POSITIONS:
            raise NoClassicalMethod(f"position {position!r}: allowed {', '.join(POSITIONS)}")
        if not before_text and not after_text or before_text == after_text:
            raise NoClassicalMethod(f"text {before_text!r} -> {after_text!r} is no edit")
        clean = inputs.image
        ink = np.zeros(clean.shape[:2], bool)
        before, after = clean, clean
        if before_text:
            before, drawn = draw_text(clean, before_text, position, self.args.size)
            ink |= drawn
        if after_text:
            after, drawn = draw_text(clean, after_text, position, self.args.size)
            ink |= drawn
        grown = cv2.dilate(ink.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        mask = np.where(grown, 255, 0).astype(np.uint8)
        mode = "add" if not before_text else "remove" if not after_text else "change"
        return [candidate(record, before, after, mask, {"mode": mode, "position": position}, object_mask=ink)]

    def render(self, batch: Sequence[Sample], clock: StageClock) -> list[Outcome]:
        """Drawn texts one sample at a time; lines read in photos together, each inpainter call batched."""
        out: list[Outcome] = [[] for _ in batch]
        on_lines = [n for n, sample in enumerate(batch) if sample.record.params.get("line")]
        with clock.stage("generate"):
            for n, sample in enumerate(batch):
                if n not in on_lines:
                    out[n] = attempt(self.candidates, sample.record, sample.inputs, sample.rng)
        if on_lines:
            for n, outcome in zip(on_lines, self._edit_lines([batch[n] for n in on_lines], clock), strict=True):
                out[n] = outcome
        return out

    def _plan(self, record: EditRecord, inputs: LoadedInput) -> LinePlan:
        """What to do to the line the OCR read (record.params['line']): its mask, and for a replace or a restyle
        the string to write there, in which font and colour."""
        params = record.params
        line, mode = params["line"], str(params.get("mode", ""))
        if mode not in LINE_MODES:
            raise NoClassicalMethod(f"mode {mode!r} for a line read in the photo: allowed {', '.join(LINE_MODES)}")
        image = inputs.image  # the same pixels the OCR read at write time: the source loads an input one way
        quad = np.asarray(line["quad"], np.float32)
        long = glyphs.lengthened(quad, self.args.lengthen)
        seen = glyphs.read_glyphs(image, quad, line["text"])
        box_mask = glyphs.quad_mask(image.shape, long, dilate=self.args.dilate)
        if self.args.remove_ink and glyphs.separable(seen):  # the letters alone: the sign keeps its background
            mask = glyphs.ink_mask(image, quad, seen, self.args.lengthen, dilate=self.args.dilate)
            removal = "ink"
        else:  # letters not told from what is behind them: the whole box
            mask, removal = box_mask, "box"
        plan = LinePlan(image, quad, mask, mode, line["text"], box=quad, removal=removal, box_mask=box_mask)
        if mode == "remove":
            return plan
        plan.target = str(params.get("text_after") or "").strip() or (line["text"] if mode == "restyle" else "")
        if not plan.target:
            raise NoClassicalMethod(f"{mode} without the new text")
        plan.font, plan.overlap, plan.colour, plan.band = seen.font, seen.overlap, seen.colour, seen.band
        plan.stroke = seen.stroke
        plan.box = long  # fitted to the old line: a longer string is written smaller, as a sign painter would
        named = str(params.get("text_color") or "")
        if named:
            if named not in scenes.COLORS:
                raise NoClassicalMethod(f"text colour {named!r}: allowed {', '.join(scenes.COLORS)}")
            plan.colour, plan.named = scenes.COLORS[named], True
        return plan

    def _edit_lines(self, samples: list[Sample], clock: StageClock) -> list[Outcome]:
        """Remove, replace or restyle the line each sample's instruction quotes. Candidate 0: the line inpainted
        away, the new string drawn into its box in the matched font. Candidate 1 (an inpainter that follows its
        prompt, for a replace or a restyle): the inpainter writes the quoted string into the line's box itself —
        with the string rendered beside the photo as a glyph template where the inpainter reads one (FLUX.1 Fill,
        as X2Edit does)."""
        plans: list[LinePlan | Exception] = [attempt(self._plan, s.record, s.inputs) for s in samples]
        ready = [n for n, plan in enumerate(plans) if isinstance(plan, LinePlan)]
        inpainter = self.models["inpaint"]
        with clock.stage("inpaint"):
            removed = inpainter.inpaint_batch(
                [plans[n].image for n in ready],
                [plans[n].mask for n in ready],
                [str(samples[n].record.output_caption or "") for n in ready],
                [samples[n].record.seed for n in ready],
            )
            prompted = [n for n in ready if plans[n].target and inpainter.follows_prompt]
            written = dict(
                zip(
                    prompted,
                    self._write_with_inpainter(
                        inpainter, [plans[n] for n in prompted], [samples[n].record for n in prompted]
                    ),
                    strict=True,
                )
            )
        out: list[Outcome] = list(plans)  # a failed plan stays its exception
        with clock.stage("draw"):
            for n, cleared in zip(ready, removed, strict=True):
                plan, record = plans[n], samples[n].record
                if isinstance(cleared, Exception):
                    out[n] = cleared
                    continue
                cleared = composite(plan.image, cleared, plan.mask)
                base = {"mode": plan.mode, "line_text": plan.old, "target_text": plan.target, "removal": plan.removal}
                if not plan.target:  # a removal: the line inpainted away
                    out[n] = [candidate(record, plan.image, cleared, plan.mask, {**base, "method": "inpaint"})]
                    continue
                base["box"] = np.round(plan.box, 1).tolist()
                colour = plan.colour  # the old letters' (or the one asked for), unless lost on what is behind
                if not plan.named:
                    colour = glyphs.contrasting(colour, glyphs.background(cleared, plan.box))
                after, _ = glyphs.draw_like(
                    cleared, plan.box, plan.old, plan.target, plan.font, colour, plan.band, plan.stroke
                )
                changed = np.where(np.any(after != cleared, axis=-1), 255, 0).astype(np.uint8)
                drawn = {
                    **base,
                    "method": "glyphs",
                    "font": plan.font,
                    "font_overlap": plan.overlap,
                    "colour": list(colour),
                }
                found = [candidate(record, plan.image, after, np.maximum(plan.mask, changed), drawn)]
                image, method = written.get(n, (None, ""))
                if image is not None and not isinstance(image, Exception):
                    found.append(
                        candidate(
                            record,
                            plan.image,
                            composite(plan.image, image, plan.box_mask),
                            plan.box_mask,
                            {**base, "method": method, "removal": "box"},
                            number=1,
                        )
                    )
                out[n] = found
        return out

    def _write_with_inpainter(self, inpainter, plans: list[LinePlan], records: list[EditRecord]) -> list[tuple]:
        """(image or exception, method) per plan: the inpainter repaints the line's box with the quoted string in
        its prompt. Where it reads a glyph template (`reads_glyph_template`: FLUX.1 Fill), the canvas is a diptych —
        the string rendered in the line's place on white at the left, the photo at the right with only the line's
        box to repaint — and the right half is kept (X2Edit's in-context glyph condition)."""
        if not plans:
            return []
        template = inpainter.reads_glyph_template
        images, masks, prompts = [], [], []
        for plan, record in zip(plans, records, strict=True):
            prompt = f'{record.output_caption or "a photo"}, with the text "{plan.target}" written in place'
            if not template:
                images.append(plan.image)
                masks.append(plan.box_mask)
                prompts.append(prompt)
                continue
            guide, _ = glyphs.draw_like(
                np.full_like(plan.image, 255), plan.box, plan.old, plan.target, plan.font, (0, 0, 0), plan.band
            )
            images.append(np.concatenate([guide, plan.image], axis=1))
            masks.append(np.concatenate([np.zeros_like(plan.box_mask), plan.box_mask], axis=1))
            prompts.append(f"Two panels: the right is a photo, the left its text glyphs. {prompt}, as the glyphs show")
        seeds = [record.seed + 1 for record in records]
        painted = inpainter.inpaint_batch(images, masks, prompts, seeds)
        if not template:
            return [(image, "inpaint_prompt") for image in painted]
        return [
            (image if isinstance(image, Exception) else image[:, plan.image.shape[1] :], "glyph_template")
            for image, plan in zip(painted, plans, strict=True)
        ]


def _as_printed(reader, images: list[np.ndarray], lines: list[list]) -> list[list[tuple[Any, str, str | None]]]:
    """Each legible line with its text as printed and the independent reader's reading of it: the OCR's reading
    with the word gaps (and, where the two agree letter for letter, the case) of the reader's (models/ocr.py:
    as_printed), in one call for every line of every image; the OCR's reading as it is, and None, where there is no
    reader."""
    flat = [(n, line) for n, found in enumerate(lines) for line in found]
    rereads = reread_regions(reader, [images[n] for n, _ in flat], [line.quad for _, line in flat])
    if rereads is None:
        return [[(line, line.text, None) for line in found] for found in lines]
    out: list[list[tuple[Any, str, str | None]]] = [[] for _ in lines]
    for (n, line), reread in zip(flat, rereads, strict=True):
        out[n].append((line, as_printed(line.text, reread), reread))
    return out


@dataclass
class LinePlan:
    """The edit of one line read in a photo: where it is, and what to write there (nothing for a remove)."""

    image: np.ndarray
    quad: np.ndarray
    mask: np.ndarray
    """uint8, 255 where the old line is removed: its letters' ink grown by `dilate` (`removal` "ink"), or where the
    ink could not be told from the background, its whole quadrilateral (`removal` "box")."""
    mode: str
    old: str
    """The line's text as printed (models/ocr.py: as_printed, the OCR's reading with the reader's gaps and case)."""
    box: np.ndarray
    """Where the new string goes: the line's quadrilateral, lengthened along its baseline for a longer string."""
    removal: str
    box_mask: np.ndarray
    """uint8, 255 on the line's quadrilateral and the new string's box, grown by `dilate`: where an inpainter that
    writes the string itself may paint."""
    named: bool = False
    """Whether the instruction names the new colour (then it is kept even where it contrasts little)."""
    stroke: float = 0.0
    target: str = ""
    """What the line reads after the edit: the new string (replace), the same one cased anew (restyle)."""
    font: str = ""
    overlap: float = 0.0
    colour: tuple[int, int, int] = (0, 0, 0)
    band: tuple[float, float] = (0.08, 0.92)
