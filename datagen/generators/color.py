"""The color task: one global photometric operation with a signed strength, exactly as the instruction says.

brightness, contrast, saturation, hue, warmth, blur, sharpen; `amount` in [-1, 1] (blur and sharpen positive).
Whole-image edits: the mask is all 255.
"""

from __future__ import annotations

import cv2
import numpy as np

from datagen.generators.base import Classical, GeneratorArgs, NoClassicalMethod, candidate, full_mask
from datagen.record import EditRecord
from datagen.sources import LoadedInput

OPS = ("brightness", "contrast", "saturation", "hue", "warmth", "blur", "sharpen")


def adjust(image: np.ndarray, op: str, amount: float) -> np.ndarray:
    """The operation applied to an RGB uint8 image; deterministic."""
    x = image.astype(np.float32)
    if op == "brightness":
        x = x + amount * 0.4 * 255
    elif op == "contrast":
        mean = x.mean(axis=(0, 1), keepdims=True)
        x = mean + (x - mean) * (1.0 + amount)
    elif op in ("saturation", "hue"):
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV).astype(np.float32)
        if op == "saturation":
            hsv[..., 1] = np.clip(hsv[..., 1] * (1.0 + amount), 0, 255)
        else:
            hsv[..., 0] = np.mod(hsv[..., 0] + amount * 45.0, 180.0)
        return cv2.cvtColor(np.rint(hsv).astype(np.uint8), cv2.COLOR_HSV2RGB)
    elif op == "warmth":
        x = x + np.array([1.0, 0.2, -1.0], np.float32) * amount * 50
    elif op in ("blur", "sharpen"):
        sigma = max(0.5, abs(amount) * image.shape[0] / 64)
        blurred = cv2.GaussianBlur(x, (0, 0), sigma)
        x = blurred if op == "blur" else x + abs(amount) * 1.5 * (x - blurred)
    else:
        raise ValueError(op)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


class ColorAdjust(Classical):
    class Args(GeneratorArgs):
        """None: the operation and its amount come from the writer, per sample."""

    def candidates(self, record: EditRecord, inputs: LoadedInput, rng: np.random.Generator) -> list[EditRecord]:
        op, amount = record.params.get("op"), record.params.get("amount")
        if op not in OPS or not isinstance(amount, int | float) or not -1 <= amount <= 1:
            raise NoClassicalMethod(f"colour operation {op!r} with amount {amount!r}: ops are {', '.join(OPS)}")
        if op in ("blur", "sharpen"):
            amount = abs(amount)
        after = adjust(inputs.image, op, float(amount))
        return [candidate(record, inputs.image, after, full_mask(inputs.image), {"op": op, "amount": amount})]
