"""Emu Edit's benchmark metrics: CLIP_dir, CLIP_img, CLIP_out, L1 and DINO, per task and overall.

On shards, the pairs as stored (the dataset's own quality) or, with a checkpoint, the model's edits of their inputs;
on a benchmark-format parquet (instruction, image, input_caption, output_caption, task, idx) a checkpoint's edits.
The CLIP and DINO models come from a pipeline's roles and are printed beside every number.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from datagen.errors import ConfigError
from datagen.filters import clip_scores, cosine
from datagen.progress import Progress

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
    from datagen.shards import tar_urls

    pairs = []
    for sample in wds.WebDataset(tar_urls(shards), shardshuffle=False, empty_check=False):
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


def evaluate(
    pairs: list[dict[str, Any]],
    clip,
    dino,
    editor=None,
    edit_args: dict | None = None,
    batch_size: int = 8,
    progress: bool = True,
) -> list[dict]:
    """Per-pair metrics, in the order of `pairs`; with an editor the outputs are its edits of the inputs, made
    `batch_size` pairs at a time. Progress in pairs on stderr (a bar on a terminal, JSON lines otherwise)."""
    if batch_size < 1:
        raise ConfigError(f"--batch-size {batch_size}: give at least 1 pair per batch")
    rows = []
    with Progress(len(pairs), "eval", unit="pair", enabled=progress) as bar:
        bar.update(0)  # the first line, with the total, before the first batch's edits

        def on_step(done: int, steps: int) -> None:  # a batch of edits takes minutes on a CPU: show its steps
            bar.update(0, denoising=f"{done}/{steps}")

        for start in range(0, len(pairs), batch_size):
            batch = pairs[start : start + batch_size]
            if editor is None:
                befores, afters = [p["input"] for p in batch], [p["output"] for p in batch]
            else:
                befores, afters = edited(batch, editor, edit_args or {}, on_step)
            rows += measured(batch, befores, afters, clip, dino)
            bar.update(len(batch))
    return rows


def edited(pairs: list[dict[str, Any]], editor, edit_args: dict, on_step=None) -> tuple[list, list]:
    """(inputs as the editor saw them, its edits): inputs fitted to a square the editor takes, edited together."""
    from datagen.images import fit_square
    from datagen.train import edit_batch

    befores = [fit_square(p["input"], editor_size(p["input"])) for p in pairs]
    tasks = [p["task"] if p["task"] in editor.tasks else editor.tasks[0] for p in pairs]
    seed = edit_args.get("seed", 0)
    args = {k: v for k, v in edit_args.items() if k != "seed"}
    afters = edit_batch(editor, befores, [p["instruction"] for p in pairs], tasks, seeds=[seed] * len(pairs),
                        on_step=on_step, **args)  # fmt: skip
    return [b[: a.shape[0], : a.shape[1]] for b, a in zip(befores, afters, strict=True)], afters


def measured(pairs: list[dict[str, Any]], befores: list, afters: list, clip, dino) -> list[dict]:
    """`pair_metrics` of each pair, every embedding of the batch computed in one call per embedder and kind."""
    n = len(pairs)
    images = clip.embed_images(befores + afters)
    texts = clip.embed_texts([p["input_caption"] or " " for p in pairs] + [p["output_caption"] or " " for p in pairs])
    dinos = dino.embed_images(befores + afters)
    return [
        {
            "task": pair["task"],
            **pair_metrics(
                befores[k], afters[k], images[k], images[n + k], texts[k], texts[n + k], dinos[k], dinos[n + k]
            ),
        }
        for k, pair in enumerate(pairs)
    ]


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


def flags(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__
    parser.add_argument("--shards", nargs="+", help="run folders or .tar files: their pairs, or a checkpoint's edits")
    parser.add_argument("--benchmark", help="a benchmark-format parquet (needs --checkpoint)")
    parser.add_argument("--checkpoint", help="evaluate this model's edits instead of the stored outputs")
    parser.add_argument("--pipeline", default="sd15", help="whose clip and dino roles measure (default: sd15)")
    parser.add_argument("--limit", type=int, help="at most this many pairs")
    parser.add_argument("--json", help="also write the numbers here")
    parser.add_argument("--batch-size", type=int, default=8, help="pairs edited and embedded together (default: 8)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (or JSON lines) over the pairs")


def run(args: argparse.Namespace) -> int:
    """`datagen eval`: measure stored pairs or a checkpoint's edits with a pipeline's clip and dino roles."""
    from datagen import models
    from datagen.preflight import require
    from datagen.resolve import load_pipeline

    if bool(args.shards) == bool(args.benchmark):
        raise ConfigError("give --shards or --benchmark (one of them)")
    if args.benchmark and not args.checkpoint:
        raise ConfigError("--benchmark needs --checkpoint: a benchmark has inputs only")
    pipeline = load_pipeline(args.pipeline)
    missing = [r for r in ("clip", "dino") if r not in pipeline.roles]
    if missing:
        raise ConfigError(f"--pipeline {args.pipeline}: has no {' or '.join(missing)} role to measure with")
    require(pipeline, "render", {"clip", "dino"})
    clip = models.build("clip", pipeline.roles["clip"])
    dino = models.build("dino", pipeline.roles["dino"])
    clip.load()
    dino.load()
    pairs = load_benchmark(args.benchmark, args.limit) if args.benchmark else load_pairs(args.shards, args.limit)
    editor = None
    if args.checkpoint:
        from datagen.train import load_editor

        editor = load_editor(args.checkpoint)
    rows = evaluate(pairs, clip, dino, editor, batch_size=args.batch_size, progress=not args.no_progress)
    summary = summarise(rows)
    print(table(summary, clip.model_id, dino.model_id))
    if args.json:
        write_json(Path(args.json), summary, clip.model_id, dino.model_id)
    return 0
