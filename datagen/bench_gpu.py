"""`datagen bench gpu`: the `remove` generator at full size on one GPU, a naive baseline and the tuned path in the
same run, and the UNet's model FLOPs utilisation.

Every model is randomly initialised from its published architecture, so no weights are needed: Grounding DINO
Swin-T (with its BERT-base text tower), SAM ViT-H, the Stable Diffusion 1.5 inpainting UNet (9 input channels) and
VAE, CLIP ViT-L/14 (its text tower conditions the UNet, as in SD 1.5, and both towers score the result). A pair is:
ground the object, segment it from the box, inpaint at 512x512 for 25 steps with classifier-free guidance, decode,
composite, CLIP-score, encode input, output and mask as PNG on the CPU.

- naive: float32, batch 1, the classic attention processors (no SDPA), no compile, every stage after the other.
- tuned: bfloat16, SDPA, batches, channels_last for the convolutional models, fused q/k/v projections,
  torch.compile of the UNet and VAE decoder (1x1 convolutions as matmuls), and the PNG encoding of one batch in a
  thread pool while the GPU works on the next.

MFU = (UNet FLOPs per forward, counted by torch.utils.flop_counter) x (UNet forwards per second, timed alone at the
tuned batch) / the device's dense bf16 peak. Needs CUDA, torch, diffusers and transformers; not Ray, vLLM or
webdataset. `--tiny --device cpu` runs the same code on tiny configurations (the test suite does).
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

PEAK_BF16_TFLOPS = {
    "H100 SXM": 989.4,
    "H100 NVL": 835.5,
    "H100 PCIe": 756.0,
    "H100": 989.4,
    "H200": 989.4,
    "GH200": 989.4,
    "A100": 312.0,
    "L40S": 362.1,
    "A10G": 70.0,
    "L4": 121.0,
}
"""Dense (no sparsity) bf16 tensor-core peaks from the vendors' datasheets, matched against the device name."""

FULL = {
    "size": 512,
    "unet": dict(
        sample_size=64,
        in_channels=9,
        out_channels=4,
        layers_per_block=2,
        cross_attention_dim=768,
        block_out_channels=(320, 640, 1280, 1280),
        attention_head_dim=8,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    ),
    "vae": dict(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        layers_per_block=2,
        sample_size=512,
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
    ),
    "clip": dict(
        text_config=dict(
            hidden_size=768,
            intermediate_size=3072,
            num_attention_heads=12,
            num_hidden_layers=12,
            max_position_embeddings=77,
        ),
        vision_config=dict(
            hidden_size=1024,
            intermediate_size=4096,
            num_attention_heads=16,
            num_hidden_layers=24,
            image_size=224,
            patch_size=14,
        ),
        projection_dim=768,
    ),
    "sam": dict(
        vision_config=dict(
            hidden_size=1280, num_hidden_layers=32, num_attention_heads=16, global_attn_indexes=[7, 15, 23, 31]
        )
    ),
    "sam_size": 1024,
    "grounding": {},  # transformers' defaults are Grounding DINO Swin-T with BERT-base
    "text_len": 77,
}
"""The published architectures."""

TINY = {
    "size": 128,
    "unet": dict(
        sample_size=16,
        in_channels=9,
        out_channels=4,
        layers_per_block=1,
        cross_attention_dim=32,
        block_out_channels=(32, 64),
        attention_head_dim=8,
        norm_num_groups=32,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    ),
    "vae": dict(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        layers_per_block=1,
        sample_size=128,
        block_out_channels=(32, 32, 32, 32),
        norm_num_groups=32,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
    ),
    "clip": dict(
        text_config=dict(
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            max_position_embeddings=16,
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            image_size=32,
            patch_size=8,
        ),
        projection_dim=32,
    ),
    "sam": dict(
        vision_config=dict(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            mlp_dim=64,
            output_channels=32,
            image_size=64,
            patch_size=8,
            window_size=4,
            global_attn_indexes=[1],
            num_pos_feats=16,
        ),
        prompt_encoder_config=dict(hidden_size=32, image_size=64, patch_size=8, image_embedding_size=8),
        mask_decoder_config=dict(
            hidden_size=32, mlp_dim=64, num_hidden_layers=2, num_attention_heads=2, iou_head_hidden_dim=32
        ),
    ),
    "sam_size": 64,
    "grounding": dict(
        backbone_config=dict(
            model_type="swin",
            embed_dim=16,
            depths=[1, 1, 1, 1],
            num_heads=[1, 1, 1, 1],
            window_size=4,
            image_size=64,
            out_features=["stage2", "stage3", "stage4"],
        ),
        text_config=dict(
            model_type="bert",
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=37,
            max_position_embeddings=64,
        ),
        d_model=32,
        encoder_layers=1,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        num_queries=16,
        encoder_n_points=2,
        decoder_n_points=2,
        max_text_len=64,
    ),
    "text_len": 16,
}
"""The same code path at a size a CPU runs in seconds."""


class RemovePipeline:
    """The remove generator's GPU work for a batch of images: ground, segment, inpaint, decode, composite, score."""

    def __init__(self, arch: dict[str, Any], device, dtype, tuned: bool, steps: int, compile_models: bool):
        import torch
        from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
        from diffusers.models.attention_processor import AttnProcessor
        from transformers import (
            CLIPConfig,
            CLIPModel,
            GroundingDinoConfig,
            GroundingDinoForObjectDetection,
            SamConfig,
            SamModel,
        )

        self.arch, self.device, self.dtype, self.tuned, self.steps = arch, device, dtype, tuned, steps
        attention = "sdpa" if tuned else "eager"
        torch.manual_seed(0)
        with torch.device(device):  # random weights made where they run: no host copy of 2 billion parameters
            self.unet = UNet2DConditionModel(**arch["unet"])
            self.vae = AutoencoderKL(**arch["vae"])
            self.clip = CLIPModel(CLIPConfig(**arch["clip"]))
            self.sam = SamModel(SamConfig(**arch["sam"]))
            grounding = GroundingDinoConfig(**arch["grounding"])
            self.grounding = GroundingDinoForObjectDetection(grounding)
        self.clip.set_attn_implementation(attention)
        if not tuned:
            self.unet.set_attn_processor(AttnProcessor())
            self.vae.set_attn_processor(AttnProcessor())
        for model in (self.unet, self.vae, self.clip, self.sam, self.grounding):
            # .to(device) too: a legacy torch.Tensor(...) parameter (Grounding DINO's level_embed) ignores the
            # device context above and is made on the CPU
            model.to(device=device, dtype=dtype).eval().requires_grad_(False)
        if tuned:
            self.unet.to(memory_format=torch.channels_last)
            self.vae.to(memory_format=torch.channels_last)
            self.unet.fuse_qkv_projections()  # one projection matmul instead of three per self-attention
            self.vae.fuse_qkv_projections()
        self.unet_forward = self.unet
        self.vae_decode = self.vae.decode
        if compile_models:
            import torch._inductor.config as inductor

            inductor.conv_1x1_as_mm = True  # the UNet's many 1x1 convolutions as matmuls: faster kernels
            self.unet_forward = torch.compile(self.unet, fullgraph=False)
            self.vae_decode = torch.compile(self.vae.decode, fullgraph=False)
        self.scheduler = DDIMScheduler(
            num_train_timesteps=1000,
            beta_schedule="scaled_linear",
            beta_start=0.00085,
            beta_end=0.012,
            clip_sample=False,
            set_alpha_to_one=False,
        )
        self.stages: dict[str, float] | None = None  # when a dict: seconds per stage, the GPU synchronised at each
        self.text_len = arch["text_len"]
        self.vocab = self.clip.config.text_config.vocab_size
        self.bert_vocab = grounding.text_config.vocab_size

    def __call__(self, images: np.ndarray, seed: int) -> dict[str, np.ndarray]:
        """uint8 B x H x W x 3 -> {'output': uint8 images, 'mask': uint8 masks, 'clip': scores}."""
        import torch
        import torch.nn.functional as F

        gen = torch.Generator(device="cpu").manual_seed(seed)
        b, size = images.shape[0], images.shape[1]
        dev, dt = self.device, self.dtype
        pixels = torch.from_numpy(images).to(dev, non_blocking=True).permute(0, 3, 1, 2).to(dt) / 127.5 - 1
        mark = self._stage_clock()
        with torch.inference_mode():
            # ground: the object phrase as token ids (random weights: any ids exercise the same compute)
            ids = torch.randint(1000, self.bert_vocab, (b, 8), generator=gen).to(dev)
            found = self.grounding(pixel_values=pixels, input_ids=ids, attention_mask=torch.ones_like(ids))
            best = found.logits.float().amax(-1).argmax(-1)
            cx, cy, w, h = found.pred_boxes.float()[torch.arange(b, device=dev), best].unbind(-1)
            w, h = w.clamp(0.1, 0.6), h.clamp(0.1, 0.6)
            boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1).clamp(0, 1)
            mark("ground")
            # segment from the box at SAM's input size
            sam_in = F.interpolate(pixels, size=(self.arch["sam_size"],) * 2, mode="bilinear")
            masks = self.sam(
                pixel_values=sam_in, input_boxes=(boxes * self.arch["sam_size"])[:, None], multimask_output=False
            ).pred_masks[:, 0, :1]
            mask = (F.interpolate(masks.float(), size=(size, size), mode="bilinear") > 0).to(dt)
            mark("segment")
            # inpaint: SD 1.5 inpainting's 9 channels, classifier-free guidance as one batch of 2B
            tokens = torch.randint(0, self.vocab, (2 * b, self.text_len), generator=gen).to(dev)
            context = self.clip.text_model(input_ids=tokens).last_hidden_state
            masked = self.vae.encode(pixels * (1 - mask)).latent_dist.mode() * 0.18215
            small = F.interpolate(mask, size=masked.shape[-2:])
            latents = torch.randn(masked.shape, generator=gen).to(dev, dt)
            self.scheduler.set_timesteps(self.steps, device=dev)
            extra = torch.cat([small, masked], 1).repeat(2, 1, 1, 1)  # mask and masked image, for both halves
            mark("encode text and image")
            for t in self.scheduler.timesteps:
                x = torch.cat([torch.cat([latents, latents]), extra], 1)
                if self.tuned:
                    x = x.contiguous(memory_format=torch.channels_last)
                noise = self.unet_forward(x, t, encoder_hidden_states=context).sample
                uncond, cond = noise.chunk(2)
                latents = self.scheduler.step(uncond + 7.5 * (cond - uncond), t, latents).prev_sample
            mark("denoise (UNet x steps)")
            decoded = self.vae_decode(latents / 0.18215).sample.clamp(-1, 1)
            output = decoded * mask + pixels * (1 - mask)  # outside the mask the input, exactly
            mark("decode")
            # score: CLIP image-caption similarity of the output
            clip_in = F.interpolate(output, size=(self.clip.config.vision_config.image_size,) * 2, mode="bilinear")
            image_emb = self.clip.get_image_features(pixel_values=clip_in)
            text_emb = self.clip.get_text_features(input_ids=tokens[b:])
            image_emb = getattr(image_emb, "pooler_output", image_emb)
            text_emb = getattr(text_emb, "pooler_output", text_emb)
            score = F.cosine_similarity(image_emb.float(), text_emb.float())
            mark("score")
        out = ((output.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
        result = {
            "output": out.cpu().numpy(),
            "mask": (mask[:, 0] * 255).to(torch.uint8).cpu().numpy(),
            "clip": score.cpu().numpy(),
        }
        mark("to host")
        return result

    def _stage_clock(self):
        """mark(name): adds the seconds since the previous mark to self.stages[name]; nothing when not profiling."""
        if self.stages is None:
            return lambda name: None
        last = [time.perf_counter()]

        def mark(name: str) -> None:
            _sync(self.device)
            now = time.perf_counter()
            self.stages[name] = self.stages.get(name, 0.0) + now - last[0]
            last[0] = now

        _sync(self.device)
        return mark


def _encode(images: np.ndarray, result: dict[str, np.ndarray], index: int) -> int:
    from datagen.images import encode

    parts = (
        encode(images[index], "png"),
        encode(result["output"][index], "png"),
        encode(result["mask"][index], "png"),
    )
    return sum(len(p) for p in parts)


def _inputs(count: int, size: int) -> np.ndarray:
    from datagen.bench import synthetic_samples

    return np.stack([s["input"] for s in synthetic_samples(count, size)])


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def run_path(arch, device, pairs: int, batch: int, steps: int, tuned: bool, compile_models: bool) -> dict[str, Any]:
    """Pairs per second of one path, after a warm-up batch (compilation, cuDNN autotuning) that is not timed."""
    import torch

    dtype = torch.bfloat16 if tuned else torch.float32
    pipe = RemovePipeline(arch, device, dtype, tuned, steps, compile_models)
    images = _inputs(pairs, arch["size"])
    pipe(images[:batch], seed=0)
    _sync(device)
    started = time.perf_counter()
    encoded = 0
    if tuned:  # PNG encoding of batch k on CPU threads while the GPU runs batch k+1
        with ThreadPoolExecutor(max_workers=4) as pool:
            pending = []
            for start in range(0, pairs, batch):
                chunk = images[start : start + batch]
                result = pipe(chunk, seed=start)
                pending += [pool.submit(_encode, chunk, result, i) for i in range(len(chunk))]
            encoded = sum(f.result() for f in pending)
    else:
        for start in range(pairs):
            chunk = images[start : start + 1]
            result = pipe(chunk, seed=start)
            encoded += _encode(chunk, result, 0)
    _sync(device)
    seconds = time.perf_counter() - started
    figures = {
        "pairs": pairs,
        "batch": batch if tuned else 1,
        "dtype": str(dtype).replace("torch.", ""),
        "seconds": seconds,
        "pairs_s": pairs / seconds,
        "png_bytes": encoded,
    }
    # where a pair's time goes: one more batch, synchronised after every stage (so not part of the timing above)
    pipe.stages = {}
    chunk = images[:batch] if tuned else images[:1]
    started = time.perf_counter()
    result = pipe(chunk, seed=1)
    encode_start = time.perf_counter()
    for i in range(len(chunk)):
        _encode(chunk, result, i)
    pipe.stages["PNG encode (CPU, one thread)"] = time.perf_counter() - encode_start
    figures["stages_ms_per_pair"] = {k: 1000 * v / len(chunk) for k, v in pipe.stages.items()}
    figures["profiled_ms_per_pair"] = 1000 * (time.perf_counter() - started) / len(chunk)
    pipe.stages = None
    if tuned:
        figures["unet"] = unet_mfu(pipe, batch, device)
    del pipe
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return figures


def unet_mfu(pipe: RemovePipeline, batch: int, device) -> dict[str, Any]:
    """The UNet alone at the tuned batch (2B with guidance): FLOPs per forward, forwards/s, MFU."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    latent = pipe.arch["size"] // 8
    x = torch.randn(2 * batch, 9, latent, latent, device=device, dtype=pipe.dtype)
    x = x.contiguous(memory_format=torch.channels_last)
    context = torch.randn(
        2 * batch, pipe.text_len, pipe.unet.config.cross_attention_dim, device=device, dtype=pipe.dtype
    )
    t = torch.tensor(500, device=device)
    with torch.inference_mode():
        with FlopCounterMode(display=False) as counter:
            pipe.unet(x, t, encoder_hidden_states=context)
        flops = counter.get_total_flops()
        for _ in range(3):
            pipe.unet_forward(x, t, encoder_hidden_states=context)
        _sync(device)
        runs = 20 if device.type == "cuda" else 2
        started = time.perf_counter()
        for _ in range(runs):
            pipe.unet_forward(x, t, encoder_hidden_states=context)
        _sync(device)
        seconds = (time.perf_counter() - started) / runs
    achieved = flops / seconds
    peak = peak_flops(device)
    return {
        "gflops_per_forward": flops / 1e9,
        "forward_ms": seconds * 1000,
        "achieved_tflops": achieved / 1e12,
        "peak_tflops": None if peak is None else peak / 1e12,
        "mfu": None if peak is None else achieved / peak,
    }


def peak_flops(device) -> float | None:
    import torch

    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key in sorted(PEAK_BF16_TFLOPS, key=len, reverse=True):
        if key in name:
            return PEAK_BF16_TFLOPS[key] * 1e12
    return None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pairs", type=int, default=32, help="pairs timed per path (default 32)")
    parser.add_argument("--naive-pairs", type=int, help="pairs for the naive path (default: a quarter of --pairs)")
    parser.add_argument("--batch", type=int, default=8, help="the tuned path's batch (default 8)")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--no-compile", action="store_true", help="tuned path without torch.compile")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny configurations (a CPU check of the code path)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")


def run(args: argparse.Namespace) -> int:
    import torch

    from datagen.config import ConfigError

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "datagen bench gpu needs CUDA (torch.cuda.is_available() is False); on a CPU, "
            "`--tiny --device cpu --no-compile` runs the same code on tiny models"
        )
    for name in ("pairs", "batch", "steps"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    arch = TINY if args.tiny else FULL
    import diffusers
    import transformers

    diffusers.logging.set_verbosity_error()  # random weights cast to bf16 warn once per model
    transformers.logging.set_verbosity_error()
    naive_pairs = args.naive_pairs or max(1, args.pairs // 4)
    naive = run_path(arch, device, naive_pairs, 1, args.steps, tuned=False, compile_models=False)
    tuned = run_path(arch, device, args.pairs, args.batch, args.steps, tuned=True, compile_models=not args.no_compile)
    from datagen.bench import machine

    result = {
        "bench": "gpu",
        "tiny": args.tiny,
        "steps": args.steps,
        "size": arch["size"],
        "naive": naive,
        "tuned": tuned,
        "speedup": tuned["pairs_s"] / naive["pairs_s"],
        "targets": {"speedup": 10, "mfu": 0.4},
        "machine": machine(),
    }
    unet = tuned["unet"]
    where = result["machine"].get("gpu", str(device)) + (" (tiny configurations)" if args.tiny else "")
    print(f"gpu: remove generator, {arch['size']}x{arch['size']}, {args.steps} steps, {where}")
    print(f"  naive  fp32, batch 1, no SDPA, no compile, serial:          {naive['pairs_s']:.3f} pairs/s")
    print(
        f"  tuned  bf16, batch {args.batch}, SDPA, channels_last, "
        f"{'no compile' if args.no_compile else 'compiled'}, overlapped: {tuned['pairs_s']:.3f} pairs/s"
    )
    print(f"  speedup {result['speedup']:.1f}x (target >= 10x)")
    for name, path in (("naive", naive), ("tuned", tuned)):
        stages = ", ".join(f"{k} {v:.0f}" for k, v in path["stages_ms_per_pair"].items())
        print(f"  {name} ms per pair, synchronised per stage: {stages}")
    mfu = "n/a (no known peak for this device)" if unet["mfu"] is None else f"{unet['mfu']:.0%} (target >= 40%)"
    print(
        f"  UNet: {unet['gflops_per_forward']:.0f} GFLOP per forward at batch {2 * args.batch}, "
        f"{unet['forward_ms']:.1f} ms, {unet['achieved_tflops']:.1f} TFLOP/s, MFU {mfu}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0
