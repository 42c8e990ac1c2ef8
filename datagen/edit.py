"""The trained editor's inference, and `datagen edit`: load a checkpoint `datagen train` wrote (`load_editor`), edit
images with InstructPix2Pix sampling (`edit`, `edit_batch`); several --instruction turns edit the previous turn's
result, keeping only the pixels a turn changed (`keep_changed`). Training is datagen/train.py's; this module samples
(as nanoGPT's sample.py beside its train.py), and `datagen eval` edits through it."""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from datagen.classifier import TaskClassifier
from datagen.errors import ConfigError
from datagen.images import BadImage, decode_image
from datagen.progress import Progress
from datagen.train import EditModel, load_editor


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


@torch.no_grad()
def edit(
    model: EditModel,
    image: np.ndarray,
    instruction: str,
    task: str,
    steps: int = 20,
    image_guidance: float = 1.5,
    text_guidance: float = 5.0,
    seed: int = 0,
    on_step: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """InstructPix2Pix sampling with separate image and text guidance (Emu Edit: 1.5 and 5.0); `edit_batch` of one."""
    return edit_batch(model, [image], [instruction], [task], steps, image_guidance, text_guidance, [seed], on_step)[0]


@torch.no_grad()
def edit_batch(
    model: EditModel,
    images: list[np.ndarray],
    instructions: list[str],
    tasks: list[str],
    steps: int = 20,
    image_guidance: float = 1.5,
    text_guidance: float = 5.0,
    seeds: list[int] | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> list[np.ndarray]:
    """`edit` of many images, those of one size sampled together; item k's initial noise comes from seeds[k] alone
    (default 0), so its edit does not depend on the rest of the batch. on_step(done, steps) after each step."""
    for task in tasks:
        if task not in model.tasks:
            raise ConfigError(f"--task {task!r}: the checkpoint knows {', '.join(model.tasks)}")
    seeds = seeds if seeds is not None else [0] * len(images)
    if not len(images) == len(instructions) == len(tasks) == len(seeds):
        raise ValueError(
            f"edit_batch: {len(images)} images, {len(instructions)} instructions, {len(tasks)} tasks "
            f"and {len(seeds)} seeds; give one of each per item"
        )
    crops = [image[: image.shape[0] // 8 * 8, : image.shape[1] // 8 * 8] for image in images]
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for k, crop in enumerate(crops):
        by_shape.setdefault(crop.shape, []).append(k)
    edited: dict[int, np.ndarray] = {}
    for members in by_shape.values():
        pixels = torch.from_numpy(np.stack([crops[k] for k in members])).permute(0, 3, 1, 2).float() / 127.5 - 1
        task_ids = [model.tasks.index(tasks[k]) for k in members]
        sampled = _sample(
            model,
            pixels,
            [instructions[k] for k in members],
            task_ids,
            [seeds[k] for k in members],
            steps,
            image_guidance,
            text_guidance,
            on_step,
        )
        edited.update(zip(members, sampled, strict=True))
    return [edited[k] for k in range(len(images))]


def _sample(model, pixels, instructions, task_ids, seeds, steps, image_guidance, text_guidance, on_step):
    """pixels (B, 3, H, W) in [-1, 1] -> B uint8 images; the three guidance branches of all B in one UNet forward."""
    from diffusers import DDIMScheduler

    device = model.unet.device
    cond_image = model.encode_image(pixels.to(device), sample=False)
    batch = len(cond_image)
    text, null = model.encode_text(instructions), model.encode_text([""]).expand(batch, -1, -1)
    task_id = torch.tensor(task_ids * 3, device=device)
    sampler = DDIMScheduler.from_config(model.scheduler.config)
    sampler.set_timesteps(steps, device=device)
    # one generator per item: its noise is what a batch of one would draw
    noise = [torch.randn(cond_image[:1].shape, generator=torch.Generator().manual_seed(seed)) for seed in seeds]
    latents = torch.cat(noise).to(device) * sampler.init_noise_sigma
    texts = torch.cat([text, null, null])
    images = torch.cat([cond_image, cond_image, torch.zeros_like(cond_image)])
    # on a GPU the UNet runs in bf16 as in training; the latents and the sampler's arithmetic stay float32
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    for k, t in enumerate(sampler.timesteps, 1):
        noisy = sampler.scale_model_input(torch.cat([latents] * 3), t)
        with autocast:
            predicted = model.predict(noisy, images, t, texts, task_id).float()
        full, image_only, none = predicted.chunk(3)
        guided = none + image_guidance * (image_only - none) + text_guidance * (full - image_only)
        latents = sampler.step(guided, t, latents).prev_sample
        if on_step is not None:
            on_step(k, len(sampler.timesteps))
    decoded = model.vae.decode(latents / model.vae.config.scaling_factor).sample
    pixels_out = ((decoded.permute(0, 2, 3, 1).float().cpu().numpy().clip(-1, 1) + 1) * 127.5).round()
    return list(pixels_out.astype(np.uint8))


def keep_changed(previous: np.ndarray, new: np.ndarray, alpha: float = 0.03, blur: int = 5) -> np.ndarray:
    """Emu Edit's multi-turn rule: a pixel of the new turn is kept only where the low-pass filtered RGB L1
    difference from the previous turn is at least alpha (in [0, 1]); elsewhere the previous pixel stays, bit-exact."""
    import cv2

    diff = np.abs(previous.astype(np.float32) - new.astype(np.float32)).mean(axis=2) / 255.0
    smooth = cv2.GaussianBlur(diff, (blur, blur), 0) if blur > 1 else diff
    keep = smooth >= alpha
    out = previous.copy()
    out[keep] = new[keep]
    return out


def to_png(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()
