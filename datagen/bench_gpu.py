"""`datagen bench gpu`: the product's render of `remove` on pipelines/sd15.yaml (512x512, its own settings) on one
GPU, against the same render forced to the naive settings in the same run; and the UNet's model FLOPs utilisation.

    datagen bench gpu --json docs/bench/gpu-product.json          # full size, one H100/H200, a few minutes
    datagen bench gpu --tiny --device cpu --no-compile --pairs 2 --naive-pairs 2 --batch 2 --steps 1   # CPU check

What is timed is `datagen generate`'s own render phase (datagen.runner.execute_all, inline): procedural scenes,
instructions from the template writer (the write phase runs first and is not timed), then ground (Grounding DINO
Swin-T), segment (SAM ViT-H), inpaint every mask variant (SD 1.5 inpainting), score (CLIP ViT-L/14, DINOv2-base,
the detector on the outputs), encode and commit the shard. No weights are needed: the models sd15.yaml names are
written, randomly initialised at their published sizes (datagen/models/architectures.py), where the real ones would
be, a Hugging Face hub cache, and HF_HUB_CACHE points there. Random weights score noise, so the run does what the
tiny pipeline does: grounding thresholds 0 and no filter rejects (every score is still computed).

- tuned: sd15.yaml as it is (bf16, SDPA, channels_last ..., its micro-batch and batch sizes); `--batch N` sets the
  micro-batch and every role's batch size to N, `--no-compile` turns torch.compile off, `--steps` the denoising steps.
- naive: every role batch 1, float32, eager attention, no channels_last, fused q/k/v, compile or batched encode,
  micro-batch 1.

Each path renders two shards of the same size in one worker: the first warms up (compilation, cuDNN's choices; model
loading is outside any shard), the second is timed. pairs/s = samples of the timed shard / its seconds, from its
stats, every stage counted (encode and commit included). MFU = UNet FLOPs per forward (torch.utils.flop_counter) x
forwards per second of the tuned inpainting role's own UNet, timed alone at its batch (x2 for classifier-free
guidance) / the device's dense bf16 peak. `--tiny --device cpu` runs all of it on tiny models (the test suite does).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import shutil
import struct
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datagen.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from datagen.config import RunConfig

PIPELINE, TASK = "sd15", "remove"
TINY_IMAGE_SIZE = 64
"""Image side of `--tiny` (the tiny pipeline's): tiny models need no more pixels to run every line."""

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

# ------------------------------------------------------------------------------------------ stand-ins

REVISION = "0" * 40
"""The snapshot folder's name: a commit hash, as the hub cache names them."""
MARKER = "datagen-stand-in.json"


def _builders() -> dict:
    from datagen.models import tiny

    return {
        "t2i": tiny.build_t2i,
        "inpaint": tiny.build_inpaint,
        "grounding": tiny.build_grounding,
        "segmenter": tiny.build_segmenter,
        "clip": tiny.build_clip,
        "dino": tiny.build_dino,
    }


def snapshot(cache: Path, repo: str) -> Path:
    """The hub cache's folder for `repo` at REVISION, with refs/main pointing at it."""
    root = Path(cache) / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(REVISION)
    return root / "snapshots" / REVISION


def write_stand_ins(
    cache: Path, roles: Iterable[str], size: str = "full", device: str = "cpu", pipeline: str = PIPELINE
) -> dict[str, dict]:
    """Randomly initialised stand-ins of the models `pipeline` names for `roles`, at architectures.SIZES[size],
    written in the hub cache layout under those model ids; role -> {model, parameters per part}. A snapshot that
    already holds stand-ins of that size is kept."""
    from datagen.config import find_config, read_yaml
    from datagen.models.architectures import SIZES

    specs = read_yaml(find_config("pipelines", pipeline))["roles"]
    builders = _builders()
    written = {}
    for role in roles:
        if role not in builders:
            raise ConfigError(f"no stand-in for role {role!r} of pipeline {pipeline}; known: {', '.join(builders)}")
        repo = specs[role]["model"]
        folder = snapshot(cache, repo)
        marker = folder / MARKER
        if not (marker.is_file() and json.loads(marker.read_text()) == {"size": size}):
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            builders[role](folder, SIZES[size], device)
            marker.write_text(json.dumps({"size": size}))
        written[role] = {"model": repo, "parameters": parameters(folder)}
    return written


def parameters(folder: Path) -> dict[str, int]:
    """Parameters per part (diffusers' subfolders; 'model' for a transformers folder), from the safetensors headers."""
    counts: dict[str, int] = {}
    for path in sorted(folder.rglob("*.safetensors")):
        with open(path, "rb") as f:
            header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
        part = path.parent.name if path.parent != folder else "model"
        tensors = (entry["shape"] for name, entry in header.items() if name != "__metadata__")
        counts[part] = counts.get(part, 0) + sum(math.prod(shape) for shape in tensors)
    return counts


@contextlib.contextmanager
def hub_cache(path: Path) -> Iterator[None]:
    """The Hugging Face cache, which datagen.models.weights.locate reads, at `path`, offline, for the block."""
    import huggingface_hub.constants as hub

    saved = {name: os.environ.get(name) for name in ("HF_HUB_CACHE", "HF_HUB_OFFLINE")}
    before = hub.HF_HUB_CACHE
    os.environ.update(HF_HUB_CACHE=str(path), HF_HUB_OFFLINE="1")
    hub.HF_HUB_CACHE = str(path)  # huggingface_hub read the variable when it was imported
    try:
        yield
    finally:
        hub.HF_HUB_CACHE = before
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# -------------------------------------------------------------------------------------------- settings

COMMON = [
    "pipeline.roles.llm.backend=template",  # the write phase is not timed: no LLM to load
    "pipeline.roles.llm.model=null",
    "pipeline.roles.llm.args={}",
    "pipeline.roles.judge=null",  # no vLLM on the device: the judge is timed on CPU (`datagen bench render`)
    "pipeline.roles.reward=null",  # a second 7B VLM, no stand-in: timed beside the judge (`datagen bench render`)
    "pipeline.enforce_filters=false",  # random weights score noise: every score is computed, none rejects
    "pipeline.roles.grounding.args.box_threshold=0.0",  # ... and the best box is taken whatever its score
    "pipeline.roles.grounding.args.text_threshold=0.0",
    "pipeline.buckets=null",  # one square size: the figures in docs/benchmarks.md time 512x512 batches
]
"""Overrides of sd15.yaml on both paths."""


def overrides(
    base: RunConfig, naive: bool, device: str, tiny: bool, batch: int | None, steps: int | None, compile_: bool | None
) -> list[str]:
    """The overrides of one path on top of COMMON; `base` is sd15 loaded with COMMON alone."""
    roles = sorted(role for role in base.pipeline.roles if role != "llm")
    from datagen.resolve import roles_used

    used = sorted(roles_used(base, "render"))
    diffusers = [role for role in roles if base.pipeline.roles[role].backend == "diffusers"]
    out = [f"pipeline.roles.{role}.device={device}" for role in roles]
    if tiny:
        out.append(f"pipeline.image_size={TINY_IMAGE_SIZE}")
    if device.startswith("cpu"):  # bf16 on a CPU is emulated, not faster
        out += [f"pipeline.roles.{role}.dtype=float32" for role in roles]
    if steps is not None:
        out += [f"pipeline.roles.{role}.args.steps={steps}" for role in diffusers]
    if naive:
        out.append("pipeline.micro_batch=1")
        naive_role = ("batch_size=1", "dtype=float32", "args.attention=eager")
        out += [f"pipeline.roles.{role}.{setting}" for role in used for setting in naive_role]
        for role in diffusers:
            out += [
                f"pipeline.roles.{role}.args.{key}=false"
                for key in ("channels_last", "fuse_qkv", "compile", "batch_encode")
            ]
        return out
    if batch is not None:
        out.append(f"pipeline.micro_batch={batch}")
        out += [f"pipeline.roles.{role}.batch_size={batch}" for role in used]
    if compile_ is not None:  # None: sd15.yaml's own setting
        out += [f"pipeline.roles.{role}.args.compile={str(compile_).lower()}" for role in diffusers]
    return out


# ---------------------------------------------------------------------------------------------- timing

MODEL_STAGES = ("t2i", "ground", "segment", "generate", "score")
"""The render's stages that run models (on the GPU); load, gate, encode and commit are the CPU's."""


def render_path(config: RunConfig) -> dict[str, Any]:
    """Write (untimed), then render two shards in one worker: the first warms up, the second is timed."""
    from datagen import shards
    from datagen.runner import execute_all

    for phase in ("write", "render"):
        for summary in execute_all([config], phase, workers=0, progress=False):
            if summary.failed:
                shard, error = next(iter(summary.failed.items()))
                raise RuntimeError(f"{phase} of shard {shard} failed in {config.run.out}: {error}")
    warm, timed = (shards.read_stats(shards.shard_paths(config.run.out, "render", TASK, i)) for i in (0, 1))
    for stats in (warm, timed):
        if stats["errors"]:
            raise RuntimeError(f"{stats['errors']} samples failed in {config.run.out}: {stats['candidate_reasons']}")
    samples, seconds = timed["samples"], timed["seconds"]
    stages = timed.get("stages") or {name: {"seconds": s} for name, s in timed["timings"].items()}
    per_pair = {
        name: {"ms_per_pair": 1000 * entry["seconds"] / samples, **{k: v for k, v in entry.items() if k != "seconds"}}
        for name, entry in stages.items()
    }
    pipe = config.pipeline
    from datagen.resolve import roles_used

    used = sorted(roles_used(config, "render"))
    return {
        "micro_batch": pipe.micro_batch,
        "roles": {r: pipe.roles[r].model_dump(include={"batch_size", "dtype", "device", "args"}) for r in used},
        "pairs": samples,
        "kept": timed["kept"],
        "seconds": seconds,
        "pairs_s": samples / seconds,
        "warmup_seconds": warm["seconds"],
        "stages": per_pair,
        "other_ms_per_pair": 1000 * (seconds - sum(e["seconds"] for e in stages.values())) / samples,
        # the model stages one after another are what a pair must cost at least: their sum is the ceiling
        "model_stage_share": sum(e["seconds"] for n, e in stages.items() if n in MODEL_STAGES) / seconds,
    }


def unet_mfu(config: RunConfig) -> dict[str, Any]:
    """The tuned inpainting role's own UNet (loaded by its adapter, with its settings), alone at the role's batch
    (x2 with classifier-free guidance): FLOPs per forward, forwards/s, MFU."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from datagen import models

    spec = config.pipeline.roles["inpaint"]
    adapter = models.build("inpaint", spec, **config.model_context())
    adapter.load()
    unet = adapter.pipe.unet  # compiled, when the role compiles
    plain = getattr(unet, "_orig_mod", unet)
    batch = spec.batch_size * (2 if adapter.guidance > 1 else 1)
    side = config.pipeline.image_size // adapter.pipe.vae_scale_factor
    device, dtype = adapter.device, adapter.dtype
    x = torch.randn(batch, plain.config.in_channels, side, side, device=device, dtype=dtype)
    context = torch.randn(
        batch, adapter.pipe.tokenizer.model_max_length, plain.config.cross_attention_dim, device=device, dtype=dtype
    )
    t = torch.tensor(500, device=device)
    with torch.inference_mode():
        with FlopCounterMode(display=False) as counter:
            plain(x, t, encoder_hidden_states=context)
        flops = counter.get_total_flops()
        for _ in range(3):  # compilation (from the render's cache) and the allocator's first blocks
            unet(x, t, encoder_hidden_states=context)
        _sync(device)
        runs = 20 if device.type == "cuda" else 2
        started = time.perf_counter()
        for _ in range(runs):
            unet(x, t, encoder_hidden_states=context)
        _sync(device)
        seconds = (time.perf_counter() - started) / runs
    achieved = flops / seconds
    peak = peak_flops(device)
    return {
        "batch": batch,
        "dtype": str(dtype).replace("torch.", ""),
        "gflops_per_forward": flops / 1e9,
        "forward_ms": seconds * 1000,
        "achieved_tflops": achieved / 1e12,
        "peak_tflops": None if peak is None else peak / 1e12,
        "mfu": None if peak is None else achieved / peak,
    }


def _sync(device: torch.device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _release() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def peak_flops(device: torch.device) -> float | None:
    import torch

    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key in sorted(PEAK_BF16_TFLOPS, key=len, reverse=True):
        if key in name:
            return PEAK_BF16_TFLOPS[key] * 1e12
    return None


# ------------------------------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pairs", type=int, default=32, help="samples in the tuned path's timed shard (default 32)")
    parser.add_argument("--naive-pairs", type=int, help="samples in the naive path's timed shard (default pairs/8)")
    parser.add_argument("--batch", type=int, help="the tuned path's micro-batch and role batch (default: sd15.yaml's)")
    parser.add_argument("--steps", type=int, help="denoising steps (default: sd15.yaml's)")
    compile_ = parser.add_mutually_exclusive_group()
    compile_.add_argument(
        "--compile",
        dest="compile",
        action="store_true",
        default=None,
        help="tuned path with torch.compile of the UNet (default: sd15.yaml's setting)",
    )
    compile_.add_argument("--no-compile", dest="compile", action="store_false", help="tuned path without it")
    parser.add_argument("--device", default="cuda", help="every role's device (default cuda)")
    parser.add_argument("--tiny", action="store_true", help="tiny stand-ins at 64x64 (a CPU check of the code path)")
    parser.add_argument("--hub-cache", metavar="DIR", help="keep the stand-ins here (default: a temporary folder)")
    parser.add_argument("--tmp", metavar="DIR", help="where the runs are written (default: the system's temp dir)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")


def run(args: argparse.Namespace) -> int:
    import torch

    started = time.perf_counter()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "datagen bench gpu needs CUDA (torch.cuda.is_available() is False); on a CPU, "
            "`--tiny --device cpu --no-compile` runs the same code on tiny models"
        )
    naive_pairs = args.naive_pairs or max(2, args.pairs // 8)
    counts = {"pairs": args.pairs, "naive-pairs": naive_pairs, "batch": args.batch, "steps": args.steps}
    for name, value in counts.items():
        if value is not None and value < 1:
            raise ConfigError(f"--{name} must be at least 1, got {value}")
    if args.tmp and not Path(args.tmp).is_dir():
        raise ConfigError(f"--tmp {args.tmp}: no such directory")
    import diffusers
    import transformers

    from datagen.resolve import load_run, roles_used

    transformers.utils.logging.disable_progress_bar()  # one bar per model written and loaded, at every run
    diffusers.utils.logging.disable_progress_bar()
    root = Path(tempfile.mkdtemp(prefix="datagen-bench-gpu-", dir=args.tmp))
    cache = Path(args.hub_cache) if args.hub_cache else root / "hub"
    try:
        base = load_run(TASK, PIPELINE, out=str(root / "base"), n=1, overrides=COMMON)
        used = sorted(roles_used(base, "render"))
        stand_ins = write_stand_ins(cache, used, "tiny" if args.tiny else "full", args.device)
        paths, configs = {}, {}
        with hub_cache(cache):
            for name, pairs in (("naive", naive_pairs), ("tuned", args.pairs)):
                naive = name == "naive"
                extra = overrides(base, naive, args.device, args.tiny, args.batch, args.steps, args.compile)
                configs[name] = load_run(
                    TASK, PIPELINE, out=str(root / name), n=2 * pairs, shard_size=pairs, overrides=[*COMMON, *extra]
                )
                paths[name] = render_path(configs[name])
                _release()
            unet = unet_mfu(configs["tuned"])
            _release()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    from datagen.measure import machine

    tuned_config = configs["tuned"].pipeline
    result = {
        "bench": "gpu",
        "pipeline": PIPELINE,
        "task": TASK,
        "tiny": args.tiny,
        "device": args.device,
        "image_size": tuned_config.image_size,
        "steps": tuned_config.roles["inpaint"].args.get("steps"),
        "stand_ins": stand_ins,
        "naive": paths["naive"],
        "tuned": paths["tuned"],
        "speedup": paths["tuned"]["pairs_s"] / paths["naive"]["pairs_s"],
        "unet": unet,
        "targets": {"speedup": 10, "model_stage_share": 0.9, "mfu": 0.45},
        "seconds": time.perf_counter() - started,
        "machine": machine(),
    }
    print_result(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


def print_result(r: dict[str, Any]) -> None:
    from datagen.measure import table

    where = r["machine"].get("gpu", r["device"]) if r["device"].startswith("cuda") else r["device"]
    size = " (tiny stand-ins)" if r["tiny"] else ""
    print(f"gpu: `datagen generate`'s render of {r['task']} on {r['pipeline']}, {r['image_size']}px, {where}{size}")
    naive, tuned = r["naive"], r["tuned"]
    for name, path in (("naive", naive), ("tuned", tuned)):
        inpaint = path["roles"]["inpaint"]
        args = inpaint["args"]
        flags = [f"attention {args.get('attention', 'sdpa')}"]
        flags += [flag for flag in ("channels_last", "fuse_qkv", "compile") if args.get(flag)]
        print(
            f"  {name}: micro-batch {path['micro_batch']}, inpaint {inpaint['dtype']} batch {inpaint['batch_size']} "
            f"{', '.join(flags)}: {path['pairs']} pairs in {path['seconds']:.2f} s, {path['pairs_s']:.3f} pairs/s"
        )
    stages = sorted(set(naive["stages"]) | set(tuned["stages"]))
    rows = [
        [s, *(f"{p['stages'][s]['ms_per_pair']:.1f}" if s in p["stages"] else "" for p in (naive, tuned))]
        for s in stages
    ]
    rows.append(["other (manifest, stats, commit)", *(f"{p['other_ms_per_pair']:.1f}" for p in (naive, tuned))])
    print(table(rows, ["stage (ms/pair)", "naive", "tuned"]))
    print(f"  speedup {r['speedup']:.1f}x (target >= {r['targets']['speedup']}x)")
    print(
        f"  tuned: the model stages take {tuned['model_stage_share']:.0%} of the render (target >= 90% of the "
        f"sum-of-model-stages ceiling)"
    )
    unet = r["unet"]
    mfu = "n/a (no known peak for this device)" if unet["mfu"] is None else f"{unet['mfu']:.0%} (target >= 45%)"
    print(
        f"  UNet: {unet['gflops_per_forward']:.0f} GFLOP per forward at batch {unet['batch']} {unet['dtype']}, "
        f"{unet['forward_ms']:.1f} ms, {unet['achieved_tflops']:.1f} TFLOP/s, MFU {mfu}"
    )
