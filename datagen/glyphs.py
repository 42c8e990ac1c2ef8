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
    return cv2.warpPerspective(
        image, _to_patch(quad), (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


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
    """The median colour of the ink's stroke centres where the rendering covers them."""
    band: tuple[float, float] = (0.08, 0.92)
    """Where the ink lies across the line's box, top and bottom as shares of its height (a detector's box has
    margins): a new string is drawn in the same band."""


RIM_WEIGHT = 0.3
"""How much a candidate ink's rim ratio (inks) counts against its overlap with the rendered text when read_glyphs
picks the ink: on the text-on-photo set, 0.3 picks the cluster of the drawn colour wherever one exists (0.2 misses
a white line on brick, 0 a dark line before a dark coat)."""


def inks(rectified: np.ndarray, clusters: int = 3, rounds: int = 12) -> list[tuple[np.ndarray, float]]:
    """What may be the ink of a rectified line: its pixels clustered by colour (k-means in Lab, started from
    lightness quantiles, so the same pixels always give the same clusters), each cluster (of at least 3% of the
    patch) with its rim ratio — its share of the patch's rim over its share of the patch. A box around a line is
    background at its rim, so ink has a low ratio; a background of several colours (a gradient, a pole behind a
    sign) takes the other clusters."""
    lab = cv2.cvtColor(np.ascontiguousarray(rectified), cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float32)
    order = np.argsort(lab[:, 0], kind="stable")
    centres = lab[order[((np.arange(clusters) + 0.5) / clusters * (len(order) - 1)).astype(int)]]
    for _ in range(rounds):
        label = np.argmin(((lab[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
        centres = np.stack([lab[label == k].mean(0) if (label == k).any() else centres[k] for k in range(clusters)])
    label = label.reshape(rectified.shape[:2])
    rim = np.zeros(label.shape, bool)
    rim[[0, -1], :], rim[:, [0, -1]] = True, True
    sizes = np.bincount(label.ravel(), minlength=clusters) / label.size
    on_rim = np.bincount(label[rim], minlength=clusters) / rim.sum()
    return [(label == k, float(on_rim[k] / sizes[k])) for k in range(clusters) if sizes[k] >= 0.03]


def read_glyphs(image: np.ndarray, quad, text: str, fonts: tuple[str, ...] = FONTS) -> Glyphs:
    """The font and colour of a line whose text is known (the OCR read it). Each candidate ink (inks) is cut to its
    own box (the detector's box has margins) and each font's rendering of the text, stretched to that box, compared
    with it: the best overlap less RIM_WEIGHT times the ink's rim ratio names the ink and the font, and the ink's
    stroke centres under that rendering give the colour; where the ink lies in the box gives the band a new string
    is drawn in."""
    rectified = patch(image, quad)
    best = None
    for ink, ratio in inks(rectified):
        rows, cols = np.nonzero(ink)
        if len(rows) < 4:
            continue
        top, bottom = np.percentile(rows, [0.5, 99.5]).astype(int)
        left, right = np.percentile(cols, [0.5, 99.5]).astype(int)
        box = (slice(top, bottom + 1), slice(left, right + 1))
        cut = ink[box]
        for name in fonts:
            drawn = render(text, name, cut.shape[1], cut.shape[0]) > 0.5
            union = (drawn | cut).sum()
            iou = float((drawn & cut).sum() / union) if union else 0.0
            if best is None or iou - RIM_WEIGHT * ratio > best[1] - RIM_WEIGHT * best[-1]:
                best = (name, iou, cut, drawn, box, (top, bottom), ratio)
    if best is None:
        return Glyphs(fonts[0], 0.0, (0, 0, 0) if rectified.mean() > 127 else (255, 255, 255))
    name, iou, ink, drawn, box, (top, bottom), _ = best
    core = cv2.erode(ink.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0  # stroke centres: no anti-aliased rim
    under = next((m for m in (core & drawn, core, ink & drawn) if m.sum() >= 4), ink)
    colour = tuple(int(v) for v in np.median(rectified[box][under].reshape(-1, 3), axis=0))
    full = rectified.shape[0]
    return Glyphs(name, round(iou, 4), colour, (round(top / full, 4), round((bottom + 1) / full, 4)))


def draw(
    image: np.ndarray,
    quad,
    text: str,
    font_name: str,
    colour,
    fit: str = "keep",
    band: tuple[float, float] = (0.08, 0.92),
) -> tuple[np.ndarray, np.ndarray]:
    """`text` rendered into the quadrilateral (its height, angle and perspective), in `colour`: (new image, bool mask
    of the pixels it covers). The ink fills `band` of the box's height (top and bottom as shares of it)."""
    width, height = _patch_size(quad)
    top = min(height - 4, max(0, round(band[0] * height)))
    inner = max(4, round(band[1] * height) - top)
    alpha = np.zeros((height, width), np.float32)
    alpha[top : top + inner] = render(text, font_name, width, inner, fit)[: height - top]
    back = np.linalg.inv(_to_patch(quad))
    h, w = image.shape[:2]
    cover = cv2.warpPerspective(alpha, back, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)[..., None]
    out = image.astype(np.float32) * (1 - cover) + np.asarray(colour, np.float32) * cover
    return np.clip(out + 0.5, 0, 255).astype(np.uint8), cover[..., 0] > 0.25


def widened(quad, text: str, font_name: str, band: tuple[float, float], shape: tuple[int, ...]) -> np.ndarray:
    """The line's quadrilateral, as a rotated rectangle about the same centre, long enough for `text` at the ink
    height `band` gives (plus a quarter of that height at each end) where the old box is too short; kept inside the
    image. The old box itself where the string fits it."""
    g = geometry(quad)
    ink = max(4.0, (band[1] - band[0]) * g.height)
    needed = text_width(text, font_name, ink) + ink / 2
    if needed <= g.width:
        return order_quad(quad)
    centre = tuple(order_quad(quad).mean(axis=0))
    height, width = shape[:2]
    for length in np.linspace(needed, g.width, 8):
        box = line_quad(centre, float(length), g.height, g.angle)
        if (box >= 0).all() and (box[:, 0] <= width - 1).all() and (box[:, 1] <= height - 1).all():
            return box
    return order_quad(quad)


def lengthened(quad, by: float) -> np.ndarray:
    """The quadrilateral stretched along its baseline by `by` times its height at each end (a detector's box often
    clips the first or last glyph)."""
    q = order_quad(quad).copy()
    for start, end in ((0, 1), (3, 2)):
        along = q[end] - q[start]
        step = along / max(1e-6, float(np.linalg.norm(along))) * by * geometry(quad).height
        q[start], q[end] = q[start] - step, q[end] + step
    return q


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
    return np.float32(
        [
            [cx, cy] - half_w - half_h,
            [cx, cy] + half_w - half_h,
            [cx, cy] + half_w + half_h,
            [cx, cy] - half_w + half_h,
        ]
    )


def text_width(text: str, font_name: str, height: float) -> float:
    """The width of `text`'s ink box when its ink box is `height` pixels high."""
    face = font(font_name, max(6, round(height * 1.4)))
    left, top, right, bottom = face.getbbox(text)
    return (right - left) * height / max(1, bottom - top)
