"""Every score a candidate can carry: its name, what it measures and its range. Imports nothing of datagen, so the
record, the readers and the report know the columns without loading the filters or pydantic."""

from __future__ import annotations

from dataclasses import dataclass

SCORE_PREFIX = "score_"
"""A score's manifest and export column: `score_<name>`."""


@dataclass(frozen=True)
class Score:
    description: str
    range: tuple[float, float]


SCORES: dict[str, Score] = {
    "mask_area": Score("fraction of the image covered by the edited objects' exact mask", (0.0, 1.0)),
    "inside_change": Score("L1 between input and output inside the objects' exact mask", (0.0, 1.0)),
    "outside_l1": Score("L1 between input and output outside the edit mask actually used", (0.0, 1.0)),
    "gt_l1": Score("L1 between output and the exact ground truth over the edited region (scenes only)", (0.0, 1.0)),
    "gt_objects_l1": Score(
        "L1 between output and ground truth over other objects' pixels inside the edited region: damage done "
        "to neighbours (scenes only; 0 when the edit touches none)",
        (0.0, 1.0),
    ),
    "gt_local_l1": Score(
        "the largest L1 between output and ground truth over any 9x9 window centred in the edited region (scenes "
        "only): a blob or a broken stripe, tile or checker edge that the region's mean dilutes, while pixel noise "
        "averages out",
        (0.0, 1.0),
    ),
    "change": Score(
        "L1 between input and output over the edit mask (the whole image for a global edit): about 0 for an edit "
        "that changed nothing",
        (0.0, 1.0),
    ),
    "ocr_target_ned": Score(
        "text edits on a line read in a photo: 1 - normalised edit distance between what the OCR reads in the "
        "line's place in the output and the string that should be there (case and spaces ignored, as OCR "
        "benchmarks compare; replace and restyle)",
        (0.0, 1.0),
    ),
    "ocr_exact": Score(
        "1 when the OCR reads exactly the string that should be there (sentence accuracy), else 0", (0.0, 1.0)
    ),  # fmt: skip
    "ocr_old_gone": Score(
        "1 - the similarity (as ocr_target_ned) of what the OCR reads in the line's place to the old string: 1 when "
        "nothing like it is read there any more (remove, and replace unless the new string contains the old)",
        (0.0, 1.0),
    ),
    "reader_target_ned": Score(
        "as ocr_target_ned, read by the reader role (Tesseract), which shares no weights with the OCR that found "
        "and planned the line",
        (0.0, 1.0),
    ),
    "reader_exact": Score("as ocr_exact, read by the reader role", (0.0, 1.0)),
    "reader_old_gone": Score("as ocr_old_gone, read by the reader role", (0.0, 1.0)),
    "clip_out": Score("CLIP cosine between the output image and the output caption", (-1.0, 1.0)),
    "clip_img": Score("CLIP cosine between input and output images", (-1.0, 1.0)),
    "clip_dir": Score(
        "CLIP directional similarity: cosine between the image change and the caption change (InstructPix2Pix)",
        (-1.0, 1.0),
    ),
    "dino": Score("DINOv2 cosine between input and output images", (-1.0, 1.0)),
    "detect_input": Score("detector confidence that the named objects are in the input (max over objects)", (0, 1)),
    "detect_output": Score("detector confidence that the named objects are in the output (max over objects)", (0, 1)),
    "task_prob": Score(
        "the task classifier's probability that the instruction asks for the record's own task (Emu Edit's "
        "task-agreement gate; pipelines with a `classifier` role)",
        (0, 1),
    ),
    "judge_following": Score("the judge: the output does what the instruction asks (0-10)", (0, 10)),
    "judge_preservation": Score("the judge: what the instruction does not mention is unchanged (0-10)", (0, 10)),
    "judge_quality": Score("the judge: the output looks natural, without artifacts (0-10; VIEScore's PQ)", (0, 10)),
    "judge_overall": Score("the judge: the pair is a good training example overall (0-10)", (0, 10)),
    "reward": Score(
        "a trained reward model's score of the pair (EditReward: the mean of its instruction-following and "
        "visual-quality heads; unbounded, higher is better; pipelines with a `reward` role)",
        (float("-inf"), float("inf")),
    ),
}

CURATION_SCORES: dict[str, Score] = {
    "short_side": Score("the input's shorter side in pixels", (0.0, float("inf"))),
    "aspect": Score("the input's longer side over its shorter one (1 for a square)", (1.0, float("inf"))),
    "blur": Score(
        "Crete et al.'s blur effect (skimage.measure.blur_effect) of the grey input at most 512 px on its long side: "
        "about 0.2-0.5 for a sharp photo, towards 1 for a blurred one",
        (0.0, 1.0),
    ),
    "nsfw": Score("the nsfw role's score: its detector's highest confidence among the gated classes", (0.0, 1.0)),
    "aesthetic": Score(
        "the aesthetic role's score: LAION-Aesthetics V2 over CLIP ViT-L/14, about 1-10 (higher is better)",
        (float("-inf"), float("inf")),
    ),
    "text_area": Score(
        "the share of the input the ocr role's text lines cover (measured only where a gate asks for it)", (0.0, 1.0)
    ),
}
"""Every score an input photo can carry in the curate phase (datagen/curate.py), in the order its gates check
them."""
