"""The `compile` role option: torch.compile of the denoiser draws what the eager one draws, within 1/255, on the
CPU on tiny's Stable Diffusion UNet and tiny-flux's FLUX.1 Fill transformer; its kernels go to the cache folder
(datagen/models/weights.py: COMPILE_CACHE), and a second call of the same shape reuses the compiled graph."""

from __future__ import annotations

import time

import numpy as np
import pytest

from datagen.config import RoleSpec
from datagen.models.diffusion import DiffusionInpainter
from datagen.models.flux import FluxInpainter

CASES = [
    (DiffusionInpainter, "diffusers", "tiny:inpaint", {"steps": 2, "guidance": 5.0,
                                                      "pipeline": "StableDiffusionInpaintPipeline"}),
    (FluxInpainter, "flux_fill", "tiny:flux_fill", {"steps": 2}),
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("cls, backend, model, args", CASES, ids=["tiny-unet", "tiny-flux-transformer"])
def test_a_compiled_denoiser_draws_what_the_eager_one_draws(tiny_dir, tmp_path, monkeypatch, cls, backend, model,
                                                           args):  # fmt: skip
    import torch

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(4)]
    masks = [np.pad(np.full((24, 24), 255, np.uint8), 20) for _ in range(4)]
    prompts, seeds = ["a red ball", "a red ball", "a box", "a box"], [1, 2, 3, 4]
    roles = {}
    for compile_ in (False, True):
        spec = RoleSpec(backend=backend, model=model, batch_size=4, args={**args, "compile": compile_})
        roles[compile_] = cls(spec, image_size=64) if cls is DiffusionInpainter else cls(spec)
        roles[compile_].load()
    denoiser = "unet" if cls is DiffusionInpainter else "transformer"
    assert isinstance(getattr(roles[True].pipe, denoiser), torch._dynamo.eval_frame.OptimizedModule)
    eager = roles[False].inpaint_batch(images, masks, prompts, seeds)
    first = time.perf_counter()
    compiled = roles[True].inpaint_batch(images, masks, prompts, seeds)
    first = time.perf_counter() - first
    again = time.perf_counter()
    assert [a.tobytes() for a in roles[True].inpaint_batch(images, masks, prompts, seeds)] == [
        c.tobytes() for c in compiled
    ], "the compiled graph is deterministic"
    again = time.perf_counter() - again
    for a, b in zip(eager, compiled, strict=True):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    assert again < first / 3, "the second call of the same shape reuses the compiled graph"
    assert any((tmp_path / "inductor").rglob("*")), "kernels cached in the folder"
