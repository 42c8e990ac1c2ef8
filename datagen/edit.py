"""`datagen edit`: edit an image with a trained checkpoint; several --instruction turns edit the previous turn's
result, keeping only the pixels a turn changed (datagen/train.py: edit, keep_changed)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from datagen.classifier import TaskClassifier
from datagen.images import BadImage, decode_image
from datagen.progress import Progress
from datagen.train import edit, keep_changed, load_editor, to_png


def flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="a training run folder or one of its checkpoints")
    parser.add_argument("--image", required=True)
    parser.add_argument("--instruction", action="append", required=True, help="repeat for multi-turn editing")
    parser.add_argument("--task", help="task of the instruction (default: --classifier's prediction)")
    parser.add_argument("--classifier", help="task classifier folder (datagen classify) used when --task is not given")
    parser.add_argument("--out", required=True, help="PNG to write (turn k also as OUT-k.png when several)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--image-guidance", type=float, default=1.5)
    parser.add_argument("--text-guidance", type=float, default=5.0)
    parser.add_argument(
        "--alpha", type=float, default=0.03, help="multi-turn: keep a new pixel only if it changed this much"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (or JSON lines) over the steps")


def run(args: argparse.Namespace) -> int:
    model = load_editor(args.checkpoint)
    try:
        image = decode_image(Path(args.image).read_bytes(), 50_000_000)
    except (OSError, BadImage) as e:
        print(f"datagen: --image {args.image}: {e}", file=sys.stderr)
        return 2
    task = args.task
    if task is None and args.classifier:
        task = TaskClassifier.load(args.classifier).predict([args.instruction[0]])[0]
    task = task or model.tasks[0]
    current = image
    turns = len(args.instruction)
    with Progress(turns * args.steps, "edit", unit="step", enabled=not args.no_progress) as bar:
        for turn, instruction in enumerate(args.instruction, 1):  # each turn edits the previous one's result
            bar.update(0, turn=f"{turn}/{turns}")
            new = edit(
                model,
                current,
                instruction,
                task,
                args.steps,
                args.image_guidance,
                args.text_guidance,
                args.seed,
                on_step=lambda done, steps: bar.update(1),
            )
            current = keep_changed(current[: new.shape[0], : new.shape[1]], new, args.alpha) if turn > 1 else new
            if turns > 1:
                Path(f"{Path(args.out).with_suffix('')}-{turn}.png").write_bytes(to_png(current))
    Path(args.out).write_bytes(to_png(current))
    print(f"wrote {args.out} ({len(args.instruction)} turn(s), task {task})")
    return 0
