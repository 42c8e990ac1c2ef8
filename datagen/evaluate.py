"""Emu Edit's benchmark metrics: CLIP_dir, CLIP_img, CLIP_out, L1 and DINO, per task and overall.

On shards, the pairs as stored (the dataset's own quality) or, with a checkpoint, the model's edits of their inputs;
on a benchmark-format parquet (instruction, image, input_caption, output_caption, task, idx) a checkpoint's edits.
The CLIP and DINO models come from a pipeline's roles and are printed beside every number.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from datagen.config import ConfigError
from datagen.filters import clip_scores, cosine

METRICS = ("clip_dir", "clip_img", "clip_out", "l1", "dino")


def pair_metrics(before, after, embed_in, embed_out, text_in, text_out, dino_in, dino_out) -> dict[str, float]:
    """The five metrics of one pair from its embeddings; L1 is the mean |after - before| of images in [0, 1]."""
    scores = clip_scores(embed_in, embed_out, text_in, text_out)
    l1 = float(np.abs(after.astype(np.float32) - before.astype(np.float32)).mean() / 255.0)
    return {**scores, "l1": l1, "dino": cosine(dino_in, dino_out)}


def summarise(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean of each metric per task and over all rows (NaNs, from identical captions or images, left out)."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        groups[row["task"]].append(row)
        groups["all"].append(row)
    out = {}
    for task, members in sorted(groups.items()):
        out[task] = {"n": len(members)}
        for metric in METRICS:
            values = [r[metric] for r in members if not np.isnan(r[metric])]
            out[task][metric] = float(np.mean(values)) if values else float("nan")
    return out


def load_pairs(shards: list[str], limit: int | None) -> list[dict[str, Any]]:
    import webdataset as wds

    from datagen.images import decode_member
    from datagen.train import shard_urls

    pairs = []
    for sample in wds.WebDataset(shard_urls(shards), shardshuffle=False, empty_check=False):
        meta = json.loads(sample["json"])
        pairs.append({
            "task": meta["task"], "instruction": meta["instruction"], "input_caption": meta["input_caption"],
            "output_caption": meta["output_caption"],
            "input": decode_member(next(sample[k] for k in sample if k.startswith("input."))),
            "output": decode_member(next(sample[k] for k in sample if k.startswith("output."))),
        })  # fmt: skip
        if limit and len(pairs) >= limit:
            break
    return pairs


def load_benchmark(path: str, limit: int | None) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    from datagen.images import decode_image

    table = pq.read_table(path, use_threads=False)
    needed = {"instruction", "image", "input_caption", "output_caption", "task"}
    if not needed <= set(table.column_names):
        raise ConfigError(
            f"{path}: needs columns {', '.join(sorted(needed))} (it has {', '.join(table.column_names)})"
        )
    pairs = []
    for row in table.to_pylist()[:limit]:
        image = row["image"]["bytes"] if isinstance(row["image"], dict) else row["image"]
        pairs.append({**{k: row[k] for k in needed - {"image"}}, "input": decode_image(image, 50_000_000)})
    return pairs


def evaluate(pairs: list[dict[str, Any]], clip, dino, editor=None, edit_args: dict | None = None) -> list[dict]:
    """Per-pair metrics; with an editor the outputs are its edits of the inputs."""
    from datagen.images import fit_square

    rows = []
    for pair in pairs:
        before = pair["input"]
        if editor is not None:
            from datagen.train import edit

            task = pair["task"] if pair["task"] in editor.tasks else editor.tasks[0]
            before = fit_square(before, editor_size(before))
            after = edit(editor, before, pair["instruction"], task, **(edit_args or {}))
            before = before[: after.shape[0], : after.shape[1]]
        else:
            after = pair["output"]
        image_in, image_out = clip.embed_images([before, after])
        text_in, text_out = clip.embed_texts([pair["input_caption"] or " ", pair["output_caption"] or " "])
        dino_in, dino_out = dino.embed_images([before, after])
        rows.append(
            {
                "task": pair["task"],
                **pair_metrics(before, after, image_in, image_out, text_in, text_out, dino_in, dino_out),
            }
        )
    return rows


def editor_size(image: np.ndarray) -> int:
    side = min(image.shape[:2])
    return max(64, side - side % 8)


def table(summary: dict[str, dict[str, float]], clip_id: str, dino_id: str) -> str:
    lines = [f"CLIP: {clip_id}   DINO: {dino_id}", f"{'task':<12} {'n':>5} " + " ".join(f"{m:>9}" for m in METRICS)]
    for task, values in summary.items():
        lines.append(f"{task:<12} {values['n']:>5} " + " ".join(f"{values[m]:>9.4f}" for m in METRICS))
    return "\n".join(lines)


def write_json(path: Path, summary: dict, clip_id: str, dino_id: str) -> None:
    path.write_text(json.dumps({"clip": clip_id, "dino": dino_id, "metrics": summary}, indent=1))
