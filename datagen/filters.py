"""Scores and gates. Every score is computed and stored for every candidate; a filter turns one into keep or a reason.

Pixel scores use images in [0, 1]; L1 is the mean absolute difference over the three channels.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

from datagen.scores import SCORES

if TYPE_CHECKING:
    from datagen.config import FilterSpec


def l1(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    """Mean |a - b| over the pixels where `where` is set, images as uint8 -> [0, 1]; NaN if `where` is empty."""
    count = int(where.sum())
    if count == 0:
        return math.nan
    diff = np.abs(a[where].astype(np.int16) - b[where].astype(np.int16))
    return float(diff.sum()) / (count * a.shape[-1] * 255.0)


LOCAL_PX = 9
"""Side of the window gt_local_l1 averages over."""


def local_peak(wrong: np.ndarray, region: np.ndarray, channels: int = 3) -> float:
    """gt_local_l1 of one candidate: `wrong` the per-pixel |output - truth| summed over channels (int), `region`
    bool; the largest sum over a LOCAL_PX window (zeros beyond the image) centred on a region pixel, divided by
    the window's size, the channels and 255. Integer box sums (an integral image), so the device computes the same
    number."""
    if not region.any():
        return math.nan
    half = LOCAL_PX // 2
    padded = np.pad(wrong.astype(np.int64), ((half + 1, half), (half + 1, half)))
    integral = padded.cumsum(axis=0).cumsum(axis=1)
    height, width = wrong.shape
    sums = (
        integral[LOCAL_PX:, LOCAL_PX:]
        - integral[:height, LOCAL_PX:]
        - integral[LOCAL_PX:, :width]
        + integral[:height, :width]
    )
    return int(sums[region].max()) / (LOCAL_PX * LOCAL_PX * channels * 255.0)


def pixel_scores(
    before: np.ndarray,
    after: np.ndarray,
    object_mask: np.ndarray,
    edit_mask: np.ndarray,
    ground_truth: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, float]:
    """Scores of one candidate. object_mask: exact bool mask of the named objects; edit_mask: the (possibly soft)
    uint8 mask the generator edited, where any non-zero pixel may have changed; ground_truth: (exact expected
    output, mask of the other objects in it) where the source knows them."""
    edited = edit_mask > 0
    scores = {
        "mask_area": float(object_mask.mean()),
        "inside_change": l1(before, after, object_mask),
        "outside_l1": l1(before, after, ~edited) if (~edited).any() else 0.0,
        "change": l1(before, after, edited) if edited.any() else 0.0,
    }
    if ground_truth is not None:
        truth, others = ground_truth
        region = edited | object_mask
        scores["gt_l1"] = l1(after, truth, region)
        wrong = np.abs(after.astype(np.int32) - truth.astype(np.int32)).sum(axis=-1)
        scores["gt_local_l1"] = local_peak(wrong, region, after.shape[-1])
        touched = region & others
        scores["gt_objects_l1"] = l1(after, truth, touched) if touched.any() else 0.0
    return scores


def pixel_scores_on_device(before, afters, object_mask, edit_masks, ground_truth=None) -> list[dict[str, float]]:
    """pixel_scores of K candidates of one input, computed where the tensors are (the inpainter's device): before
    uint8 (H, W, 3), afters uint8 (K, H, W, 3), object_mask bool (H, W), edit_masks uint8 (K, H, W), ground_truth
    (uint8 (H, W, 3), bool (H, W)) tensors or None. Integer sums, then the same divisions: the same numbers."""
    import torch

    channels = before.shape[-1]
    diff = (afters.to(torch.int32) - before.to(torch.int32)).abs().sum(dim=-1)  # (K, H, W)
    edited = edit_masks > 0

    def l1_of(differences, where, empty: float = math.nan) -> list[float]:
        sums = (differences * where).flatten(1).sum(dim=1).tolist()
        counts = where.flatten(1).sum(dim=1).tolist()
        return [s / (n * channels * 255.0) if n else empty for s, n in zip(sums, counts, strict=True)]

    k = afters.shape[0]
    inside = object_mask.expand(k, -1, -1)
    scores = [
        {"mask_area": area, "inside_change": a, "outside_l1": b, "change": c}
        for area, a, b, c in zip(
            [int(object_mask.sum()) / object_mask.numel()] * k,
            l1_of(diff, inside),
            l1_of(diff, ~edited, 0.0),
            l1_of(diff, edited, 0.0),
            strict=True,
        )
    ]
    if ground_truth is not None:
        truth, others = ground_truth
        wrong = (afters.to(torch.int32) - truth.to(torch.int32)).abs().sum(dim=-1)
        region = edited | inside
        for entry, gt, objects in zip(scores, l1_of(wrong, region), l1_of(wrong, region & others, 0.0), strict=True):
            entry.update(gt_l1=gt, gt_objects_l1=objects)
        half = LOCAL_PX // 2
        padded = torch.nn.functional.pad(wrong.to(torch.int64), (half + 1, half, half + 1, half))
        integral = padded.cumsum(dim=1).cumsum(dim=2)
        height, width = wrong.shape[1:]
        sums = (
            integral[:, LOCAL_PX:, LOCAL_PX:]
            - integral[:, :height, LOCAL_PX:]
            - integral[:, LOCAL_PX:, :width]
            + integral[:, :height, :width]
        )
        peaks = torch.where(region, sums, torch.full_like(sums, -1)).flatten(1).max(dim=1).values.tolist()
        for entry, peak in zip(scores, peaks, strict=True):
            entry["gt_local_l1"] = peak / (LOCAL_PX * LOCAL_PX * channels * 255.0) if peak >= 0 else math.nan
    return scores


def gate(scores: dict[str, float], filters: dict[str, FilterSpec], order: Iterable[str] = SCORES) -> str:
    """'' to keep, else the reason of the first failing filter: its own `reason`, else '{score}_low' or
    '{score}_high'; or 'nan_{score}'.

    Filters are checked in the fixed order of `order` (SCORES; the curate phase's CURATION_SCORES), so the reason
    never depends on the order of a YAML mapping.
    """
    order = list(order)
    for name in order:
        value = scores.get(name)
        if name in scores and (value is None or (isinstance(value, float) and math.isnan(value))):
            return f"nan_{name}"
    for name in order:
        spec = filters.get(name)
        if spec is None or not spec.enabled or name not in scores:
            continue
        value = scores[name]
        if spec.min is not None and value < spec.min:
            return spec.reason or f"{name}_low"
        if spec.max is not None and value > spec.max:
            return spec.reason or f"{name}_high"
    return ""


def rank_key(scores: dict[str, float], select_by: list[str]) -> float:
    """Sort key (higher is better) from the first select_by score present; 0 when none is."""
    for entry in select_by:
        name = entry.lstrip("-")
        if name in scores:
            return -scores[name] if entry.startswith("-") else scores[name]
    return 0.0


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    denominator = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.dot(a, b) / denominator) if denominator > 0 else math.nan


def clip_scores(
    image_in: np.ndarray, image_out: np.ndarray, text_in: np.ndarray, text_out: np.ndarray
) -> dict[str, float]:
    """CLIP_img, CLIP_out and CLIP_dir from embeddings (Emu Edit's and InstructPix2Pix's definitions)."""
    return {
        "clip_img": cosine(image_in, image_out),
        "clip_out": cosine(image_out, text_out),
        "clip_dir": cosine(image_out - image_in, text_out - text_in),
    }


def model_scores(groups: list[list], models, known: dict[int, dict[str, float]] | None = None) -> None:
    """Adds CLIP, DINO, classifier, OCR read-back and detector scores to every candidate of a micro-batch; `groups`
    holds each sample's candidates.

    Candidates may share their input (remove) or their output (add, a removal swapped): each distinct image is
    embedded once, and every role is called on the whole micro-batch at once (in calls of its batch_size).
    `known`: id(image) -> {object name: detector confidence} where a generator already ran the detector on that
    image (the input `locate` grounded): the gate reuses it instead of detecting again.
    """
    groups = [group for group in groups if group]
    if not groups:
        return
    unique: dict[int, np.ndarray] = {}
    owner: dict[int, int] = {}  # image -> the sample (group) it belongs to
    for n, group in enumerate(groups):
        for candidate in group:
            for image in (candidate.input_image, candidate.output_image):
                unique.setdefault(id(image), image)
                owner.setdefault(id(image), n)
    keys = list(unique)
    clip = models.get("clip")
    if clip is not None:
        embedded = dict(zip(keys, clip.embed_images([unique[k] for k in keys]), strict=True))
        texts = [text or " " for group in groups for text in (group[0].input_caption, group[0].output_caption)]
        text_embedded = clip.embed_texts(texts)
        for n, group in enumerate(groups):
            text_in, text_out = text_embedded[2 * n], text_embedded[2 * n + 1]
            for c in group:
                c.scores.update(
                    clip_scores(embedded[id(c.input_image)], embedded[id(c.output_image)], text_in, text_out)
                )
    dino = models.get("dino")
    if dino is not None:
        embedded = dict(zip(keys, dino.embed_images([unique[k] for k in keys]), strict=True))
        for group in groups:
            for c in group:
                c.scores["dino"] = cosine(embedded[id(c.input_image)], embedded[id(c.output_image)])
    classifier = models.get("classifier")
    if classifier is not None:
        for group in groups:
            prob = classifier.task_prob(group[0].instruction, group[0].task)
            if prob is not None:
                for candidate in group:
                    candidate.scores["task_prob"] = prob
    on_lines = [c for group in groups for c in group if c.params.get("line")]
    ocr = models.get("ocr") if on_lines else None  # only the text task on photos loads it (resolve.roles_used)
    if ocr is not None:  # read each candidate's line again: the planner's OCR, and the reader that shares no weights
        from datagen.models.ocr import read_regions, reread_regions, text_scores

        places = [c.params.get("box") or c.params["line"]["quad"] for c in on_lines]  # where the string is now
        outputs = [c.output_image for c in on_lines]
        reads = read_regions(ocr, outputs, places)
        lines = [c.params["line"]["quad"] for c in on_lines]  # the new string is centred on the old line
        rereads = reread_regions(models.get("reader"), outputs, lines) or [None] * len(on_lines)
        for c, read, reread in zip(on_lines, reads, rereads, strict=True):
            mode, target, old = c.params["mode"], c.params["target_text"], c.params["line_text"]
            c.params["read_after"] = read
            c.scores.update(text_scores(read, mode, target, old))
            if reread is not None:
                c.params["reread_after"] = reread
                c.scores.update(text_scores(reread, mode, target, old, prefix="reader"))
    grounding = models.get("grounding")
    if grounding is not None and getattr(grounding, "scores_presence", False):
        known = known or {}
        queries = [(k, name) for k in keys if k not in known for name in groups[owner[k]][0].objects]
        measured = grounding.confidence_batch([(unique[k], name) for k, name in queries])
        found: dict[int, dict[str, float]] = {k: dict(known[k]) for k in keys if k in known}
        for (k, name), score in zip(queries, measured, strict=True):
            found.setdefault(k, {})[name] = score
        for group in groups:
            if not group[0].objects:
                continue
            for c in group:
                c.scores["detect_input"] = max(found[id(c.input_image)][name] for name in c.objects)
                c.scores["detect_output"] = max(found[id(c.output_image)][name] for name in c.objects)


def reward_scores(groups: list[list], reward) -> None:
    """The reward model's score of every candidate of a micro-batch, in its batched calls: `reward` on each."""
    candidates = [candidate for candidates in groups for candidate in candidates]
    items = [(c.input_image, c.output_image, c.instruction) for c in candidates]
    for candidate, value in zip(candidates, reward.reward_batch(items), strict=True):
        candidate.scores["reward"] = value


def judge_scores(groups: list[list], judge, group: str) -> dict[int, Exception]:
    """The judge's verdict on every candidate of a micro-batch, in one call: its scores (judge_*) and reasoning on
    each record, and the instruction it rewrote where it rewrites. Returns id(candidate) -> the reason for each
    candidate it gave no verdict on (an answer cut off or not parsing): those are rejected, whatever the gates."""
    candidates = [candidate for candidates in groups for candidate in candidates]
    items = [
        (c.input_image, c.output_image, c.instruction, group, (c.seed + c.candidate) % (2**31 - 1)) for c in candidates
    ]
    failures: dict[int, Exception] = {}
    for candidate, verdict in zip(candidates, judge.judge_batch(items), strict=True):
        if isinstance(verdict, Exception):
            failures[id(candidate)] = verdict
            continue
        candidate.scores.update(verdict.scores())
        candidate.judge_reasoning = verdict.reasoning
        candidate.instruction_rewritten = verdict.instruction_rewritten
    return failures
