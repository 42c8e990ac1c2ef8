"""A compact Emu Edit trainer: an InstructPix2Pix-style latent diffusion editor with one learned embedding per task.

The UNet sees the noisy output latent concatenated with the input image's latent (8 channels; from a Stable
Diffusion checkpoint the 4 extra input channels start at zero, so training starts from the text-to-image model).
The frozen CLIP text encoder reads the instruction. Each task has a learned vector, added to the timestep embedding
(the UNet's class embedding) and appended to the text tokens for cross-attention. Text, image and both are dropped
5% of the time each, so inference can guide by image and by text separately.

    datagen train --shards out/remove --out runs/edit --init tiny:t2i --resolution 64 --steps 300      # CPU
    datagen train --shards out/remove --out runs/edit --init stable-diffusion-v1-5/stable-diffusion-v1-5 \\
        --resolution 256 --batch-size 32 --steps 20000                                                 # one GPU

    torchrun --nproc_per_node 8 -m datagen.cli train --shards out/remove --out runs/edit ...     # DDP, 8 GPUs

Checkpoints are safetensors plus a JSON state (step, optimizer layout): `--resume` continues exactly; the batch of a
step, its noise and its timesteps depend only on (seed, step), so a resumed run repeats an uninterrupted one.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import math
import os
import time
import warnings
import zlib
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import numpy as np
import torch
import torch.nn.functional as F

from datagen.config import known
from datagen.errors import ConfigError
from datagen.progress import Progress
from datagen.shards.reader import decode_sample
from datagen.shards.urls import tar_urls

# -------------------------------------------------------------------------------------------- defaults


@dataclass
class TrainConfig:
    shards: list[str]
    """Tar shards: local paths, folders of them, or fsspec/`pipe:` URLs WebDataset opens."""
    out: str
    """Run directory: checkpoints/, log.jsonl, tensorboard/."""
    init: str = "tiny:t2i"
    """A diffusers text-to-image checkpoint (model id, folder or tiny:t2i) the editor starts from."""
    resolution: int = 256
    """Training side: InstructPix2Pix trained at 256 and edits fine at 512. A non-square sample trains at its own
    aspect ratio with about resolution² pixels (`train_shape`), in batches of one shape."""
    bucket_multiple: int = 8
    """Sides of a non-square training shape are multiples of this: 8 keeps whole latents under Stable Diffusion's
    8x VAE (its UNet takes any latent size); 64 also keeps every UNet downsampling even."""
    batch_size: int = 8
    accumulation: int = 1
    """Gradient accumulation: the effective batch is batch_size x accumulation x world size."""
    lr: float = 1e-4
    """InstructPix2Pix's learning rate, with a short warm-up."""
    warmup: int = 100
    steps: int = 1000
    drop: float = 0.05
    """Probability of dropping the text, the image, and both (each): the separate guidance scales need all three."""
    ema: float = 0.0
    """EMA decay of the trained weights (0 = off; 0.9999 for long runs)."""
    checkpoint_every: int = 500
    seed: int = 0
    shuffle: int = 1000
    """Shuffle buffer, in samples."""
    workers: int = 0
    """DataLoader worker processes decoding samples, each with its own resampled stream (0: the training process)."""
    min_score: dict[str, float] = field(default_factory=dict)
    """Keep only samples whose stored score is at least this (e.g. {"clip_dir": 0.2})."""
    task_weights: dict[str, float] = field(default_factory=dict)
    """Per-task sampling weights (missing tasks weigh 1)."""
    tasks: list[str] = field(default_factory=lambda: known("tasks"))
    """Task vocabulary: the embedding table has one row per name, in this order."""
    invert_task: str | None = None
    """Task inversion: learn only a new vector for this task (samples of other tasks are skipped)."""
    invert_from: str | None = None
    """The trained checkpoint whose weights task inversion freezes."""


# `datagen train`'s flags are TrainConfig's fields, so each default above is written once.
NOT_FLAGS = ("warmup", "drop", "shuffle", "task_weights", "tasks")
"""Fields the command line leaves at their defaults: the InstructPix2Pix recipe and the task vocabulary (set them
from Python)."""
FLAG_NAMES = {"invert_from": "--from"}
"""Flags not spelled after their field: `--invert-task NAME --from CHECKPOINT` reads as a sentence."""
PAIR_FLAGS = {"min_score": ("SCORE=MIN", "clip_dir=0.2")}
"""Dict fields, given as repeated NAME=VALUE flags: the metavar and an example."""


def field_docs(cls: type) -> dict[str, str]:
    """A dataclass's field docstrings (the string under each field), which Python does not keep at run time."""
    body = ast.parse(inspect.getsource(cls)).body[0].body
    return {
        node.target.id: after.value.value
        for node, after in zip(body, body[1:], strict=False)
        if isinstance(node, ast.AnnAssign) and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
    }


def _flag(name: str) -> str:
    return FLAG_NAMES.get(name, "--" + name.replace("_", "-"))


def add_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field outside NOT_FLAGS: its type, default and help are the field's."""
    docs, types = field_docs(TrainConfig), get_type_hints(TrainConfig)
    for spec in fields(TrainConfig):
        if spec.name in NOT_FLAGS:
            continue
        kind, text = types[spec.name], docs.get(spec.name, "").replace("%", "%%")
        required = spec.default is MISSING and spec.default_factory is MISSING
        if get_origin(kind) is list:
            parser.add_argument(
                _flag(spec.name), dest=spec.name, type=get_args(kind)[0], nargs="+", required=required, help=text
            )
        elif get_origin(kind) is dict:
            metavar, example = PAIR_FLAGS[spec.name]
            usage = f"On the command line: {_flag(spec.name)} {example}, repeatable."
            parser.add_argument(
                _flag(spec.name), dest=spec.name, action="append", default=[], metavar=metavar, help=f"{text} {usage}"
            )
        else:
            scalar = next(t for t in (get_args(kind) or (kind,)) if t is not type(None))  # str | None: str
            default = None if required else spec.default
            shown = f"(default: {default})" if default is not None else ""
            parser.add_argument(
                _flag(spec.name),
                dest=spec.name,
                type=scalar,
                default=default,
                required=required,
                help=" ".join(x for x in (text, shown) if x),
            )


def config_from_flags(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of parsed `add_flags` flags; NAME=VALUE pairs become dicts."""
    types, values = get_type_hints(TrainConfig), {}
    for spec in fields(TrainConfig):
        if spec.name in NOT_FLAGS:
            continue
        value = getattr(args, spec.name)
        if get_origin(types[spec.name]) is dict:
            metavar, example = PAIR_FLAGS[spec.name]
            value_type, pairs = get_args(types[spec.name])[1], {}
            for item in value:
                key, _, number = item.partition("=")
                try:
                    pairs[key] = value_type(number)
                except ValueError:
                    raise ConfigError(f"{_flag(spec.name)} {item!r}: expected {metavar}, e.g. {example}") from None
            value = pairs
        values[spec.name] = value
    return TrainConfig(**values)


def flags(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Train an InstructPix2Pix-style editor with task embeddings on shards (datagen/train.py); resumes from OUT's "
        "last checkpoint."
    )
    from datagen.flags import progress_flag

    add_flags(parser)
    progress_flag(parser)


def run(args: argparse.Namespace) -> int:
    result = train(config_from_flags(args), progress=not args.no_progress)
    print(f"step {result['step']}: loss {result['loss']:.4f}; checkpoint {result['checkpoint']}")
    return 0


# ---------------------------------------------------------------------------------------------- model


class EditModel(torch.nn.Module):
    """UNet (8 input channels, one class embedding per task) + task tokens; VAE and text encoder frozen beside."""

    def __init__(self, unet, vae, text_encoder, tokenizer, scheduler, tasks: list[str]):
        super().__init__()
        self.unet, self.vae, self.text_encoder = unet, vae, text_encoder
        self.tokenizer, self.scheduler, self.tasks = tokenizer, scheduler, list(tasks)
        self.task_tokens = torch.nn.Embedding(len(tasks), text_encoder.config.hidden_size)
        torch.nn.init.normal_(self.task_tokens.weight, std=0.02)
        self.vae.requires_grad_(False)
        self.text_encoder.requires_grad_(False)

    @classmethod
    def from_checkpoint(cls, init: str, tasks: list[str]) -> EditModel:
        """Start from a text-to-image checkpoint: its UNet widened to 8 input channels (zeros) and task embeddings."""
        from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
        from transformers import AutoTokenizer, CLIPTextModel

        from datagen.models.weights import locate

        path = locate(init)
        base = UNet2DConditionModel.from_pretrained(path, subfolder="unet", use_safetensors=True)
        config = {**base.config, "in_channels": 8, "num_class_embeds": len(tasks)}
        unet = UNet2DConditionModel.from_config(config)
        state = base.state_dict()
        weight = state["conv_in.weight"]
        state["conv_in.weight"] = torch.cat([weight, torch.zeros_like(weight)], dim=1)
        missing, unexpected = unet.load_state_dict(state, strict=False)
        if unexpected or any(not k.startswith("class_embedding") for k in missing):
            raise ConfigError(f"{init}: its UNet does not fit the editor ({missing[:3]} {unexpected[:3]})")
        torch.nn.init.zeros_(unet.class_embedding.weight)  # tasks start as "no task"
        vae = AutoencoderKL.from_pretrained(path, subfolder="vae", use_safetensors=True)
        text_encoder = CLIPTextModel.from_pretrained(path / "text_encoder", use_safetensors=True)
        tokenizer = AutoTokenizer.from_pretrained(path / "tokenizer")
        scheduler = DDPMScheduler.from_pretrained(path, subfolder="scheduler")
        return cls(unet, vae, text_encoder, tokenizer, scheduler, tasks)

    def add_task(self, name: str) -> None:
        """One more row in both task tables, started at the mean of the others."""
        for module in (self.unet.class_embedding, self.task_tokens):
            weight = module.weight.data
            module.weight = torch.nn.Parameter(torch.cat([weight, weight.mean(dim=0, keepdim=True)]))
            module.num_embeddings += 1
        self.tasks.append(name)

    def freeze_all_but_last_task(self) -> None:
        """Task inversion: every weight frozen except the newest task's two vectors (other rows get no gradient)."""
        self.requires_grad_(False)
        for module in (self.unet.class_embedding, self.task_tokens):
            module.weight.requires_grad_(True)
            mask = torch.zeros_like(module.weight)
            mask[-1] = 1.0
            module.weight.register_hook(lambda grad, mask=mask: grad * mask)

    def trainable(self) -> dict[str, torch.nn.Parameter]:
        return {n: p for n, p in self.named_parameters() if p.requires_grad}

    def encode_text(self, instructions: list[str]) -> torch.Tensor:
        ids = self.tokenizer(
            instructions,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(self.text_encoder.device)
        with torch.no_grad():
            return self.text_encoder(ids)[0]

    def encode_image(self, images: torch.Tensor, sample: bool, generator=None) -> torch.Tensor:
        """images in [-1, 1], (B, 3, H, W) -> scaled latents."""
        with torch.no_grad():
            dist = self.vae.encode(images).latent_dist
            latents = dist.sample(generator) if sample else dist.mode()
        return latents * self.vae.config.scaling_factor

    def forward(self, noisy, image_latents, t, text, task_ids) -> torch.Tensor:
        return self.predict(noisy, image_latents, t, text, task_ids)

    def predict(self, noisy, image_latents, t, text, task_ids) -> torch.Tensor:
        tokens = torch.cat([text, self.task_tokens(task_ids)[:, None]], dim=1)
        return self.unet(
            torch.cat([noisy, image_latents], 1), t, encoder_hidden_states=tokens, class_labels=task_ids
        ).sample


def drop_masks(batch: int, p: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(drop text, drop image): text only with probability p, image only with p, both with p."""
    r = torch.rand(batch, generator=generator)
    text = (r < p) | ((r >= 2 * p) & (r < 3 * p))
    image = (r >= p) & (r < 3 * p)
    return text, image


def loss_on(model: EditModel, batch: dict, step_seed: int, p_drop: float, net=None) -> torch.Tensor:
    """net: the model wrapped for data parallelism (its forward is `predict`), so gradients are averaged."""
    generator = torch.Generator().manual_seed(step_seed)
    device = model.unet.device
    target = model.encode_image(batch["output"].to(device), sample=True, generator=generator)
    image = model.encode_image(batch["input"].to(device), sample=False)
    text = model.encode_text(batch["instruction"])
    drop_text, drop_image = drop_masks(len(target), p_drop, generator)
    text = torch.where(drop_text[:, None, None].to(device), model.encode_text([""]).expand_as(text), text)
    image = torch.where(drop_image[:, None, None, None].to(device), torch.zeros_like(image), image)
    noise = torch.randn(target.shape, generator=generator).to(device)
    steps = model.scheduler.config.num_train_timesteps
    t = torch.randint(0, steps, (len(target),), generator=generator).to(device)
    noisy = model.scheduler.add_noise(target, noise, t)
    goal = (
        model.scheduler.get_velocity(target, noise, t)
        if model.scheduler.config.prediction_type == "v_prediction"
        else noise
    )
    pred = (net or model)(noisy, image, t, text, batch["task"].to(device))
    return F.mse_loss(pred.float(), goal.float())


# ----------------------------------------------------------------------------------------------- data


def read_samples(config: TrainConfig, urls: list[str]):
    """Decoded training samples in a fixed order for a seed (so a resumed run sees the same batches); corrupt ones
    are skipped and counted, and samples of tasks the model was not given are counted apart, as filtered."""
    import webdataset as wds

    stats = {"skipped": 0, "other_task": 0}
    index = {name: n for n, name in enumerate(config.tasks)}

    def unreadable(exn: Exception) -> bool:
        """A shard that cannot be read is skipped with a warning; if none can be, say so rather than spin."""
        stats["unreadable"] = stats.get("unreadable", 0) + 1
        if stats["unreadable"] >= 50 and stats.get("read", 0) == 0:
            raise ConfigError(f"--shards: no shard could be read ({stats['unreadable']} attempts; last: {exn!r})")
        warnings.warn(f"skipped an unreadable shard: {exn!r}", stacklevel=2)
        return True

    # Resampled shards with a deterministic seed per (rank, worker) — WebDataset(resampled=True) would mix the pid
    # and the clock into it — then a seeded shuffle buffer: the same run sees the same samples in the same order.
    dataset = wds.DataPipeline(
        wds.ResampledShards(urls, seed=config.seed, deterministic=True),
        wds.tarfile_to_samples(handler=unreadable),
        lambda source: shuffled(source, config.shuffle, config.seed),
        # a plain stage, not wds.map, which drops the None of an unusable sample: the loop below counts them
        lambda source: (training_sample(raw, config, index, stats) for raw in source),
    )
    if config.workers:
        dataset = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=config.workers, collate_fn=_keep)
    rng = np.random.default_rng(config.seed)
    unusable = 0
    for sample in dataset:
        if sample is None:  # filtered out or corrupt (counted in stats)
            unusable += 1
            if unusable > 10_000:  # resampled shards never end: say so rather than spin
                raise ConfigError(
                    f"--shards: 10000 samples in a row unusable ({stats['skipped']} corrupt, {stats['other_task']} of "
                    f"other tasks; tasks {', '.join(config.tasks)}; min scores {config.min_score or 'none'}; "
                    f"inverting {config.invert_task or 'nothing'})"
                )
            continue
        unusable = 0
        if sample["weight"] < 1.0 and rng.random() >= sample["weight"]:
            continue
        yield sample


def training_sample(raw: dict, config: TrainConfig, index: dict[str, int], stats: dict[str, int]) -> dict | None:
    """A tar sample decoded for training, or None (counted in `stats`, with a warning now and then) when it is
    corrupt, of a task the model was not given (not in `index`, its row in the task tables), or below a
    `min_score`."""
    from datagen.images import BadImage, decode_member

    stats["read"] = stats.get("read", 0) + 1
    try:
        sample = decode_sample(raw)
        meta = sample.meta
        if config.invert_task and meta["task"] != config.invert_task:
            return None
        if meta["task"] not in index:  # a well-formed sample of another task: filtered, not corrupt
            stats["other_task"] += 1
            if stats["other_task"] in (1, 10, 100) or stats["other_task"] % 1000 == 0:
                warnings.warn(
                    f"filtered {stats['other_task']} training sample(s) of tasks the model was not given, the "
                    f"last of task {meta['task']!r} (the model's tasks: {', '.join(config.tasks)})",
                    stacklevel=2,
                )
            return None
        scores = meta.get("scores", {})
        if any(scores.get(k, -math.inf) < v for k, v in config.min_score.items()):
            return None
        return {
            "key": sample.key,
            "input": decode_member(sample.images["input"][1]),
            "output": decode_member(sample.images["output"][1]),
            "task": index[meta["task"]],
            "instruction": meta["instruction"],
            "weight": config.task_weights.get(meta["task"], 1.0),
        }
    except (ConfigError, KeyError, TypeError, ValueError, BadImage) as e:
        stats["skipped"] += 1
        if stats["skipped"] in (1, 10, 100) or stats["skipped"] % 1000 == 0:
            warnings.warn(
                f"skipped {stats['skipped']} corrupt training sample(s), the last {raw.get('__key__')!r}: {e}",
                stacklevel=2,
            )
        return None


def shuffled(source, size: int, seed: int):
    """A shuffle buffer of `size` samples, seeded per rank and DataLoader worker."""
    import random

    from webdataset.utils import pytorch_worker_seed

    rng = random.Random(seed * 1_000_003 + pytorch_worker_seed())
    buffer = []
    for sample in source:
        buffer.append(sample)
        if len(buffer) >= size:
            k = rng.randrange(len(buffer))
            buffer[k], buffer[-1] = buffer[-1], buffer[k]
            yield buffer.pop()
    rng.shuffle(buffer)
    yield from buffer


def _keep(sample):
    """DataLoader's per-sample conversion, left out: samples stay numpy."""
    return sample


def train_shape(width: int, height: int, resolution: int, multiple: int) -> tuple[int, int]:
    """The (width, height) a sample of this size trains at: a square one at resolution x resolution, any other at
    its own aspect ratio with about resolution² pixels, each side a multiple of `multiple` (so a pipeline's
    aspect-ratio buckets stay apart, and nothing is stretched)."""
    if width == height:
        return resolution, resolution
    scale = resolution / math.sqrt(width * height)
    return tuple(max(multiple, round(side * scale / multiple) * multiple) for side in (width, height))


def augment(sample: dict, shape: tuple[int, int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random crop and flip on input and output, resized to `shape` (width, height); the crop has the
    shape's aspect ratio, so nothing is stretched; tensors in [-1, 1]."""
    import cv2

    rng = np.random.default_rng(seed)
    height, width = sample["input"].shape[:2]
    target_w, target_h = shape
    share = rng.uniform(0.85, 1.0)
    crop_w = int(min(width, height * target_w / target_h) * share)  # the largest crop of that aspect, shrunk
    crop_h = int(min(height, width * target_h / target_w) * share)
    y, x = int(rng.integers(0, height - crop_h + 1)), int(rng.integers(0, width - crop_w + 1))
    flip = bool(rng.random() < 0.5)
    out = []
    for image in (sample["input"], sample["output"]):
        crop = cv2.resize(image[y : y + crop_h, x : x + crop_w], shape, interpolation=cv2.INTER_AREA)
        crop = crop[:, ::-1] if flip else crop
        out.append(torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1).float() / 127.5 - 1.0)
    return out[0], out[1]


def batches(config: TrainConfig, urls: list[str], start: int = 0):
    """(step, batch) from `start`; a resumed run skips the batches the interrupted one consumed. Each rank of a
    data-parallel run (and each worker) reads its own resampled stream. Samples wait by training shape
    (`train_shape`): a batch is the first `batch_size x accumulation` samples of one shape, so mixed aspect ratios
    train unstretched and, the stream being fixed, the batches of a seed are too."""
    stream = read_samples(config, urls)
    size = config.batch_size * config.accumulation
    waiting: dict[tuple[int, int], list[dict]] = {}
    step = 0
    while True:
        sample = next(stream)
        height, width = sample["input"].shape[:2]
        shape = train_shape(width, height, config.resolution, config.bucket_multiple)
        waiting.setdefault(shape, []).append(sample)
        if len(waiting[shape]) < size:
            continue
        chunk = waiting.pop(shape)
        if step >= start:
            pairs = [augment(s, shape, zlib.crc32(f"{config.seed}/{step}/{s['key']}".encode())) for s in chunk]
            yield (
                step,
                {
                    "input": torch.stack([p[0] for p in pairs]),
                    "output": torch.stack([p[1] for p in pairs]),
                    "task": torch.tensor([s["task"] for s in chunk]),
                    "instruction": [s["instruction"] for s in chunk],
                },
            )
        step += 1


# ------------------------------------------------------------------------------------------ checkpoints


def save_checkpoint(out: Path, step: int, model: EditModel, optimizer, config: TrainConfig, ema=None) -> Path:
    """checkpoints/step-N/: trained weights and optimizer tensors as safetensors, the rest as JSON; atomic."""
    from safetensors.torch import save_file

    final = out / "checkpoints" / f"step-{step:08d}"
    tmp = final.with_name(f".{final.name}.tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    save_file({n: p.detach().cpu().contiguous() for n, p in model.trainable().items()}, tmp / "model.safetensors")
    if ema is not None:
        save_file({n: t.cpu().contiguous() for n, t in ema.items()}, tmp / "ema.safetensors")
    state = optimizer.state_dict()
    tensors = {f"{i}.{k}": v.cpu().contiguous() for i, s in state["state"].items() for k, v in s.items()}
    save_file(tensors, tmp / "optimizer.safetensors")
    meta = {
        "step": step,
        "param_groups": state["param_groups"],
        "config": asdict(config),
        "init_config": dict(model.unet.config),
        "tasks": model.tasks,
    }
    (tmp / "state.json").write_text(json.dumps(meta, indent=1, default=str))
    os.replace(tmp, final)
    return final


def latest_checkpoint(out: Path) -> Path | None:
    found = sorted((out / "checkpoints").glob("step-*")) if (out / "checkpoints").is_dir() else []
    return found[-1] if found else None


def load_weights(model: EditModel, checkpoint: Path, ema: bool = False) -> dict:
    from safetensors.torch import load_file

    name = "ema.safetensors" if ema and (checkpoint / "ema.safetensors").exists() else "model.safetensors"
    weights = load_file(checkpoint / name)
    params = model.trainable()
    with torch.no_grad():
        for n, tensor in weights.items():
            params[n].copy_(tensor)
    return json.loads((checkpoint / "state.json").read_text())


def load_optimizer(optimizer, checkpoint: Path, meta: dict) -> None:
    from safetensors.torch import load_file

    tensors = load_file(checkpoint / "optimizer.safetensors")
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


# ------------------------------------------------------------------------------------------------ loop


def train(config: TrainConfig, resume: bool = True, progress: bool = True) -> dict[str, Any]:
    """Train; returns {"step", "loss" (last), "losses", "checkpoint"}."""
    torch.manual_seed(config.seed)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    urls = tar_urls(config.shards)
    model = model_to_train(config).to(torch.device(f"cuda:{local_rank}" if cuda else "cpu"))
    net = data_parallel(model, local_rank, cuda) if world > 1 else None
    optimizer = optimizer_for(model, config)
    checkpoint, start = resume_point(out, model, optimizer) if resume else (None, 0)
    scheduler = warmup_schedule(optimizer, config.warmup, start)
    ema = {n: p.detach().clone() for n, p in model.trainable().items()} if config.ema else None
    lead = rank == 0  # logs and checkpoints
    journal = TrainLog(out, config, start, world, enabled=lead, progress=progress)
    losses = []
    step = start
    for step, batch in batches(config, urls, start):
        if step >= config.steps:
            break
        # a micro-batch's dropout, noise and timesteps depend only on (seed, step, part, rank)
        seeds = [(config.seed * 1_000_003 + step * 131 + part) * world + rank for part in range(config.accumulation)]
        loss = train_step(model, net, optimizer, batch, config, seeds)
        scheduler.step()
        if ema is not None:
            update_ema(ema, model, config.ema)
        losses.append(loss)
        journal.write(step + 1, loss, scheduler.get_last_lr()[0])
        if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps:
            if lead:
                checkpoint = save_checkpoint(out, step + 1, model, optimizer, config, ema)
            if world > 1:
                torch.distributed.barrier()
    journal.close()
    if world > 1:
        torch.distributed.destroy_process_group()
    return {
        "step": min(step + 1, config.steps),
        "loss": losses[-1] if losses else None,
        "losses": losses,
        "checkpoint": str(checkpoint) if checkpoint else None,
    }


def model_to_train(config: TrainConfig) -> EditModel:
    """The editor a text-to-image checkpoint starts; for task inversion, the trained editor of `--from` with one
    new task, whose two vectors alone train (config.tasks becomes its task list)."""
    if not config.invert_task:
        return EditModel.from_checkpoint(config.init, config.tasks)
    if not config.invert_from:
        raise ConfigError("--invert-task needs --from CHECKPOINT: the trained editor whose weights stay frozen")
    model = load_editor(config.invert_from).train()
    if config.invert_task in model.tasks:
        raise ConfigError(f"--invert-task {config.invert_task!r}: the checkpoint already has that task")
    model.add_task(config.invert_task)
    model.freeze_all_but_last_task()
    config.tasks = list(model.tasks)
    return model


def data_parallel(model: EditModel, local_rank: int, cuda: bool) -> torch.nn.Module:
    """The model wrapped for DDP under torchrun, so gradients are averaged across ranks. The process group starts
    here, after the models load: tiny models are built by whichever rank gets there first, and transformers writes
    weights only on rank 0 once a process group exists."""
    from torch.nn.parallel import DistributedDataParallel

    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if cuda else "gloo")
    return DistributedDataParallel(model, device_ids=[local_rank] if cuda else None)


def optimizer_for(model: EditModel, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW on the trainable weights. No weight decay under task inversion: the task tables' other rows are frozen
    by a gradient mask, which decoupled decay would get around."""
    params = list(model.trainable().values())
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0 if config.invert_task else 1e-2)


def resume_point(out: Path, model: EditModel, optimizer: torch.optim.Optimizer) -> tuple[Path | None, int]:
    """The run's latest checkpoint and its step, its weights and optimizer state loaded; (None, 0) when it has
    none."""
    checkpoint = latest_checkpoint(out)
    if checkpoint is None:
        return None, 0
    meta = load_weights(model, checkpoint)
    load_optimizer(optimizer, checkpoint, meta)  # its param groups hold the schedule's initial_lr
    return checkpoint, meta["step"]


def warmup_schedule(optimizer: torch.optim.Optimizer, warmup: int, start: int):
    """A linear warm-up over `warmup` steps, then the constant learning rate, standing at step `start`."""
    # Built after the optimizer's state is restored and told where the run stands: its constructor sets the lr of
    # step `start`, so the scheduler never steps before the optimizer does (PyTorch warns, and skips a value).
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / max(1, warmup)), last_epoch=start - 1
    )


def train_step(
    model: EditModel, net, optimizer: torch.optim.Optimizer, batch: dict, config: TrainConfig, seeds: list[int]
) -> float:
    """One optimizer step on a batch of `batch_size x accumulation` samples, in micro-batches of batch_size (one
    seed each), the gradient norm clipped at 1; returns the batch's mean loss. net: as for `loss_on`."""
    device = model.unet.device
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    )
    optimizer.zero_grad(set_to_none=True)
    total = 0.0
    for part, seed in enumerate(seeds):
        sl = slice(part * config.batch_size, (part + 1) * config.batch_size)
        micro = {k: v[sl] for k, v in batch.items()}
        with autocast:
            loss = loss_on(model, micro, seed, config.drop, net)
        (loss / config.accumulation).backward()
        total += float(loss.detach()) / config.accumulation
    torch.nn.utils.clip_grad_norm_(list(model.trainable().values()), 1.0)
    optimizer.step()
    return total


@torch.no_grad()
def update_ema(ema: dict[str, torch.Tensor], model: EditModel, decay: float) -> None:
    for n, p in model.trainable().items():
        ema[n].mul_(decay).add_(p.detach(), alpha=1 - decay)


class TrainLog:
    """What a run reports each step, from the lead rank only (`enabled`): a line of log.jsonl, TensorBoard scalars
    and the progress bar. samples_per_s counts every rank's samples since the run (or its resumption) started."""

    def __init__(self, out: Path, config: TrainConfig, start: int, world: int, enabled: bool, progress: bool):
        self.start, self.enabled = start, enabled
        self.samples_per_step = config.batch_size * config.accumulation * world
        self.bar = Progress(config.steps, "train", unit="step", enabled=progress and enabled, initial=start)
        self.started = time.perf_counter()
        self.file = (out / "log.jsonl").open("a") if enabled else None
        self.board = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.board = SummaryWriter(str(out / "tensorboard"))

    def write(self, step: int, loss: float, lr: float) -> None:
        """Step `step` (counted from 1) is done."""
        rate = (step - self.start) * self.samples_per_step / max(time.perf_counter() - self.started, 1e-9)
        if self.enabled:
            self.file.write(json.dumps({"step": step, "loss": loss, "lr": lr, "samples_per_s": rate}) + "\n")
            for name, value in (("loss", loss), ("lr", lr), ("samples_per_s", rate)):
                self.board.add_scalar(f"train/{name}", value, step)
        self.bar.update(1, loss=round(loss, 4), samples_per_s=round(rate, 1))

    def close(self) -> None:
        self.bar.close()
        if self.enabled:
            self.file.close()
            self.board.close()


def load_editor(checkpoint: str, device: str | None = None) -> EditModel:
    """An EditModel with a checkpoint's weights (its run's `init` and task list), on `device` (default: the GPU
    when there is one)."""
    path = Path(checkpoint)
    if path.is_dir() and not (path / "state.json").exists():
        path = latest_checkpoint(path) or path
    if not (path / "state.json").exists():
        raise ConfigError(f"--checkpoint {checkpoint}: no state.json (a folder written by `datagen train`)")
    meta = json.loads((path / "state.json").read_text())
    parent = meta["config"].get("invert_from")
    if parent:  # task inversion: the parent's weights, then this checkpoint's task tables
        model = load_editor(parent)
        model.add_task(meta["config"]["invert_task"])
        model.freeze_all_but_last_task()
    else:
        model = EditModel.from_checkpoint(meta["config"]["init"], meta["tasks"])
    load_weights(model, path, ema=True)
    return model.to(device or ("cuda" if torch.cuda.is_available() else "cpu")).eval()
