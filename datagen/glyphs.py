"""Text lines in photos, as geometry and glyphs: the rectified patch under a line's quadrilateral, which of its pixels
are ink and their colour, the font (of those installed) whose rendering of a string best overlaps them, and a new
string rendered into the same quadrilateral — height and angle from the box, colour from the old glyphs.

The text task's replace and restyle edits and the text-on-photo set of the tests and `bench text` draw with the same
functions. Fonts: matplotlib's DejaVu and STIX families (TrueType files in its package) and Pillow's scalable default,
so every machine renders the same pixels.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT_FILES = {
    "dejavu-sans": "DejaVuSans.ttf",
    "dejavu-sans-bold": "DejaVuSans-Bold.ttf",
    "dejavu-sans-oblique": "DejaVuSans-Oblique.ttf",
    "dejavu-serif": "DejaVuSerif.ttf",
    "dejavu-serif-bold": "DejaVuSerif-Bold.ttf",
    "dejavu-mono": "DejaVuSansMono.ttf",
    "dejavu-mono-bold": "DejaVuSansMono-Bold.ttf",
    "stix": "STIXGeneral.ttf",
    "stix-bold": "STIXGeneralBol.ttf",
    "stix-italic": "STIXGeneralItalic.ttf",
}
"""Font name -> its file in matplotlib's mpl-data/fonts/ttf; 'pillow' is Pillow's own scalable font besides."""
FONTS = (*FONT_FILES, "pillow")


@functools.cache
def _font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@functools.lru_cache(maxsize=512)
def font(name: str, size: int) -> ImageFont.FreeTypeFont:
    """A font of FONTS at `size` pixels."""
    if name == "pillow":
        return ImageFont.load_default(size=size)
    if name not in FONT_FILES:
        raise ValueError(f"unknown font {name!r}; known: {', '.join(FONTS)}")
    return ImageFont.truetype(str(_font_dir() / FONT_FILES[name]), size=size)


@dataclass(frozen=True)
class Geometry:
    """A line's quadrilateral as a rotated rectangle: its size in pixels and the angle of its baseline (degrees)."""

    width: float
    height: float
    angle: float


def order_quad(quad) -> np.ndarray:
    """4x2 float32 corners as top-left, top-right, bottom-right, bottom-left (OCR detectors' order)."""
    return np.asarray(quad, np.float32).reshape(4, 2)


def geometry(quad) -> Geometry:
    q = order_quad(quad)
    width = (np.linalg.norm(q[1] - q[0]) + np.linalg.norm(q[2] - q[3])) / 2
    height = (np.linalg.norm(q[3] - q[0]) + np.linalg.norm(q[2] - q[1])) / 2
    dx, dy = q[1] - q[0]
    return Geometry(float(width), float(height), float(np.degrees(np.arctan2(dy, dx))))


def _patch_size(quad) -> tuple[int, int]:
    g = geometry(quad)
    return max(4, round(g.width)), max(4, round(g.height))


def _to_patch(quad) -> np.ndarray:
    width, height = _patch_size(quad)
    target = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
    return cv2.getPerspectiveTransform(order_quad(quad), target)


def patch(image: np.ndarray, quad) -> np.ndarray:
    """The pixels under the quadrilateral, rectified to its width x height (baseline horizontal)."""
    width, height = _patch_size(quad)
    return cv2.warpPerspective(image, _to_patch(quad), (width, height), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE)  # fmt: skip


def _classes(rectified: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two classes of a rectified line's pixels by Otsu on its grey levels: (bright, dark)."""
    grey = cv2.cvtColor(rectified, cv2.COLOR_RGB2GRAY) if rectified.ndim == 3 else rectified
    _, split = cv2.threshold(grey, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return split > 0, split == 0


def render(text: str, font_name: str, width: int, height: int, fit: str = "stretch") -> np.ndarray:
    """float32 (height, width) coverage of `text` in a font, its ink box filling the height. fit: 'stretch' scales
    the ink box to the whole width too (an old line's exact box); 'keep' keeps the font's proportions, shrinking only
    a string too long for the width, centred (a new string in an old line's place)."""
    size = max(6, round(height * 1.4))
    face = font(font_name, size)
    left, top, right, bottom = face.getbbox(text)
    canvas = Image.new("L", (max(1, right - left + 4), max(1, bottom - top + 4)), 0)
    ImageDraw.Draw(canvas).text((2 - left, 2 - top), text, fill=255, font=face)
    alpha = np.asarray(canvas, np.float32) / 255
    rows, cols = np.nonzero(alpha > 0.1)
    if not len(rows):
        return np.zeros((height, width), np.float32)
    alpha = alpha[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    if fit == "stretch":
        return cv2.resize(alpha, (width, height), interpolation=cv2.INTER_AREA)
    scale = min(height / alpha.shape[0], width / alpha.shape[1])
    new_w, new_h = max(1, round(alpha.shape[1] * scale)), max(1, round(alpha.shape[0] * scale))
    small = cv2.resize(alpha, (new_w, new_h), interpolation=cv2.INTER_AREA)
    out = np.zeros((height, width), np.float32)
    x, y = (width - new_w) // 2, (height - new_h) // 2
    out[y : y + new_h, x : x + new_w] = small
    return out


@dataclass(frozen=True)
class Glyphs:
    """What a line's pixels say about how it was written."""

    font: str
    """The installed font whose rendering of the line's text best overlaps its ink."""
    overlap: float
    """That rendering's IoU with the ink (about 0.5 and up for a good match)."""
    colour: tuple[int, int, int]
    """The median colour of the ink where the rendering covers it."""


def read_glyphs(image: np.ndarray, quad, text: str, fonts: tuple[str, ...] = FONTS) -> Glyphs:
    """The font and colour of a line whose text is known (the OCR read it): each font's rendering of the text,
    stretched to the line's box, against both Otsu classes of its pixels; the best overlap names the font and which
    class is ink (a bright or a dark text), and the ink under the rendering gives the colour."""
    rectified = patch(image, quad)
    height, width = rectified.shape[:2]
    classes = _classes(rectified)
    best = (fonts[0], -1.0, classes[0], classes[0])
    for name in fonts:
        drawn = render(text, name, width, height) > 0.5
        for mask in classes:
            union = (drawn | mask).sum()
            iou = float((drawn & mask).sum() / union) if union else 0.0
            if iou > best[1]:
                best = (name, iou, mask, drawn)
    name, iou, mask, drawn = best
    core = cv2.erode(drawn.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0  # stroke centres: no background rim
    under = next((m for m in (mask & core, mask & drawn) if m.any()), mask)
    if not under.any():
        colour = (0, 0, 0) if rectified.mean() > 127 else (255, 255, 255)
    else:
        colour = tuple(int(v) for v in np.median(rectified[under].reshape(-1, 3), axis=0))
    return Glyphs(name, round(iou, 4), colour)


def draw(image: np.ndarray, quad, text: str, font_name: str, colour, fit: str = "keep",
         margin: float = 0.08) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """`text` rendered into the quadrilateral (its height, angle and perspective), in `colour`: (new image, bool mask
    of the pixels it covers). The ink fills the box less `margin` of its height above and below."""
    width, height = _patch_size(quad)
    inner = max(4, round(height * (1 - 2 * margin)))
    alpha = np.zeros((height, width), np.float32)
    top = (height - inner) // 2
    alpha[top : top + inner] = render(text, font_name, width, inner, fit)
    back = np.linalg.inv(_to_patch(quad))
    h, w = image.shape[:2]
    cover = cv2.warpPerspective(alpha, back, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)[..., None]
    out = image.astype(np.float32) * (1 - cover) + np.asarray(colour, np.float32) * cover
    return np.clip(out + 0.5, 0, 255).astype(np.uint8), cover[..., 0] > 0.25


def quad_mask(shape: tuple[int, ...], quad, dilate: int = 0) -> np.ndarray:
    """uint8 mask (255 inside) of the quadrilateral, grown by `dilate` pixels."""
    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(order_quad(quad)).astype(np.int32)], 255)
    if dilate > 0:
        mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate + 1, 2 * dilate + 1)))
    return mask


def line_quad(center: tuple[float, float], width: float, height: float, angle: float) -> np.ndarray:
    """The quadrilateral of a rotated rectangle (corners in OCR order) — where the test set draws its lines."""
    cx, cy = center
    rad = np.radians(angle)
    along, down = np.array([np.cos(rad), np.sin(rad)]), np.array([-np.sin(rad), np.cos(rad)])
    half_w, half_h = along * width / 2, down * height / 2
    return np.float32([[cx, cy] - half_w - half_h, [cx, cy] + half_w - half_h, [cx, cy] + half_w + half_h,
                       [cx, cy] - half_w + half_h])  # fmt: skip


def text_width(text: str, font_name: str, height: float) -> float:
    """The width of `text`'s ink box when its ink box is `height` pixels high."""
    face = font(font_name, max(6, round(height * 1.4)))
    left, top, right, bottom = face.getbbox(text)
    return (right - left) * height / max(1, bottom - top)
