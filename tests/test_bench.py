"""`datagen bench`: each benchmark runs at a small size and reports consistent figures. Speed itself is measured by
`make bench`, never asserted here."""

from __future__ import annotations

import json
import tarfile

import pytest
from conftest import run_cli

from datagen.bench import synthetic_samples
from datagen.shards import TarShardWriter
from datagen.storage import Folder


def test_writer_bench_compares_the_same_bytes(tmp_path):
    result = tmp_path / "writer.json"
    proc = run_cli("bench", "writer", "--samples", "6", "--size", "64", "--repeats", "1", "--json", str(result),
                   "--tmp", str(tmp_path))  # fmt: skip
    figures = json.loads(result.read_text())
    assert set(figures["encoded"]) == {"ours", "TarWriter", "TarWriter+fsync", "raw copy"}
    for row in figures["encoded"].values():
        assert row["seconds"] > 0 and row["mb_s"] == pytest.approx(figures["tar_mb"] / row["seconds"])
    ratios = figures["ratios"]
    assert ratios["ours_vs_tarwriter"] == pytest.approx(
        figures["encoded"]["ours"]["mb_s"] / figures["encoded"]["TarWriter"]["mb_s"]
    )
    assert [c["codec"] for c in figures["codecs"]][:5] == [f"png level {n}" for n in (0, 1, 3, 6, 9)]
    sizes = [c["kib_per_image"] for c in figures["codecs"][:5]]
    assert sizes[0] > sizes[-1]  # level 0 stores, level 9 squeezes
    assert figures["machine"]["cores"] >= 1
    assert "ours / TarWriter:" in proc.stdout and "ours / raw copy:" in proc.stdout
    assert not list(tmp_path.glob("datagen-bench-*"))  # nothing left behind


def test_members_written_by_the_benchmark_path_are_the_shard_writers_own(tmp_path):
    sample = synthetic_samples(1, 32)[0]
    from datagen.record import EditRecord

    record = EditRecord(key="bench_000000_00000", task="bench", shard=0, index=0, seed=0, source={},
                        instruction="Remove it", input_image=sample["input"], output_image=sample["output"],
                        mask=sample["mask"])  # fmt: skip
    folder = Folder(tmp_path)
    first = TarShardWriter(folder, "a.tar", "png", 95, 3)
    first.add(record)
    first.commit()
    second = TarShardWriter(folder, "b.tar", "png", 95, 3)
    second.add_members(record.key, second.encode(record))
    second.commit()
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    with tarfile.open(tmp_path / "a.tar") as tar:
        assert tar.getnames() == [f"{record.key}.{s}" for s in ("input.png", "output.png", "mask.png", "json", "txt")]


def test_render_bench_reports_every_stage(tmp_path):
    result = tmp_path / "render.json"
    run_cli("bench", "render", "--n", "8", "--shard-size", "4", "--json", str(result), "--tmp", str(tmp_path))
    figures = json.loads(result.read_text())
    assert figures["samples"] == 8 and 0 < figures["kept"] <= 8
    assert {"write", "load", "generate", "encode"} <= set(figures["stages_ms_per_sample"])
    assert figures["samples_s"] == pytest.approx(8 / figures["seconds"])
    base = figures["baseline"]
    assert base["prefetch"] == 0 and figures["prefetch"] >= 1 and base["samples"] == 8
    assert base["kept"] == figures["kept"]  # prefetching changes the speed, never the outcome
    assert figures["speedup_over_no_prefetch"] == pytest.approx(figures["samples_s"] / base["samples_s"])


@pytest.mark.slow
def test_engine_bench_runs_the_loop_and_ray_on_the_same_work(tmp_path):
    result = tmp_path / "engine.json"
    proc = run_cli("bench", "engine", "--n", "40", "--shard-size", "10", "--json", str(result), "--tmp", str(tmp_path))
    figures = json.loads(result.read_text())
    assert figures["loop"]["samples"] == figures["ray"]["samples"] == 40
    cores = figures["cores"]
    assert figures["parallel_efficiency"] == pytest.approx(
        figures["ray"]["samples_s"] / (figures["loop"]["samples_s"] * cores)
    )
    assert sum(figures["where_the_time_goes"].values()) == pytest.approx(1.0, abs=0.35)
    assert "parallel efficiency:" in proc.stdout


def test_gpu_bench_runs_its_code_path_on_tiny_models_on_the_cpu(tmp_path):
    result = tmp_path / "gpu.json"
    proc = run_cli("bench", "gpu", "--tiny", "--device", "cpu", "--no-compile", "--pairs", "4", "--batch", "2",
                   "--steps", "2", "--json", str(result))  # fmt: skip
    figures = json.loads(result.read_text())
    assert figures["naive"]["dtype"] == "float32" and figures["tuned"]["dtype"] == "bfloat16"
    assert figures["naive"]["pairs"] == 1 and figures["tuned"]["pairs"] == 4 and figures["tuned"]["batch"] == 2
    assert figures["naive"]["png_bytes"] > 0 and figures["tuned"]["png_bytes"] > 0
    unet = figures["tuned"]["unet"]
    assert unet["gflops_per_forward"] > 0 and unet["mfu"] is None  # no peak is known for a CPU
    assert figures["speedup"] == pytest.approx(figures["tuned"]["pairs_s"] / figures["naive"]["pairs_s"])
    assert "pairs/s" in proc.stdout and "MFU n/a" in proc.stdout


def test_gpu_bench_without_cuda_says_so(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    proc = run_cli("bench", "gpu", check=False)
    assert proc.returncode == 2 and "needs CUDA" in proc.stderr and "Traceback" not in proc.stderr


def test_bench_arguments_are_checked(tmp_path):
    proc = run_cli("bench", "writer", "--samples", "0", check=False)
    assert proc.returncode == 2 and "expected a positive integer, got 0" in proc.stderr
    proc = run_cli("bench", "writer", "--tmp", str(tmp_path / "missing"), check=False)
    assert proc.returncode == 2 and "no such directory" in proc.stderr


def test_unet_flops_match_the_published_count_at_full_size():
    """MFU rests on the FLOPs counted per UNet forward: at full size, counted on the meta device (no memory, no
    compute), SD 1.5's inpainting UNet has its 860M parameters and about 0.4 TMACs (0.8 TFLOP) per 64x64 latent."""
    import torch
    from diffusers import UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    from datagen.bench_gpu import FULL

    with torch.device("meta"):
        unet = UNet2DConditionModel(**FULL["unet"])
        x = torch.empty(1, 9, 64, 64)
        context = torch.empty(1, 77, 768)
        with FlopCounterMode(display=False) as counter:
            unet(x, torch.tensor(500), encoder_hidden_states=context)
    params = sum(p.numel() for p in unet.parameters())
    assert 855e6 < params < 865e6  # the SD 1.5 UNet's 860M parameters
    assert 0.75e12 < counter.get_total_flops() < 0.85e12, counter.get_total_flops() / 1e12


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
    assert json.loads(made.stdout.strip().splitlines()[-1])["parameters"]["unet"] > 0
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
