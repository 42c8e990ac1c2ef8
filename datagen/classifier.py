"""The task classifier: which of the tasks an instruction asks for (Emu Edit predicts it at inference, and its data
filter drops a pair whose instruction reads as another task).

A softmax regression over hashed word unigrams and bigrams, trained on the instructions in the shards: small, fast
on a CPU, and enough to separate tasks whose instructions differ in wording. Saved as safetensors plus JSON.
"""

from __future__ import annotations

import argparse
import json
import re
import zlib
from pathlib import Path

import numpy as np

from datagen.config import RoleSpec
from datagen.errors import ConfigError

FEATURES = 4096
"""Hash buckets of the word and bigram features."""


def featurise(texts: list[str], size: int = FEATURES) -> np.ndarray:
    """(n, size) L2-normalised counts of hashed lowercase words and word pairs."""
    out = np.zeros((len(texts), size), np.float32)
    for row, text in enumerate(texts):
        words = re.findall(r"[a-z0-9']+", text.lower())
        for token in words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]:
            out[row, zlib.crc32(token.encode()) % size] += 1.0
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norms, 1e-6)


class TaskClassifier:
    def __init__(self, tasks: list[str], weights: np.ndarray | None = None, bias: np.ndarray | None = None):
        self.tasks = list(tasks)
        self.weights = weights if weights is not None else np.zeros((FEATURES, len(tasks)), np.float32)
        self.bias = bias if bias is not None else np.zeros(len(tasks), np.float32)

    def probabilities(self, texts: list[str]) -> np.ndarray:
        return self.probabilities_from(featurise(texts))

    def predict(self, texts: list[str]) -> list[str]:
        return [self.tasks[i] for i in self.probabilities(texts).argmax(axis=1)]

    def fit(self, texts: list[str], labels: list[str], epochs: int = 300, lr: float = 2.0, l2: float = 1e-4) -> None:
        """Full-batch gradient descent on the cross-entropy (deterministic)."""
        x = featurise(texts)
        y = np.zeros((len(texts), len(self.tasks)), np.float32)
        y[np.arange(len(texts)), [self.tasks.index(label) for label in labels]] = 1.0
        for _ in range(epochs):
            p = self.probabilities_from(x)
            grad = (p - y) / len(texts)
            self.weights -= lr * (x.T @ grad + l2 * self.weights)
            self.bias -= lr * grad.sum(axis=0)

    def probabilities_from(self, x: np.ndarray) -> np.ndarray:
        logits = x @ self.weights + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)

    def save(self, folder: str | Path) -> None:
        from safetensors.numpy import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({"weights": self.weights, "bias": self.bias}, folder / "classifier.safetensors")
        (folder / "classifier.json").write_text(json.dumps({"tasks": self.tasks, "features": FEATURES}, indent=1))

    @classmethod
    def load(cls, folder: str | Path) -> TaskClassifier:
        from safetensors.numpy import load_file

        folder = Path(folder)
        if not (folder / "classifier.json").is_file():
            raise ConfigError(f"{folder}: no classifier.json (a folder written by `datagen classify --shards`)")
        meta = json.loads((folder / "classifier.json").read_text())
        tensors = load_file(folder / "classifier.safetensors")
        return cls(meta["tasks"], tensors["weights"], tensors["bias"])


def held_out(key: str, share: float = 0.1) -> bool:
    """A fixed ~10% of sample keys, for the accuracy report."""
    return zlib.crc32(key.encode()) % 1000 < share * 1000


class ClassifierRole:
    """The `classifier` role: scores `task_prob`, the classifier's probability of the record's own task."""

    def __init__(self, spec: RoleSpec, **_):
        if not spec.model:
            raise ConfigError("field `roles.classifier.model`: the folder `datagen classify --shards` wrote")
        self.spec = spec
        self.model_id = spec.model
        self.model: TaskClassifier | None = None

    def load(self) -> None:
        self.model = TaskClassifier.load(self.spec.model)

    def task_prob(self, instruction: str, task: str) -> float | None:
        """None where the classifier was not trained on `task` (it cannot judge it)."""
        if task not in self.model.tasks:
            return None
        return float(self.model.probabilities([instruction])[0, self.model.tasks.index(task)])


def flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shards", nargs="+", help="train on the instructions in these runs or .tar files")
    parser.add_argument("--model", required=True, help="classifier folder (written when training, read otherwise)")
    parser.add_argument("--instruction", action="append", default=[], help="classify this instruction (repeatable)")


def run(args: argparse.Namespace) -> int:
    """`datagen classify`: train on the instructions in --shards (when given), then classify each --instruction."""
    if args.shards:
        from datagen.shards.reader import read_samples

        rows = [(sample.key, sample.meta["instruction"], sample.meta["task"]) for sample in read_samples(args.shards)]
        train = [r for r in rows if not held_out(r[0])]
        test = [r for r in rows if held_out(r[0])]
        if len({r[2] for r in train}) < 2:
            raise ConfigError("--shards: the classifier needs instructions of at least two tasks (use a mixture run)")
        model = TaskClassifier(sorted({r[2] for r in train}))
        model.fit([r[1] for r in train], [r[2] for r in train])
        model.save(args.model)
        hits = sum(p == r[2] for p, r in zip(model.predict([r[1] for r in test]), test, strict=True)) if test else 0
        share = hits / len(test) if test else float("nan")
        print(
            f"trained on {len(train)} instructions of {len(model.tasks)} tasks; held-out accuracy {share:.3f} "
            f"on {len(test)} (chance {1 / len(model.tasks):.3f}); saved to {args.model}"
        )
    model = TaskClassifier.load(args.model)
    for instruction, task in zip(
        args.instruction, model.predict(args.instruction) if args.instruction else [], strict=True
    ):
        print(f"{task}\t{instruction}")
    return 0
