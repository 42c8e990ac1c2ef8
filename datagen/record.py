"""EditRecord: one candidate pair and everything known about it, from instruction to verdict."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from datagen.scores import SCORES

KEY_RE = re.compile(r"^[a-z][a-z0-9_]*_\d{6}_\d{5}$")


def sample_key(task: str, shard: int, index: int) -> str:
    """Globally unique, dot-free WebDataset key: {task}_{shard:06d}_{index:05d}."""
    return f"{task}_{shard:06d}_{index:05d}"


def sample_seed(run_seed: int, task: str, shard: int, index: int) -> int:
    """Seed of one sample, derived from the run seed and the sample key (stable across Python versions)."""
    digest = hashlib.sha256(f"{run_seed}/{sample_key(task, shard, index)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


@dataclass
class EditRecord:
    key: str
    task: str
    shard: int
    index: int
    seed: int
    source: dict[str, Any]
    input_caption: str = ""
    instruction: str = ""
    output_caption: str = ""
    objects: list[str] = field(default_factory=list)
    candidate: int = 0
    """Index of this candidate among the sample's candidates (e.g. one per mask variant)."""
    params: dict[str, Any] = field(default_factory=dict)
    """Generator parameters of this candidate (mask variant, inpainting method, ...)."""
    input_image: np.ndarray | None = field(default=None, repr=False)
    output_image: np.ndarray | None = field(default=None, repr=False)
    mask: np.ndarray | None = field(default=None, repr=False)
    """uint8 HxW edit mask (255 = edited); all white for tasks with no region."""
    boxes: list[list[float]] = field(default_factory=list)
    width: int | None = None
    """Width of the pair's images in pixels (its bucket); None for a sample that never got an image."""
    height: int | None = None
    """Height of the pair's images in pixels."""
    scores: dict[str, float] = field(default_factory=dict)
    status: str = "rejected"
    reason: str = ""
    """Short code counted in the stats ('' when kept)."""
    detail: str = ""
    """Human-readable explanation of the reason."""
    selected: bool = False
    models: dict[str, str] = field(default_factory=dict)
    """Role -> model id (and revision) that produced this candidate."""
    judge_reasoning: str = ""
    """What the judge saw, in its words ('' without a judge)."""
    instruction_rewritten: str = ""
    """What the judge says the edit actually did, as an instruction ('' unless the judge rewrites)."""

    def reject(self, reason: str, detail: str = "") -> EditRecord:
        self.status, self.reason, self.detail, self.selected = "rejected", reason, detail, False
        return self

    def text_fields(self) -> dict[str, Any]:
        """The sample's metadata: the tar's `.json` member. One schema for every sample of every task, so loaders that
        infer it from the first samples (Hugging Face `datasets`) lose nothing: every score is present (null where
        not measured) and the task-specific mappings (params, models, source) are JSON text, as in the manifest."""
        return {
            "key": self.key,
            "task": self.task,
            "instruction": self.instruction,
            "input_caption": self.input_caption,
            "output_caption": self.output_caption,
            "objects": self.objects,
            "boxes": self.boxes,
            "width": self.width,
            "height": self.height,
            "params": json.dumps(self.params, sort_keys=True),
            "scores": {name: _finite(self.scores.get(name)) for name in sorted(SCORES)},
            "models": json.dumps(self.models, sort_keys=True),
            "source": json.dumps(self.source, sort_keys=True),
            "seed": self.seed,
            "judge_reasoning": self.judge_reasoning,
            "instruction_rewritten": self.instruction_rewritten,
        }

    def manifest_row(self) -> dict[str, Any]:
        """One parquet row: every field but the pixels."""
        row = {
            "key": self.key,
            "task": self.task,
            "shard": self.shard,
            "index": self.index,
            "candidate": self.candidate,
            "selected": self.selected,
            "status": self.status,
            "reason": self.reason,
            "detail": self.detail,
            "seed": self.seed,
            "source": json.dumps(self.source, sort_keys=True),
            "input_caption": self.input_caption,
            "instruction": self.instruction,
            "output_caption": self.output_caption,
            "objects": list(self.objects),
            "params": json.dumps(self.params, sort_keys=True),
            "boxes": json.dumps(self.boxes),
            "width": self.width,
            "height": self.height,
            "models": json.dumps(self.models, sort_keys=True),
            "judge_reasoning": self.judge_reasoning,
            "instruction_rewritten": self.instruction_rewritten,
        }
        for name in SCORES:
            row[f"score_{name}"] = _finite(self.scores.get(name))
        return row


def _finite(value: float | None) -> float | None:
    if value is None or not np.isfinite(value):
        return None
    return round(float(value), 6)
