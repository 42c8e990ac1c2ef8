"""`datagen bench gpu` and the real-size stand-ins: the product's render timed on tiny stand-ins on the CPU (the same
code the full-size GPU run takes), the stand-ins being the tiny models under sd15's model ids, and the published
sizes of datagen/models/architectures.py. Speed itself is measured on a GPU, never asserted here."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import run_cli

from datagen.config import find_config, read_yaml

SD15 = read_yaml(find_config("pipelines", "sd15"))["roles"]


@pytest.fixture(scope="module")
def gpu_bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench_gpu")
    result, cache, tmp = root / "gpu.json", root / "hub", root / "tmp"
    tmp.mkdir()
    # one thread: tiny models gain nothing from more, which only contend with the other tests
    proc = run_cli("bench", "gpu", "--tiny", "--device", "cpu", "--no-compile", "--pairs", "2", "--naive-pairs", "2",
                   "--batch", "2", "--steps", "1", "--hub-cache", str(cache), "--tmp", str(tmp), "--json", str(result),
                   env={"OMP_NUM_THREADS": "1"})  # fmt: skip
    return json.loads(result.read_text()), proc.stdout, cache, tmp


def test_gpu_bench_times_the_products_render_naive_against_sd15s_own_settings(gpu_bench):
    figures, stdout, _, tmp = gpu_bench
    naive, tuned = figures["naive"], figures["tuned"]
    assert (figures["pipeline"], figures["task"], figures["image_size"], figures["steps"]) == ("sd15", "remove", 64, 1)
    assert naive["pairs"] == tuned["pairs"] == 2 and naive["kept"] > 0 and tuned["kept"] > 0
    for path in (naive, tuned):
        assert path["pairs_s"] == pytest.approx(path["pairs"] / path["seconds"])
        assert {"ground", "segment", "generate", "score", "encode"} <= set(path["stages"])
        staged = sum(stage["ms_per_pair"] for stage in path["stages"].values()) + path["other_ms_per_pair"]
        assert staged == pytest.approx(1000 * path["seconds"] / path["pairs"])
        assert path["warmup_seconds"] > 0
    assert figures["speedup"] == pytest.approx(tuned["pairs_s"] / naive["pairs_s"])
    # naive: batch 1, float32, eager attention, nothing fused, compiled or reordered
    assert naive["micro_batch"] == 1 and set(naive["roles"]) == {"inpaint", "grounding", "segmenter", "clip", "dino"}
    for spec in naive["roles"].values():
        assert (spec["batch_size"], spec["dtype"], spec["args"]["attention"]) == (1, "float32", "eager")
    naive_flags = ("channels_last", "fuse_qkv", "compile", "batch_encode")
    assert not any(naive["roles"]["inpaint"]["args"][flag] for flag in naive_flags)
    # tuned: sd15.yaml's own settings, with --batch 2, --steps 1 and --no-compile
    assert tuned["micro_batch"] == 2 and all(spec["batch_size"] == 2 for spec in tuned["roles"].values())
    assert tuned["roles"]["inpaint"]["args"] == {**SD15["inpaint"]["args"], "steps": 1, "compile": False}
    # the same work, in fewer model calls
    (naive_calls, naive_items), (tuned_calls, tuned_items) = (
        (path["stages"]["generate"]["calls"]["inpaint"], path["stages"]["generate"]["items"]["inpaint"])
        for path in (naive, tuned)
    )
    assert naive_calls == naive_items == tuned_items > tuned_calls
    unet = figures["unet"]
    assert unet["gflops_per_forward"] > 0 and unet["batch"] == 4 and unet["mfu"] is None  # 2 x 2: guidance
    assert "pairs/s" in stdout and "MFU n/a" in stdout
    assert not list(tmp.iterdir())  # runs and stand-ins cleaned up; --hub-cache kept


def test_stand_ins_are_the_tiny_models_under_sd15s_model_ids(gpu_bench, tiny_dir):
    """The bench's stand-ins come from the builders and sizes the `tiny:ROLE` models come from, byte for byte, and
    datagen.models.weights.locate finds them under the model ids sd15.yaml names."""
    from safetensors import safe_open

    from datagen.bench_gpu import MARKER, hub_cache
    from datagen.models import tiny
    from datagen.models.weights import locate

    figures, _, cache, _ = gpu_bench
    assert set(figures["stand_ins"]) == {"inpaint", "grounding", "segmenter", "clip", "dino"}
    for role, written in figures["stand_ins"].items():
        assert written["model"] == SD15[role]["model"]
        with hub_cache(cache):
            folder = locate(written["model"])
        built = tiny.resolve(f"tiny:{role}")
        files = {p.relative_to(folder) for p in folder.rglob("*") if p.is_file()} - {Path(MARKER)}
        assert files == {p.relative_to(built) for p in built.rglob("*") if p.is_file()}
        for name in files:
            assert (folder / name).read_bytes() == (built / name).read_bytes(), name
    parts = figures["stand_ins"]["inpaint"]["parameters"]
    assert set(parts) == {"unet", "vae", "text_encoder"}
    with hub_cache(cache):
        weights = locate(SD15["inpaint"]["model"]) / "unet" / "diffusion_pytorch_model.safetensors"
    with safe_open(weights, "pt") as unet:
        assert parts["unet"] == sum(math.prod(unet.get_slice(name).get_shape()) for name in unet.keys())


def test_full_architectures_have_the_published_parameter_counts():
    """Built on the meta device (no memory, no compute): SD 1.5 inpainting UNet 859.5M, VAE 83.7M, CLIP ViT-L/14
    427.6M with its 123.1M text tower, DINOv2-base 86.6M, SAM ViT-H 641M, Grounding DINO Swin-T 172M. And the FLOPs
    MFU rests on: about 0.4 TMACs (0.8 TFLOP) per UNet forward on a 64x64 latent."""
    import copy

    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import (
        CLIPConfig,
        CLIPModel,
        CLIPTextConfig,
        CLIPTextModel,
        Dinov2Config,
        Dinov2Model,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        SamConfig,
        SamModel,
    )

    from datagen.models.architectures import FULL
    from datagen.models.tiny import clip_text_config

    def millions(model) -> float:
        return sum(p.numel() for p in model.parameters()) / 1e6

    text = clip_text_config(100, FULL)  # FULL's own 49408-token vocabulary wins over the tokenizer's
    with torch.device("meta"):
        unet = UNet2DConditionModel(in_channels=9, **FULL["unet"])
        assert millions(unet) == pytest.approx(859.5, abs=0.1)
        assert millions(AutoencoderKL(**FULL["vae"])) == pytest.approx(83.65, abs=0.01)
        assert millions(CLIPTextModel(CLIPTextConfig(**text))) == pytest.approx(123.06, abs=0.01)
        clip = CLIPModel(CLIPConfig(text_config=text, vision_config=FULL["clip_vision"], projection_dim=768))
        assert millions(clip) == pytest.approx(427.6, abs=0.1)
        assert millions(Dinov2Model(Dinov2Config(**FULL["dino"]))) == pytest.approx(86.6, abs=0.1)
        assert millions(SamModel(SamConfig(**copy.deepcopy(FULL["sam"])))) == pytest.approx(641.1, abs=0.1)
        grounding = GroundingDinoForObjectDetection(GroundingDinoConfig(**copy.deepcopy(FULL["grounding"])))
        assert millions(grounding) == pytest.approx(172.2, abs=0.1)
        with FlopCounterMode(display=False) as counter:
            unet(torch.empty(1, 9, 64, 64), torch.tensor(500), encoder_hidden_states=torch.empty(1, 77, 768))
    assert 0.75e12 < counter.get_total_flops() < 0.85e12


def test_gpu_bench_says_what_is_wrong_before_any_work():
    import torch

    proc = run_cli("bench", "gpu", "--device", "cpu", "--pairs", "0", check=False)
    assert proc.returncode == 2 and "--pairs must be at least 1, got 0" in proc.stderr
    if not torch.cuda.is_available():
        proc = run_cli("bench", "gpu", check=False)
        assert proc.returncode == 2 and "needs CUDA" in proc.stderr and "Traceback" not in proc.stderr


def test_real_size_stand_ins_are_found_where_the_hub_cache_would_hold_the_real_ones(tmp_path):
    """benchmarks/real_size.py (here at --small size): the same commands a user runs with real weights, through the
    hub cache layout, train from `stable-diffusion-v1-5/stable-diffusion-v1-5`; `steady` reads the run's log."""
    import subprocess
    import sys

    from conftest import FAST, REPO

    cache, shards, run = tmp_path / "hf", tmp_path / "shards", tmp_path / "run"
    script = [sys.executable, str(REPO / "benchmarks" / "real_size.py")]
    made = subprocess.run([*script, "models", "--cache", str(cache), "--small", "--device", "cpu"], cwd=REPO,
                          capture_output=True, text=True, check=True)  # fmt: skip
    stand_ins = json.loads(made.stdout.strip().splitlines()[-1])["stand_ins"]
    assert {role: written["model"] for role, written in stand_ins.items()} == {
        role: SD15[role]["model"] for role in ("t2i", "clip", "dino")
    }
    assert stand_ins["t2i"]["parameters"]["unet"] > 0
    snapshot = cache / "models--stable-diffusion-v1-5--stable-diffusion-v1-5" / "snapshots" / ("0" * 40)
    assert (snapshot / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    run_cli("generate", "--task", "remove", "--n", "8", "--out", str(shards), "--workers", "0", "--no-progress", *FAST)
    env = {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    sd15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"
    run_cli("train", "--shards", str(shards), "--out", str(run), "--init", sd15, "--resolution", "32",
            "--batch-size", "2", "--steps", "4", "--no-progress", env=env)  # fmt: skip
    steady = subprocess.run([*script, "steady", str(run), "--batch-size", "2", "--skip", "1"], cwd=REPO,
                            capture_output=True, text=True, check=True)  # fmt: skip
    figures = json.loads(steady.stdout)
    assert figures["steps"] == 3 and figures["samples_s"] == pytest.approx(2 * figures["steps_s"])
