"""vLLM engines for the roles served by vLLM (the instruction writer, the judge): the engine arguments datagen
always sets, and one engine per model and arguments in a process, shared by every role built there.

Safe by default: safetensors only and no remote code, whatever a pipeline file says; on CPU the engine runs in this
process (no spawned engine core), with whole-prompt prefill (a chunked prefill rewinds the request's seeded
generator, which torch's CPU generator cannot do) and a fixed KV cache size. JSON answers are constrained by
xgrammar with no free whitespace: a weak model otherwise pads with whitespace until max_tokens cuts it off.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from datagen.config import RoleSpec
from datagen.errors import ConfigError
from datagen.quiet import quiet

UNSAFE = ("trust_remote_code", "load_format")
"""Engine arguments a pipeline file may not set."""

_ENGINES: dict[str, tuple[str, Any]] = {}
"""Engine arguments -> (device, engine): loaded once per process, shared."""


def check_engine_args(engine_args: Any, role: str) -> None:
    if not isinstance(engine_args, dict):
        raise ConfigError(f"field `roles.{role}.args.engine_args`: must be a mapping of vllm.LLM keyword arguments")
    for unsafe in UNSAFE:
        if unsafe in engine_args:
            raise ConfigError(
                f"field `roles.{role}.args.engine_args.{unsafe}`: not allowed (safetensors only, no remote code)"
            )


def engine_kwargs(
    spec: RoleSpec,
    path: str,
    *,
    tensor_parallel_size: int,
    max_model_len: int,
    gpu_memory_utilization: float,
    enforce_eager: bool | None,
    kv_cache_memory_bytes: int | None,
    engine_args: dict[str, Any],
    images_per_prompt: int = 0,
) -> dict[str, Any]:
    """The vllm.LLM arguments of a role: datagen's fixed ones, the role's, then the pipeline's `engine_args`."""
    cpu = spec.device == "cpu"
    kwargs: dict[str, Any] = {
        "model": path,
        "tokenizer": path,
        "dtype": spec.dtype,
        "tensor_parallel_size": tensor_parallel_size,
        "max_model_len": max_model_len,
        "gpu_memory_utilization": 0.05 if cpu else gpu_memory_utilization,
        "enforce_eager": cpu if enforce_eager is None else bool(enforce_eager),
        "seed": 0,
        "trust_remote_code": False,
        "load_format": "safetensors",
        "structured_outputs_config": {"backend": "xgrammar", "disable_any_whitespace": True},
    }
    if images_per_prompt:
        kwargs["limit_mm_per_prompt"] = {"image": images_per_prompt}
    kwargs.update(engine_args)
    if cpu:
        kwargs["enable_chunked_prefill"] = False
    if cpu or kv_cache_memory_bytes is not None:
        kwargs["kv_cache_memory_bytes"] = int(kv_cache_memory_bytes or 256 * 2**20)
    if tensor_parallel_size > 1:
        kwargs.setdefault("distributed_executor_backend", "mp")  # inside a Ray actor holding the GPUs
    return kwargs


def engine(device: str, kwargs: dict[str, Any]) -> Any:
    """The process's engine for these arguments, started on first use."""
    key = json.dumps(kwargs, sort_keys=True, default=str)
    if key not in _ENGINES:
        if device == "cpu":
            # the engine core in this process: no spawned subprocess, nothing to re-import
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        quiet()  # this process may be a Ray worker or a library caller, not the CLI that already did
        from vllm import LLM

        _ENGINES[key] = (device, LLM(**kwargs))
    return _ENGINES[key][1]


def release_engines(device: str) -> None:
    """Drop this process's engines on `device` and give their memory back (inline runs, before rendering); nothing
    to do (and torch not imported) where it started none."""
    import gc

    dropped = [k for k, (d, _) in _ENGINES.items() if d == device]
    if not dropped:
        return
    for key in dropped:
        del _ENGINES[key]
    gc.collect()
    if device == "cuda":
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def shrink(image: np.ndarray, edge: int):
    """A PIL image of at most `edge` pixels on its longest side."""
    from PIL import Image

    picture = Image.fromarray(image)
    if max(picture.size) > edge:
        scale = edge / max(picture.size)
        picture = picture.resize(
            (max(1, round(picture.width * scale)), max(1, round(picture.height * scale))), Image.Resampling.LANCZOS
        )
    return picture
