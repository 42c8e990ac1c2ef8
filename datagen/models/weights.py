"""Where weights come from: a `tiny:ROLE` model, a local directory, or the Hugging Face cache — never the network."""

from __future__ import annotations

import os
from pathlib import Path

from datagen.config import RoleSpec
from datagen.errors import ConfigError
from datagen.models.batching import Counted
from datagen.models.options import Options, VisionOptions


class ModelMissing(ConfigError):
    """A model a pipeline names is not on this machine; the message says how to fetch it."""


def fetch_command(model: str, revision: str | None) -> str:
    rev = f" --revision {revision}" if revision else ""
    return f"hf download {model}{rev}"


def locate(model: str, revision: str | None = None) -> Path:
    """Local folder of `model`: built tiny model, a directory, or a snapshot already in the HF cache."""
    if model.startswith("tiny:"):
        from datagen.models import tiny

        return tiny.resolve(model)
    path = Path(os.path.expanduser(model))
    if path.is_dir():
        return path
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(model, revision=revision, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        raise ModelMissing(
            f"model {model!r}{f' (revision {revision})' if revision else ''} is not in the Hugging Face cache "
            f"({os.environ.get('HF_HUB_CACHE') or '~/.cache/huggingface/hub'}) nor a local directory; fetch it with: "
            f"{fetch_command(model, revision)}"
        ) from None


def model_id(model: str, revision: str | None) -> str:
    return f"{model}@{revision}" if revision else model


COMPILE_CACHE = "~/.cache/datagen/inductor"
"""Where torch.compile's kernels are kept between processes (TORCHINDUCTOR_CACHE_DIR; DATAGEN_COMPILE_CACHE moves
it): a worker after the first loads a bucket's compiled denoiser instead of compiling it again."""
SHAPES = 64
"""Graphs a compiled denoiser keeps, one per input shape (bucket x batch); torch's default of 8 would send the
ninth shape of a run back to eager, silently."""


def compiled(module):
    """torch.compile of a role's denoiser (the `compile` option): compiled on its first call per input shape, each
    shape's graph reused for every later shard of the worker, the kernels cached on disk (COMPILE_CACHE)."""
    import os

    import torch

    cache = os.environ.get("DATAGEN_COMPILE_CACHE", COMPILE_CACHE)
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", os.path.expanduser(cache))
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, SHAPES)
    return torch.compile(module, dynamic=False)


def torch_device_dtype(device: str, dtype: str):
    """torch device and dtype for an adapter; also quiets the libraries' per-call warnings (truncated prompts,
    progress bars), which would otherwise flood a run's log once per sample."""
    import diffusers
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    diffusers.logging.set_verbosity_error()
    return torch.device(device), getattr(torch, dtype)


class VisionRole(Counted):
    """A role played by a transformers model: the spec, its declared options, and `_from_pretrained` loading the
    model (safetensors, the role's dtype and attention) and its processor onto the role's device."""

    options_class: type[Options] = VisionOptions

    def __init__(self, spec: RoleSpec, options: Options | None = None, **_):
        self.spec = spec
        self.options = options or self.options_class.parse(spec.args, "vision")
        self.model_id = model_id(spec.model or "", spec.revision)
        self.model = self.processor = None

    def _from_pretrained(self, model_class, processor_class) -> None:
        path = locate(self.spec.model, self.spec.revision)
        self.device, self.dtype = torch_device_dtype(self.spec.device, self.spec.dtype)
        extra = {"attn_implementation": self.options.attention} if self.options.attention else {}
        model = model_class.from_pretrained(path, use_safetensors=True, dtype=self.dtype, **extra)
        self.model = model.to(self.device).eval()
        self.processor = processor_class.from_pretrained(path)
