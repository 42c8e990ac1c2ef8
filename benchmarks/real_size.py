"""Real-size stand-ins: the checkpoints `datagen train --init stable-diffusion-v1-5/stable-diffusion-v1-5` and
`datagen eval --pipeline sd15` name, randomly initialised at their published sizes and written where the real ones
would be (a Hugging Face cache), so the real commands run at real size on a GPU machine that has no weights.

    python benchmarks/real_size.py models --cache /tmp/hf                 # SD 1.5, CLIP ViT-L/14, DINOv2-base
    HF_HUB_CACHE=/tmp/hf datagen train --init stable-diffusion-v1-5/stable-diffusion-v1-5 ...
    python benchmarks/real_size.py steady RUN_DIR --batch-size 32         # steady-state steps/s from log.jsonl
    python benchmarks/real_size.py loader SHARDS --resolution 256 --batch-size 32 --workers 8   # data path alone

`--small` writes the same layout with tiny configurations (a CPU check of this script). The tokenizer is datagen's
tiny CLIP tokenizer (the real vocabulary is a download); the text towers keep CLIP's 49408-token embedding table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from datagen.bench_gpu import FULL as BENCH
from datagen.bench_gpu import TINY as BENCH_TINY

REVISION = "0" * 40
"""The snapshot folder's name: a commit hash, as the hub cache names them."""

TEXT = dict(
    vocab_size=49408,
    hidden_size=768,
    intermediate_size=3072,
    num_attention_heads=12,
    num_hidden_layers=12,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    bos_token_id=0,  # the tiny tokenizer's start and end of text
    eos_token_id=1,
    pad_token_id=1,
)
FULL = {
    "unet": {**BENCH["unet"], "in_channels": 4},  # bench gpu's SD 1.5 UNet is the 9-channel inpainting one
    "vae": BENCH["vae"],
    "text": TEXT,
    "clip_vision": dict(
        hidden_size=1024,
        intermediate_size=4096,
        num_attention_heads=16,
        num_hidden_layers=24,
        image_size=224,
        patch_size=14,
        hidden_act="quick_gelu",
    ),  # fmt: skip
    "clip_projection": 768,
    "clip_pixels": 224,
    "dino": dict(
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        image_size=518,
        patch_size=14,
    ),  # fmt: skip
    "dino_pixels": 224,
}
SMALL = {
    "unet": {**BENCH_TINY["unet"], "in_channels": 4},
    "vae": BENCH_TINY["vae"],
    "text": {**TEXT, "hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2},
    "clip_vision": dict(
        hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2, image_size=32, patch_size=8
    ),  # fmt: skip
    "clip_projection": 16,
    "clip_pixels": 32,
    "dino": dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, image_size=32, patch_size=8
    ),  # fmt: skip
    "dino_pixels": 32,
}


def snapshot(cache: Path, repo: str) -> Path:
    """The hub cache's folder for `repo` at REVISION, with refs/main pointing at it."""
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(REVISION)
    folder = root / "snapshots" / REVISION
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_models(cache: Path, arch: dict, device: str) -> None:
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import (
        BitImageProcessorPil,
        CLIPConfig,
        CLIPImageProcessorPil,
        CLIPModel,
        CLIPProcessor,
        CLIPTextConfig,
        CLIPTextModel,
        Dinov2Config,
        Dinov2Model,
    )

    from datagen.models.tiny import clip_tokenizer

    torch.manual_seed(0)
    tokenizer = clip_tokenizer()
    with torch.device(device):  # random initialisation of a billion weights is much faster on the GPU
        unet = UNet2DConditionModel(**arch["unet"])
        vae = AutoencoderKL(**arch["vae"])
        text = CLIPTextModel(CLIPTextConfig(**arch["text"]))
        clip = CLIPModel(
            CLIPConfig(
                text_config=arch["text"], vision_config=arch["clip_vision"], projection_dim=arch["clip_projection"]
            )
        )
        dino = Dinov2Model(Dinov2Config(**arch["dino"]))
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, steps_offset=1,
        set_alpha_to_one=False,
    )  # fmt: skip
    sd = StableDiffusionPipeline(
        unet=unet.cpu(), vae=vae.cpu(), text_encoder=text.cpu(), tokenizer=tokenizer, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip
    sd.save_pretrained(snapshot(cache, "stable-diffusion-v1-5/stable-diffusion-v1-5"), safe_serialization=True)
    folder = snapshot(cache, "openai/clip-vit-large-patch14")
    clip.cpu().save_pretrained(folder, safe_serialization=True)
    side = arch["clip_pixels"]
    images = CLIPImageProcessorPil(size={"shortest_edge": side}, crop_size={"height": side, "width": side})
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)
    folder = snapshot(cache, "facebook/dinov2-base")
    dino.cpu().save_pretrained(folder, safe_serialization=True)
    side = arch["dino_pixels"]
    BitImageProcessorPil(size={"shortest_edge": side}, crop_size={"height": side, "width": side}).save_pretrained(
        folder
    )
    params = {
        "unet": unet.num_parameters(),
        "vae": sum(p.numel() for p in vae.parameters()),
        "text_encoder": text.num_parameters(),
        "clip": clip.num_parameters(),
        "dino": dino.num_parameters(),
    }
    print(json.dumps({"cache": str(cache), "parameters": params}))


def steady(run: Path, batch_size: int, skip: int) -> dict:
    """Steps/s and samples/s after the first `skip` steps (allocator and cuDNN warm-up, the loader's start), from
    the cumulative rate `datagen train` logs each step."""
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    first = rows[0]["step"] - 1  # the step the run started from
    at = {r["step"]: (r["step"] - first) * batch_size / r["samples_per_s"] for r in rows}  # seconds since start
    start, end = rows[min(max(skip - 1, 0), len(rows) - 2)]["step"], rows[-1]["step"]
    seconds = at[end] - at[start]
    return {
        "steps": end - start,
        "seconds": seconds,
        "steps_s": (end - start) / seconds,
        "samples_s": (end - start) * batch_size / seconds,
        "first_steps_s": at[start],
        "loss_first": rows[0]["loss"],
        "loss_last": rows[-1]["loss"],
    }


def loader(shards: list[str], resolution: int, batch_size: int, workers: int, steps: int, skip: int) -> dict:
    """The training data path alone (read, decode, crop, batch) as `datagen train` runs it: samples/s, no model."""
    import time

    from datagen.train import TrainConfig, batches, shard_urls

    config = TrainConfig(shards=shards, out="", resolution=resolution, batch_size=batch_size, workers=workers)
    stream = batches(config, shard_urls(shards))
    for _ in range(skip):  # worker start-up and the shuffle buffer's first fill
        next(stream)
    started = time.perf_counter()
    for _ in range(steps):
        next(stream)
    seconds = time.perf_counter() - started
    return {"resolution": resolution, "batch_size": batch_size, "workers": workers, "steps_s": steps / seconds,
            "samples_s": steps * batch_size / seconds}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    models = sub.add_parser("models", help="write the stand-in checkpoints into a hub cache folder")
    models.add_argument("--cache", type=Path, required=True)
    models.add_argument("--small", action="store_true", help="tiny configurations, same layout")
    models.add_argument("--device", default="cuda")
    rate = sub.add_parser("steady", help="steady-state training speed of a `datagen train` run folder")
    rate.add_argument("run", type=Path)
    rate.add_argument("--batch-size", type=int, required=True)
    rate.add_argument("--skip", type=int, default=6, help="steps left out at the start (default 6)")
    data = sub.add_parser("loader", help="samples/s of the training data path alone")
    data.add_argument("shards", nargs="+")
    data.add_argument("--resolution", type=int, default=256)
    data.add_argument("--batch-size", type=int, default=32)
    data.add_argument("--workers", type=int, default=8)
    data.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    if args.command == "models":
        write_models(args.cache, SMALL if args.small else FULL, args.device)
    elif args.command == "steady":
        print(json.dumps(steady(args.run, args.batch_size, args.skip)))
    else:
        print(json.dumps(loader(args.shards, args.resolution, args.batch_size, args.workers, args.steps, skip=5)))


if __name__ == "__main__":
    main()
