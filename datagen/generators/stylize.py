"""global and style on the local pipeline: classical renderings of lighting, season, weather and artistic style.

The writer's value (`change` for global, `style` for style) is matched by keyword to a preset; a value with no
preset is rejected with `no_classical_method` (the neural stacks draw any style).
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

from datagen.generators.base import Classical, GeneratorArgs, NoClassicalMethod, candidate, full_mask
from datagen.record import EditRecord
from datagen.sources import LoadedInput


def _grade(image: np.ndarray, gain, offset=(0, 0, 0), saturation: float = 1.0, contrast: float = 1.0) -> np.ndarray:
    x = image.astype(np.float32)
    if saturation != 1.0:
        grey = x.mean(axis=2, keepdims=True)
        x = grey + (x - grey) * saturation
    if contrast != 1.0:
        x = 128 + (x - 128) * contrast
    x = x * np.array(gain, np.float32) + np.array(offset, np.float32)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _fog(image: np.ndarray) -> np.ndarray:
    haze = np.linspace(0.65, 0.35, image.shape[0], dtype=np.float32)[:, None, None]
    x = image.astype(np.float32) * (1 - haze) + 215 * haze
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _rain(image: np.ndarray) -> np.ndarray:
    dark = _grade(image, (0.75, 0.78, 0.85), saturation=0.7)
    streaks = np.zeros(image.shape[:2], np.float32)
    rng = np.random.default_rng(7)  # fixed: the same rain on every image
    h, w = streaks.shape
    length = max(3, h // 12)
    for _ in range(h * w // 180):
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        cv2.line(streaks, (x, y), (x + length // 4, y + length), 1.0, 1)
    x = dark.astype(np.float32) * (1 - 0.35 * streaks[..., None]) + 220 * 0.35 * streaks[..., None]
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _snow(image: np.ndarray) -> np.ndarray:
    x = _grade(image, (1.0, 1.02, 1.08), offset=(35, 38, 45), saturation=0.45)
    bright = image.astype(np.float32).mean(axis=2) > 110
    x[bright] = np.clip(x[bright].astype(np.float32) * 0.5 + 125, 0, 255).astype(np.uint8)
    return x


def _autumn(image: np.ndarray) -> np.ndarray:
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    green = (hsv[..., 0] > 25) & (hsv[..., 0] < 85)
    hsv[..., 0] = np.where(green, 12 + (hsv[..., 0] - 25) // 6, hsv[..., 0])
    return _grade(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB), (1.05, 0.95, 0.8))


def _cartoon(image: np.ndarray) -> np.ndarray:
    smooth = cv2.bilateralFilter(image, 9, 75, 75)
    flat = (smooth // 48) * 48 + 24
    edges = cv2.adaptiveThreshold(
        cv2.medianBlur(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), 5),
        255,
        cv2.ADAPTIVE_THRESH_MEAN_C,
        cv2.THRESH_BINARY,
        9,
        5,
    )
    return np.where(edges[..., None] > 0, flat, 0).astype(np.uint8)


def _pixel_art(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    small = cv2.resize(image, (max(4, w // 8), max(4, h // 8)), interpolation=cv2.INTER_AREA)
    return cv2.resize((small // 32) * 32 + 16, (w, h), interpolation=cv2.INTER_NEAREST)


def _pencil(image: np.ndarray, colour: bool) -> np.ndarray:
    grey, coloured = cv2.pencilSketch(image, sigma_s=40, sigma_r=0.08, shade_factor=0.05)
    return coloured if colour else np.repeat(grey[..., None], 3, axis=2)


def _pop_art(image: np.ndarray) -> np.ndarray:
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    hsv[..., 1] = 255
    hsv[..., 2] = np.where(hsv[..., 2] > 110, 255, 90).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


GLOBAL = {
    "night": lambda im: _grade(im, (0.35, 0.4, 0.65), saturation=0.6),
    "sunset": lambda im: _grade(im, (1.1, 0.85, 0.6), offset=(20, 5, 0)),
    "dawn": lambda im: _grade(im, (1.0, 0.9, 0.95), offset=(15, 5, 20), contrast=0.85),
    "winter": _snow,
    "snow": _snow,
    "autumn": _autumn,
    "fall": _autumn,
    "fog": _fog,
    "mist": _fog,
    "rain": _rain,
    "noon": lambda im: _grade(im, (1.1, 1.1, 1.05), offset=(10, 10, 10), contrast=1.15),
    "overcast": lambda im: _grade(im, (0.85, 0.87, 0.9), saturation=0.65, contrast=0.85),
}
STYLES = {
    "watercolor": lambda im: cv2.stylization(im, sigma_s=60, sigma_r=0.45),
    "colored pencil": lambda im: _pencil(im, True),
    "pencil sketch": lambda im: _pencil(im, False),
    "oil painting": lambda im: cv2.edgePreservingFilter(im, flags=cv2.RECURS_FILTER, sigma_s=60, sigma_r=0.4),
    "cartoon": _cartoon,
    "pop art": _pop_art,
    "vintage": lambda im: _grade(
        np.repeat(im.mean(axis=2, keepdims=True), 3, axis=2).astype(np.uint8), (1.07, 0.95, 0.75), offset=(10, 5, 0)
    ),
    "pixel art": _pixel_art,
    "hdr": lambda im: cv2.detailEnhance(im, sigma_s=10, sigma_r=0.15),
    "black and white": lambda im: np.repeat(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2),
}
PRESETS = {"global": GLOBAL, "style": STYLES}
FIELD = {"global": "change", "style": "style"}


def preset(kind: str, value: str):
    """(keyword, function) of the first preset whose keyword the value contains (longest keywords first)."""
    text = value.lower()
    for keyword in sorted(PRESETS[kind], key=len, reverse=True):
        if keyword in text:
            return keyword, PRESETS[kind][keyword]
    raise NoClassicalMethod(f"{FIELD[kind]} {value!r}: the local pipeline renders {', '.join(PRESETS[kind])}")


class Stylize(Classical):
    class Args(GeneratorArgs):
        kind: Literal["global", "style"] = "style"
        """Which presets (PRESETS) and which field of the writer's edit (FIELD) name the rendering."""

    def candidates(self, record: EditRecord, inputs: LoadedInput, rng: np.random.Generator) -> list[EditRecord]:
        keyword, render = preset(self.args.kind, str(record.params.get(FIELD[self.args.kind], "")))
        after = render(inputs.image)
        return [candidate(record, inputs.image, after, full_mask(inputs.image), {"preset": keyword})]
