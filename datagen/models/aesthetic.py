"""The aesthetic role: LAION-Aesthetics V2 — a small MLP over CLIP ViT-L/14's unit image embedding, scoring about
1-10 — for the curate phase's gate (ImgEdit keeps photos above 4.75; its code defaults to 5.0).

Backend `laion`: the role's `model` is the CLIP (the pipeline's `clip` model, loaded through transformers like the
clip role), its `head` the predictor's weights as safetensors — a folder holding `model.safetensors`, or the file —
with LAION's keys (`layers.N.weight`, `layers.N.bias`: Linear layers applied in the order of N, nothing between
them at inference, as the predictor is trained). LAION publishes the head as a pickled .pth, which datagen never
loads (it unpickles nothing): convert it once yourself, as CONVERT says. The `tiny` pipeline's head
(`tiny:aesthetic`) is random, built from its shapes over tiny CLIP.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from datagen.errors import ConfigError
from datagen.models.embeddings import CLIPEmbedder
from datagen.models.options import AestheticOptions
from datagen.models.weights import ModelMissing

HEAD_FILE = "model.safetensors"
LAION_HEAD = "https://github.com/christophschuhmann/improved-aesthetic-predictor (sac+logos+ava1-l14-linearMSE.pth)"
"""Where LAION publishes the predictor's weights (pickled)."""
CONVERT = (
    'mkdir -p {dest} && python -c "import torch, safetensors.torch as st; st.save_file({{k: v.contiguous() for k, v '
    "in torch.load('sac+logos+ava1-l14-linearMSE.pth', weights_only=True).items()}}, '{dest}/model.safetensors')\""
)
"""The one-off conversion of LAION's .pth to the safetensors datagen reads (tensors only: weights_only)."""


DEFAULT_HEAD = "~/.cache/datagen/laion-aesthetic-v2"
"""Where the head is looked for when the role names none (and its CLIP is not a tiny one)."""


def head_for(spec) -> str:
    """The head a role spec uses: its `args.head`, else tiny's over a tiny CLIP, else DEFAULT_HEAD."""
    head = (spec.args or {}).get("head")
    if head:
        return str(head)
    return "tiny:aesthetic" if str(spec.model or "").startswith("tiny:") else DEFAULT_HEAD


def head_path(head: str) -> Path:
    """The head's safetensors file: a `tiny:` head built on first use, a folder's model.safetensors, or a file."""
    if head.startswith("tiny:"):
        from datagen.models import tiny

        return tiny.resolve(head) / HEAD_FILE
    path = Path(os.path.expanduser(head))
    if path.is_dir():
        path = path / HEAD_FILE
    if not path.is_file():
        raise ModelMissing(
            f"the aesthetic head {head!r} is not on this machine; download LAION's predictor from {LAION_HEAD} and "
            f"convert it: {CONVERT.format(dest=head)}"
        )
    return path


def load_head(path: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(weight, bias) of each Linear layer, in order; a ConfigError for a file that is not such a head."""
    from safetensors.numpy import load_file

    tensors = load_file(str(path))
    indices = sorted({int(m.group(1)) for key in tensors if (m := re.fullmatch(r"layers\.(\d+)\.weight", key))})
    if not indices or any(f"layers.{i}.bias" not in tensors for i in indices):
        raise ConfigError(f"{path}: not an aesthetic head: expected tensors layers.N.weight and layers.N.bias")
    layers = [
        (tensors[f"layers.{i}.weight"].astype(np.float32), tensors[f"layers.{i}.bias"].astype(np.float32))
        for i in indices
    ]
    for (w, _), (following, _) in zip(layers, layers[1:], strict=False):
        if following.shape[1] != w.shape[0]:
            raise ConfigError(f"{path}: layer shapes do not chain: {w.shape} then {following.shape}")
    if layers[-1][0].shape[0] != 1:
        raise ConfigError(f"{path}: the last layer must give one score, not {layers[-1][0].shape[0]}")
    return layers


class LAIONAesthetic(CLIPEmbedder):
    """CLIP's unit image embedding through LAION's MLP; `score_batch(images)` -> one score per image."""

    options_class = AestheticOptions

    def load(self) -> None:
        super().load()
        self.head = head_for(self.spec)
        self.layers = load_head(head_path(self.head))
        width = self.layers[0][0].shape[1]
        dim = self.model.config.projection_dim
        if width != dim:
            raise ConfigError(
                f"the aesthetic head {self.head!r} takes {width}-d embeddings and {self.spec.model!r} gives "
                f"{dim}-d; LAION's head goes with CLIP ViT-L/14 (openai/clip-vit-large-patch14)"
            )

    def score_batch(self, images: Sequence[np.ndarray]) -> list[float]:
        if not images:
            return []
        x = self.embed_images(list(images)).astype(np.float32)
        for weight, bias in self.layers:
            x = x @ weight.T + bias
        return [round(float(v), 6) for v in x[:, 0]]
