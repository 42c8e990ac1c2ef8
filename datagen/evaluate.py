"""Emu Edit's benchmark metrics (CLIP_dir, CLIP_img, CLIP_out, L1, DINO) per task and overall; with `--judge`, also
VIEScore's SC, PQ and O from a pipeline's vision-language judge; where `--pipeline` has an `ocr` role, OCR sentence
accuracy and NED (AnyText's text metrics) of the text pairs that say what string the output should read.

On shards, the pairs as stored (the dataset's own quality) or, with a checkpoint, the model's edits of their inputs;
on a benchmark parquet, a checkpoint's edits of its inputs (a benchmark has no reference outputs). The CLIP, DINO
and judge models come from pipelines' roles and are printed beside every number.

Benchmark parquets, told apart by their columns (or `--benchmark-format`); other columns are not read:

  emu    Emu Edit's test set: image -> the input (an image struct {bytes, path}, or bytes); instruction; task;
         input_caption and output_caption -> the captions of CLIP_dir and CLIP_out.
  gedit  GEdit-Bench (key, task_type, instruction, instruction_language, input_image, ...): input_image -> the
         input (a struct or bytes; input_image_raw, the unresized original, is not read); instruction; task_type ->
         the task, as the editor and the judge see it by GEDIT_TASKS (below); instruction_language (en, cn) ->
         `--language`, as GEdit-Bench reports the two apart; key is not needed. No captions: CLIP_dir and CLIP_out
         are NaN.

VIEScore from the judge's verdict (datagen/models/judge.py), 0-10 each: SC = min(following, preservation), PQ =
quality, O = sqrt(SC x PQ). The rubric is the task group's (prompts/judge/GROUP.yaml): tasks/TASK.yaml's group,
GEDIT_TASKS' for GEdit-Bench's task types, free-form for any other task name. A pair the judge gives no verdict on
(an answer cut off or not parsing) is NaN for all three, left out of the means and counted (`unjudged`).

OCR (ocr_acc, ocr_ned): a pair whose record names the string its output should read (the text task: `target_text`
of a line edited in a photo, `text_after` of a drawn text) is read by the pipeline's OCR role — where the line is,
when the output has the input's size (a stored pair: models/ocr.py's read_regions, as the render's read-back),
else the whole output, the read line closest to the string counting. ocr_acc is 1 when it reads the string
exactly (case and spaces ignored, as OCR benchmarks compare), ocr_ned is 1 - its normalised edit distance. Other
pairs are NaN, and `ocr_n` counts the measured ones.

Sessions (a run made with --turns, datagen/sessions.py): the metrics also per turn. With a checkpoint, in
MagicBrush's two settings: `independent`, each turn edited from the true previous image (the stored input), and
`chained`, each turn edited from the model's own output of the turn before, keeping only the pixels a turn changed
(Emu Edit's per-pixel threshold, `--alpha`, as `datagen edit` does between turns). A turn whose previous turn is not
among the pairs (cut off by --limit) starts from its stored input there too.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from datagen.errors import ConfigError
from datagen.filters import clip_scores, cosine
from datagen.models.ocr import ned_similarity
from datagen.progress import Progress

METRICS = ("clip_dir", "clip_img", "clip_out", "l1", "dino")
OCR_METRICS = ("ocr_acc", "ocr_ned")
"""OCR sentence accuracy and 1 - normalised edit distance of the pairs with a string to read."""
JUDGE_METRICS = ("SC", "PQ", "O")
"""VIEScore's semantic consistency, perceptual quality and overall score, in its own notation."""
FORMATS = {
    "emu": ("instruction", "image", "input_caption", "output_caption", "task"),
    "gedit": ("task_type", "instruction", "input_image"),
}
"""The columns each benchmark format needs."""
FORMAT_NAMES = {"emu": "Emu Edit test set", "gedit": "GEdit-Bench"}
SETTINGS = {
    "independent": "each turn from the true previous image",
    "chained": "each turn from the model's own previous output",
}
"""MagicBrush's two multi-turn settings (a checkpoint's edits of sessions)."""
GEDIT_TASKS: dict[str, tuple[str, str]] = {
    # task_type: (the datagen task the editor is conditioned on, its group: the judge's rubric)
    "background_change": ("background", "region"),
    "color_alter": ("local", "region"),  # one object's colour; datagen's `color` adjusts the whole image (vision)
    "material_alter": ("texture", "region"),
    "motion_change": ("local", "region"),  # a subject's pose or action changes; the scene around it stays
    "ps_human": ("local", "region"),  # portrait retouching: one person's face, hair or body; the rest stays
    "style_change": ("style", "free-form"),
    "subject-add": ("add", "region"),
    "subject-remove": ("remove", "region"),
    "subject-replace": ("local", "region"),
    "text_change": ("text", "free-form"),
    "tone_transfer": ("global", "free-form"),  # lighting, season, weather or time of day over the whole image
}
"""GEdit-Bench's 11 task types as datagen tasks; none is a vision or translation edit. Each group is its task's
(tasks/TASK.yaml), which a test holds."""
OTHER_GROUP = "free-form"
"""The rubric of a task name that is neither a datagen task nor a GEdit-Bench type: the most general one (the
whole image may change; its content must survive)."""


def pair_metrics(before, after, embed_in, embed_out, text_in, text_out, dino_in, dino_out) -> dict[str, float]:
    """The five metrics of one pair from its embeddings; L1 is the mean |after - before| of images in [0, 1]."""
    scores = clip_scores(embed_in, embed_out, text_in, text_out)
    l1 = float(np.abs(after.astype(np.float32) - before.astype(np.float32)).mean() / 255.0)
    return {**scores, "l1": l1, "dino": cosine(dino_in, dino_out)}


def summarise(rows: list[dict[str, Any]], by: str = "task") -> dict[str, dict[str, float]]:
    """Mean of each metric per task (`by="turn"`: per turn of the sessions) and over all rows (NaNs, from identical
    captions or images, missing captions or pairs the judge did not score, left out); with judge scores, how many
    pairs it did not score."""
    judged = bool(rows) and "SC" in rows[0]
    read = bool(rows) and "ocr_acc" in rows[0]
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in sorted(rows, key=lambda row: row.get("turn", 1)) if by == "turn" else rows:
        groups[f"turn {row.get('turn', 1)}" if by == "turn" else row["task"]].append(row)
        groups["all"].append(row)
    out = {}
    for task, members in groups.items() if by == "turn" else sorted(groups.items()):
        out[task] = {"n": len(members)}
        for metric in METRICS + (JUDGE_METRICS if judged else ()) + (OCR_METRICS if read else ()):
            values = [r[metric] for r in members if not np.isnan(r[metric])]
            out[task][metric] = float(np.mean(values)) if values else float("nan")
        if read:
            out[task]["ocr_n"] = sum(1 for r in members if not np.isnan(r["ocr_acc"]))
        if judged:
            out[task]["unjudged"] = sum(1 for r in members if r["unjudged"])
    return out


def load_pairs(shards: list[str], limit: int | None) -> list[dict[str, Any]]:
    """The first `limit` (or all) samples of the runs and tars named by --shards, decoded, in order."""
    from datagen.images import decode_member
    from datagen.shards.reader import read_samples

    pairs = []
    for sample in read_samples(shards):
        meta = sample.meta
        pairs.append(
            {
                "task": meta["task"],
                "instruction": meta["instruction"],
                "input_caption": meta["input_caption"],
                "output_caption": meta["output_caption"],
                "input": decode_member(sample.images["input"][1]),
                "output": decode_member(sample.images["output"][1]),
                "key": sample.key,
                "turn": int(meta.get("turn") or 1),
                "previous": meta.get("previous") or "",
                **text_target(meta.get("params")),
            }
        )
        if limit and len(pairs) >= limit:
            break
    return pairs


def text_target(params: Any) -> dict[str, Any]:
    """What a pair's output should read and where, from its record's params: a line edited in a photo (target_text,
    in its box), a drawn text added or changed (text_after, anywhere); {} for any other pair."""
    params = json.loads(params) if isinstance(params, str) and params else params
    if not isinstance(params, dict):
        return {}
    if params.get("target_text"):
        return {"ocr_target": str(params["target_text"]), "ocr_place": params.get("box") or params["line"]["quad"]}
    if params.get("mode") in ("add", "change") and params.get("text_after"):
        return {"ocr_target": str(params["text_after"]), "ocr_place": None}
    return {}


def read_texts(pairs: list[dict[str, Any]], befores: list, afters: list, reader) -> list[dict[str, float]]:
    """ocr_acc and ocr_ned of each pair (NaN where it has no string to read), its reads batched: one call for the
    regions, one for the whole outputs."""
    from datagen.models.ocr import normalise, read_regions

    rows = [dict.fromkeys(OCR_METRICS, math.nan) for _ in pairs]
    wanted = [k for k, pair in enumerate(pairs) if pair.get("ocr_target")]
    placed = [k for k in wanted if pairs[k]["ocr_place"] is not None and afters[k].shape == pairs[k]["input"].shape]
    anywhere = [k for k in wanted if k not in placed]
    read: dict[int, list[str]] = {}
    for k, text in zip(
        placed, read_regions(reader, [afters[k] for k in placed], [pairs[k]["ocr_place"] for k in placed]), strict=True
    ):
        read[k] = [text]
    for k, lines in zip(anywhere, reader.read_batch([afters[k] for k in anywhere]) if anywhere else [], strict=True):
        read[k] = [line.text for line in lines] + [" ".join(line.text for line in lines)] or [""]
    for k in wanted:
        target = pairs[k]["ocr_target"]
        ned = max(ned_similarity(text, target) for text in read[k] or [""])
        rows[k] = {"ocr_acc": float(any(normalise(text) == normalise(target) for text in read[k])), "ocr_ned": ned}
    return rows


def benchmark_format(path: str, asked: str = "auto") -> str:
    """`emu` or `gedit`: the format asked for, its columns checked, or (auto) the one whose columns the file has."""
    import pyarrow.parquet as pq

    columns = pq.read_schema(path).names
    has = ", ".join(columns)
    if asked == "auto":
        for name, needed in FORMATS.items():
            if set(needed) <= set(columns):
                return name
        wanted = " or ".join(f"{', '.join(sorted(needed))} ({FORMAT_NAMES[n]})" for n, needed in FORMATS.items())
        raise ConfigError(f"{path}: needs columns {wanted} (it has {has})")
    missing = sorted(set(FORMATS[asked]) - set(columns))
    if missing:
        raise ConfigError(f"{path}: --benchmark-format {asked} needs columns {', '.join(missing)} (it has {has})")
    return asked


def load_benchmark(
    path: str, limit: int | None, form: str = "auto", language: str | None = None
) -> list[dict[str, Any]]:
    """The pairs of a benchmark parquet (module docstring: its columns), inputs decoded; `language`: GEdit-Bench's
    rows with that instruction_language only."""
    import pyarrow.parquet as pq

    from datagen.images import decode_image

    form = benchmark_format(path, form)
    columns = list(FORMATS[form])
    if form == "gedit" and "instruction_language" in pq.read_schema(path).names:
        columns.append("instruction_language")
    if language is not None and "instruction_language" not in columns:
        raise ConfigError(f"--language {language}: {path} has no instruction_language column (GEdit-Bench's)")
    rows = pq.read_table(path, columns=columns, use_threads=False).to_pylist()
    if language is not None:
        found = sorted({str(row["instruction_language"]) for row in rows})
        rows = [row for row in rows if row["instruction_language"] == language]
        if not rows:
            raise ConfigError(f"--language {language}: no such rows in {path} (its languages: {', '.join(found)})")
    pairs = []
    for row in rows[:limit]:
        image = row["image" if form == "emu" else "input_image"]
        image = decode_image(image["bytes"] if isinstance(image, dict) else image, 50_000_000)
        if form == "emu":
            pairs.append({**{k: row[k] for k in FORMATS["emu"] if k != "image"}, "input": image})
        else:
            pairs.append(
                {
                    "task": row["task_type"],
                    "instruction": row["instruction"],
                    "input_caption": None,
                    "output_caption": None,
                    "input": image,
                }
            )
    return pairs


@functools.cache
def task_group(task: str) -> str:
    """The task group whose judge rubric fits a task (module docstring)."""
    from datagen.config import find_config, known, read_yaml

    if task in GEDIT_TASKS:
        return GEDIT_TASKS[task][1]
    if task in known("tasks"):
        return str(read_yaml(find_config("tasks", task))["group"])
    return OTHER_GROUP


def evaluate(
    pairs: list[dict[str, Any]],
    clip,
    dino,
    editor=None,
    edit_args: dict | None = None,
    batch_size: int = 8,
    progress: bool = True,
    judge=None,
    ocr=None,
    chain: dict[str, np.ndarray] | None = None,
    alpha: float = 0.03,
) -> list[dict]:
    """Per-pair metrics, in the order of `pairs`; with an editor the outputs are its edits of the inputs, made
    `batch_size` pairs at a time; with a judge, its SC, PQ and O of each batch in one call; with an OCR reader, the
    text pairs' ocr_acc and ocr_ned. Progress in pairs on stderr (a bar on a terminal, JSON lines otherwise).
    With `chain` (key -> the model's output of that pair, filled in as it goes; pairs in turn order), a pair whose
    previous turn is there is edited from that output instead of its stored input, and only the pixels that changed
    by `alpha` or more are kept (the `chained` setting)."""
    if batch_size < 1:
        raise ConfigError(f"--batch-size {batch_size}: give at least 1 pair per batch")
    rows = []
    with Progress(len(pairs), "eval", unit="pair", enabled=progress) as bar:
        bar.update(0)  # the first line, with the total, before the first batch's edits

        def on_step(done: int, steps: int) -> None:  # a batch of edits takes minutes on a CPU: show its steps
            bar.update(0, denoising=f"{done}/{steps}")

        for start in range(0, len(pairs), batch_size):
            batch = pairs[start : start + batch_size]
            if chain is not None:
                batch = [{**p, "input": chain[p["previous"]]} if p.get("previous") in chain else p for p in batch]
            if editor is None:
                befores, afters = [p["input"] for p in batch], [p["output"] for p in batch]
            else:
                befores, afters = edited(batch, editor, edit_args or {}, on_step)
            if chain is not None:
                from datagen.edit import keep_changed

                afters = [
                    keep_changed(b, a, alpha) if p.get("previous") in chain else a
                    for p, b, a in zip(batch, befores, afters, strict=True)
                ]
                chain.update((p["key"], a) for p, a in zip(batch, afters, strict=True))
            metrics = measured(batch, befores, afters, clip, dino)
            if judge is not None:
                verdicts = judged(batch, befores, afters, judge, start)
                metrics = [{**m, **v} for m, v in zip(metrics, verdicts, strict=True)]
            if ocr is not None:
                reads = read_texts(batch, befores, afters, ocr)
                metrics = [{**m, **r} for m, r in zip(metrics, reads, strict=True)]
            rows += metrics
            bar.update(len(batch))
    return rows


def edited(pairs: list[dict[str, Any]], editor, edit_args: dict, on_step=None) -> tuple[list, list]:
    """(inputs as the editor saw them, its edits): inputs fitted to a square the editor takes, edited together."""
    from datagen.edit import edit_batch
    from datagen.images import fit_square

    befores = [fit_square(p["input"], editor_size(p["input"])) for p in pairs]
    tasks = [editor_task(p["task"], editor.tasks) for p in pairs]
    seed = edit_args.get("seed", 0)
    args = {k: v for k, v in edit_args.items() if k != "seed"}
    afters = edit_batch(
        editor, befores, [p["instruction"] for p in pairs], tasks, seeds=[seed] * len(pairs), on_step=on_step, **args
    )
    return [b[: a.shape[0], : a.shape[1]] for b, a in zip(befores, afters, strict=True)], afters


def editor_task(task: str, known: list[str]) -> str:
    """The task the editor is conditioned on: the pair's (GEdit-Bench's types as GEDIT_TASKS says), else its first."""
    task = GEDIT_TASKS[task][0] if task in GEDIT_TASKS else task
    return task if task in known else known[0]


def measured(pairs: list[dict[str, Any]], befores: list, afters: list, clip, dino) -> list[dict]:
    """`pair_metrics` of each pair, every embedding of the batch computed in one call per embedder and kind; CLIP_out
    and CLIP_dir are NaN where a caption they need is missing (GEdit-Bench has none)."""
    n = len(pairs)
    images = clip.embed_images(befores + afters)
    texts = clip.embed_texts([p["input_caption"] or " " for p in pairs] + [p["output_caption"] or " " for p in pairs])
    dinos = dino.embed_images(befores + afters)
    rows = []
    for k, pair in enumerate(pairs):
        metrics = pair_metrics(
            befores[k], afters[k], images[k], images[n + k], texts[k], texts[n + k], dinos[k], dinos[n + k]
        )
        if not pair["output_caption"]:
            metrics["clip_out"] = math.nan
        if not (pair["input_caption"] and pair["output_caption"]):
            metrics["clip_dir"] = math.nan
        rows.append({"task": pair["task"], "turn": pair.get("turn", 1), **metrics})
    return rows


def judged(pairs: list[dict[str, Any]], befores: list, afters: list, judge, first: int) -> list[dict]:
    """VIEScore's SC, PQ and O of each pair from the judge's verdicts, one call for the batch; `unjudged`: the reason
    the judge gave no verdict (the scores NaN), else "". Each pair's seed is its place in the whole evaluation, so
    the scores do not depend on the batch size."""
    items = [
        (before, after, pair["instruction"], task_group(pair["task"]), first + k)
        for k, (pair, before, after) in enumerate(zip(pairs, befores, afters, strict=True))
    ]
    rows = []
    for verdict in judge.judge_batch(items):
        if isinstance(verdict, Exception):
            reason = getattr(verdict, "reason", "judge_failed")
            rows.append({"SC": math.nan, "PQ": math.nan, "O": math.nan, "unjudged": reason})
        else:
            rows.append(
                {"SC": verdict.semantics, "PQ": float(verdict.quality), "O": verdict.vie_overall, "unjudged": ""}
            )
    return rows


def editor_size(image: np.ndarray) -> int:
    side = min(image.shape[:2])
    return max(64, side - side % 8)


def table(summary: dict[str, dict[str, float]], models: dict[str, str], label: str = "task") -> str:
    """The summary as a table under the models that measured it (CLIP, DINO and, if any, the judge); `label` heads
    its first column."""
    judged = "SC" in summary.get("all", {})
    read = "ocr_acc" in summary.get("all", {})
    width = max([12, *(len(task) for task in summary)])
    header = f"{label:<{width}} {'n':>5} " + " ".join(f"{m:>9}" for m in METRICS)
    if judged:
        header += " " + " ".join(f"{m:>6}" for m in JUDGE_METRICS) + f" {'unjudged':>8}"
    if read:
        header += f" {'ocr_n':>5} " + " ".join(f"{m:>7}" for m in OCR_METRICS)
    lines = ["   ".join(f"{role}: {model}" for role, model in models.items()), header]
    for task, values in summary.items():
        line = f"{task:<{width}} {values['n']:>5} " + " ".join(f"{values[m]:>9.4f}" for m in METRICS)
        if judged:
            line += " " + " ".join(f"{values[m]:>6.2f}" for m in JUDGE_METRICS) + f" {values['unjudged']:>8}"
        if read:
            line += f" {values['ocr_n']:>5} " + " ".join(f"{values[m]:>7.4f}" for m in OCR_METRICS)
        lines.append(line)
    return "\n".join(lines)


def unjudged_reasons(rows: list[dict]) -> dict[str, int]:
    """How many pairs the judge gave no verdict on, by reason."""
    return dict(sorted(Counter(row["unjudged"] for row in rows if row.get("unjudged")).items()))


def write_json(
    path: Path,
    summary: dict,
    models: dict[str, str],
    unjudged: dict[str, int] | None = None,
    by_turn: dict[str, dict] | None = None,
) -> None:
    """The numbers and the models (`clip`, `dino`, `judge`); with a judge, its `unjudged` pairs by reason; for
    sessions, `by_turn`: setting -> the metrics per turn."""
    document: dict[str, Any] = {role.lower(): model for role, model in models.items()}
    document["metrics"] = summary
    if by_turn:
        document["by_turn"] = by_turn
    if unjudged is not None:
        document["unjudged"] = unjudged
    path.write_text(json.dumps(document, indent=1))


def flags(parser: argparse.ArgumentParser) -> None:
    tasks = "\n".join(f"  {name:<18} {task:<11} {group}" for name, (task, group) in GEDIT_TASKS.items())
    parser.description = f"{__doc__}\nGEDIT_TASKS: task_type, datagen task, group\n{tasks}"
    parser.formatter_class = argparse.RawDescriptionHelpFormatter  # the tables as written
    parser.add_argument("--shards", nargs="+", help="run folders or .tar files: their pairs, or a checkpoint's edits")
    parser.add_argument("--benchmark", help="a benchmark parquet, Emu Edit's or GEdit-Bench's (needs --checkpoint)")
    parser.add_argument(
        "--benchmark-format",
        choices=("auto", "emu", "gedit"),
        default="auto",
        help="the benchmark's format (default: auto, told by its columns)",
    )
    parser.add_argument("--language", help="GEdit-Bench: the rows of this instruction_language only, e.g. en or cn")
    parser.add_argument("--checkpoint", help="evaluate this model's edits instead of the stored outputs")
    parser.add_argument("--pipeline", default="sd15", help="whose clip and dino roles measure (default: sd15)")
    parser.add_argument("--judge", metavar="PIPELINE", help="also VIEScore's SC, PQ and O from this pipeline's judge")
    parser.add_argument("--limit", type=int, help="at most this many pairs")
    parser.add_argument("--json", help="also write the numbers here")
    parser.add_argument(
        "--alpha",
        type=float,
        default=0.03,
        help="sessions with --checkpoint, the chained setting: keep a new pixel only if it changed "
        "this much (Emu Edit's multi-turn threshold, as datagen edit; default: 0.03)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=8, help="pairs edited, embedded and judged together (default: 8)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (or JSON lines) over the pairs")


def run(args: argparse.Namespace) -> int:
    """`datagen eval`: measure stored pairs or a checkpoint's edits with a pipeline's clip and dino roles, and with
    --judge another's judge."""
    from datagen import models
    from datagen.preflight import require
    from datagen.resolve import load_pipeline

    if bool(args.shards) == bool(args.benchmark):
        raise ConfigError("give --shards or --benchmark (one of them)")
    form = benchmark_format(args.benchmark, args.benchmark_format) if args.benchmark else None
    if form and not args.checkpoint:
        raise ConfigError(
            f"--benchmark {args.benchmark}: a {FORMAT_NAMES[form]} parquet has input images only; give --checkpoint, "
            f"the model whose edits to measure"
        )
    if args.language and form != "gedit":
        raise ConfigError("--language picks GEdit-Bench rows: give it with a GEdit-Bench --benchmark")
    pipeline = load_pipeline(args.pipeline)
    missing = [r for r in ("clip", "dino") if r not in pipeline.roles]
    if missing:
        raise ConfigError(f"--pipeline {args.pipeline}: has no {' or '.join(missing)} role to measure with")
    judging = load_pipeline(args.judge) if args.judge else None
    if judging is not None and "judge" not in judging.roles:
        raise ConfigError(
            f"--judge {args.judge}: pipeline {judging.name!r} has no judge role (roles.judge); name a pipeline that "
            f"has one, e.g. --judge tiny"
        )
    require(pipeline, "render", {"clip", "dino"})
    if judging is not None:
        require(judging, "render", {"judge"})
    clip = models.build("clip", pipeline.roles["clip"])
    dino = models.build("dino", pipeline.roles["dino"])
    clip.load()
    dino.load()
    if args.benchmark:
        pairs = load_benchmark(args.benchmark, args.limit, form, args.language)
    else:
        pairs = load_pairs(args.shards, args.limit)
    editor = None
    if args.checkpoint:
        from datagen.train import load_editor

        editor = load_editor(args.checkpoint)
    ocr = None
    if "ocr" in pipeline.roles and any(pair.get("ocr_target") for pair in pairs):
        ocr = models.build("ocr", pipeline.roles["ocr"])
        ocr.load()
    judge = None
    if judging is not None:  # last: vLLM checks its memory share against what the editor leaves free
        judge = models.build("judge", judging.roles["judge"])
        judge.load()
    rows = evaluate(
        pairs, clip, dino, editor, batch_size=args.batch_size, progress=not args.no_progress, judge=judge, ocr=ocr
    )
    summary = summarise(rows)
    names = {
        "CLIP": clip.model_id,
        "DINO": dino.model_id,
        **({"judge": judge.model_id} if judge else {}),
        **({"OCR": ocr.model_id} if ocr else {}),
    }
    print(table(summary, names))
    by_turn = {}
    if any(pair.get("turn", 1) > 1 for pair in pairs):  # sessions: per turn, in MagicBrush's settings
        if not (0.0 <= args.alpha <= 1.0):
            raise ConfigError(f"--alpha {args.alpha}: allowed: 0 to 1 (the share of 255 a pixel must change by)")
        by_turn["independent" if editor else "stored"] = summarise(rows, by="turn")
        if editor is not None:
            chain: dict[str, np.ndarray] = {}
            chained = []
            for turn in sorted({pair["turn"] for pair in pairs}):  # a turn's batch starts from the last turn's edits
                chained += evaluate(
                    [pair for pair in pairs if pair["turn"] == turn],
                    clip,
                    dino,
                    editor,
                    batch_size=args.batch_size,
                    progress=not args.no_progress,
                    judge=judge,
                    ocr=ocr,
                    chain=chain,
                    alpha=args.alpha,
                )
            by_turn["chained"] = summarise(chained, by="turn")
        for setting, per_turn in by_turn.items():
            print(f"\nper turn, {SETTINGS.get(setting, 'the pairs as stored')}:")
            print(table(per_turn, names, label="turn"))
    unjudged = unjudged_reasons(rows) if judge else None
    if judge:
        reasons = ", ".join(f"{reason} {count}" for reason, count in unjudged.items())
        print(
            f"judge: {sum(unjudged.values())} of {len(rows)} pairs unscored (SC, PQ, O NaN){': ' if reasons else ''}"
            f"{reasons}"
        )
    if args.json:
        write_json(Path(args.json), summary, names, unjudged, by_turn)
    return 0
