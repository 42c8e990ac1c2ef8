"""Text lines in photos, as geometry and glyphs: the rectified patch under a line's quadrilateral, which of its pixels
are ink and their colour, the font (of those installed) whose rendering of a string best overlaps them, and a new
string rendered into the same quadrilateral — height and angle from the box, colour from the old glyphs.

The text task's replace and restyle edits and the text-on-photo set of the tests and `bench text` draw with the same
functions. Fonts: matplotlib's DejaVu and STIX families (TrueType files in its package) and Pillow's scalable default,
so every machine renders the same pixels.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
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
    stroke: float = 0.0
    """The ink's mean stroke width in the rectified patch's pixels (twice its area over its outline): a new string
    is drawn as heavy."""
    ink: np.ndarray | None = field(default=None, compare=False, repr=False)
    """bool, the rectified patch's shape: the pixels of the chosen ink inside its own box (None where none was
    found). ink_mask puts it back into the image."""
    share: float = 1.0
    """The ink's share of its own box: letters fill well under 0.7 of theirs; a cluster that fills its box is the
    background, not ink."""
    rim: float = 1.0
    """The ink's rim ratio (inks): about 0 for letters inside their box, 1 for a colour spread evenly."""
    centres: np.ndarray | None = field(default=None, compare=False, repr=False)
    """The colour clusters' centres in Lab (inks); `chosen` is the ink's."""
    chosen: int = -1


INK_MIN_OVERLAP = 0.2
"""The overlap (read_glyphs) from which a line's ink counts as its letters. On the held-out signs (fonts datagen
does not ship) the matched inks overlap 0.29-0.74 and on the text-on-photo set ..."""
INK_MAX_SHARE = 0.7
"""The largest share of its own box an ink may fill (Glyphs.share) and still count as letters."""
INK_MAX_RIM = 0.5
"""The largest rim ratio (Glyphs.rim) of an ink told from its background: letters seldom touch their box's rim."""


def separable(seen: Glyphs) -> bool:
    """Whether the line's ink was told from its background well enough to remove the ink alone."""
    return (
        seen.ink is not None
        and seen.overlap >= INK_MIN_OVERLAP
        and seen.share <= INK_MAX_SHARE
        and seen.rim <= INK_MAX_RIM
    )


def stroke_width(ink: np.ndarray) -> float:
    """A bool mask's mean stroke width in pixels: twice its area over the length of its outline."""
    mask = np.ascontiguousarray(ink.astype(np.uint8))
    contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    outline = sum(cv2.arcLength(c, True) for c in contours)
    return float(2 * mask.sum() / outline) if outline else 0.0


def ink_mask(image: np.ndarray, quad, seen: Glyphs, lengthen: float = 0.0, dilate: int = 0) -> np.ndarray:
    """uint8 mask (255 on the ink) in the image of a line read by read_glyphs on `quad`: its pixels nearest the
    ink's colour cluster, over the quad lengthened by `lengthen` line heights at each end (a detector's box may clip
    the first or last letter), each connected piece kept only where it reaches into the quad itself (not a sign's
    rim beyond it); grown by `dilate` pixels (the letters' anti-aliased rims and shadows)."""
    long = lengthened(quad, lengthen)
    width, height = _patch_size(long)
    if seen.ink is None or seen.centres is None:
        ink = np.zeros((height, width), bool)
    else:
        rectified = patch(image, long)
        lab = cv2.cvtColor(np.ascontiguousarray(rectified), cv2.COLOR_RGB2LAB).astype(np.float32)
        nearest = np.argmin(((lab[..., None, :] - seen.centres[None, None]) ** 2).sum(-1), axis=-1)
        ink = nearest == seen.chosen
        inside = quad_mask((height, width), cv2.perspectiveTransform(order_quad(quad)[None], _to_patch(long))[0]) > 0
        count, pieces = cv2.connectedComponents(ink.astype(np.uint8), connectivity=8)
        keep = np.zeros(count, bool)
        keep[np.unique(pieces[ink & inside])] = True
        keep[0] = False
        ink = keep[pieces]
    back = np.linalg.inv(_to_patch(long))
    shape = image.shape
    mask = cv2.warpPerspective(ink.astype(np.uint8) * 255, back, (shape[1], shape[0]), flags=cv2.INTER_LINEAR)
    mask = np.where(mask > 0, 255, 0).astype(np.uint8)
    if dilate > 0:
        mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate + 1, 2 * dilate + 1)))
    return mask


RIM_WEIGHT = 0.3
"""How much a candidate ink's rim ratio (inks) counts against its overlap with the rendered text when read_glyphs
picks the ink: on the text-on-photo set, 0.3 picks the cluster of the drawn colour wherever one exists (0.2 misses
a white line on brick, 0 a dark line before a dark coat)."""


def inks(rectified: np.ndarray, clusters: int = 3, rounds: int = 12) -> list[tuple[np.ndarray, float, np.ndarray]]:
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
    return [(label == k, float(on_rim[k] / sizes[k]), centres[k]) for k in range(clusters) if sizes[k] >= 0.03]


def read_glyphs(image: np.ndarray, quad, text: str, fonts: tuple[str, ...] = FONTS) -> Glyphs:
    """The font and colour of a line whose text is known (the OCR read it). Each candidate ink (inks) is cut to its
    own box (the detector's box has margins) and each font's rendering of the text, stretched to that box, compared
    with it: the best overlap less RIM_WEIGHT times the ink's rim ratio names the ink and the font, and the ink's
    stroke centres under that rendering give the colour; where the ink lies in the box gives the band a new string
    is drawn in."""
    rectified = patch(image, quad)
    best = None
    found = inks(rectified)
    centres = np.stack([centre for _, _, centre in found]) if found else np.zeros((0, 3), np.float32)
    for k, (ink, ratio, _) in enumerate(found):
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
            if best is None or iou - RIM_WEIGHT * ratio > best[1] - RIM_WEIGHT * best[6]:
                best = (name, iou, cut, drawn, box, (top, bottom), ratio, k)
    if best is None:
        return Glyphs(fonts[0], 0.0, (0, 0, 0) if rectified.mean() > 127 else (255, 255, 255))
    name, iou, ink, drawn, box, (top, bottom), ratio, chosen = best
    core = cv2.erode(ink.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0  # stroke centres: no anti-aliased rim
    under = next((m for m in (core & drawn, core, ink & drawn) if m.sum() >= 4), ink)
    colour = tuple(int(v) for v in np.median(rectified[box][under].reshape(-1, 3), axis=0))
    full = rectified.shape[0]
    whole = np.zeros(rectified.shape[:2], bool)
    whole[box] = ink
    return Glyphs(
        name,
        round(iou, 4),
        colour,
        (round(top / full, 4), round((bottom + 1) / full, 4)),
        stroke=round(stroke_width(ink), 3),
        ink=whole,
        share=round(float(ink.mean()), 4),
        rim=round(ratio, 4),
        centres=centres,
        chosen=chosen,
    )


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
    return paint(image, quad, alpha, colour)


def paint(image: np.ndarray, quad, alpha: np.ndarray, colour) -> tuple[np.ndarray, np.ndarray]:
    """A rectified coverage (the quad's patch size) put back into the image in `colour`: (new image, bool mask of
    the pixels it covers)."""
    back = np.linalg.inv(_to_patch(quad))
    h, w = image.shape[:2]
    cover = cv2.warpPerspective(alpha, back, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)[..., None]
    out = image.astype(np.float32) * (1 - cover) + np.asarray(colour, np.float32) * cover
    return np.clip(out + 0.5, 0, 255).astype(np.uint8), cover[..., 0] > 0.25


SUPERSAMPLE = 4
"""draw_like renders at this many times the patch's resolution, then averages down (smooth edges, exact weight)."""


def draw_like(
    image: np.ndarray, quad, old: str, new: str, font_name: str, colour, band: tuple[float, float], stroke: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """`new` written where `old` was, as a sign painter would: at the font size at which `old`'s ink fills `band`
    of the box's height (so "HOTEL" -> "hotel" keeps its capitals' height for the h and the l, and the rest is
    lower case), on the same baseline, centred along the box, as heavy as the old ink (`stroke`, its stroke width
    in patch pixels: a lighter rendering is thickened to match), shrunk only where it is longer than the box.
    (new image, bool mask of the pixels it covers)."""
    width, height = _patch_size(quad)
    ink_height = max(4.0, (band[1] - band[0]) * height)
    probe = font(font_name, 100)
    _, top, _, bottom = probe.getbbox(old or new, anchor="ls")
    size = 100 * ink_height / max(1, bottom - top) * SUPERSAMPLE
    baseline = (band[0] * height + -top / max(1, bottom - top) * ink_height) * SUPERSAMPLE
    face = font(font_name, max(6, round(size)))
    thicken = 0
    if stroke > 0:
        left, top, right, bottom = face.getbbox(old or new, anchor="ls")
        drawn = _coverage(old or new, face, 0, right - left + 8, bottom - top + 8, (4 - left, 4 - top))
        small = cv2.resize(drawn, None, fx=1 / SUPERSAMPLE, fy=1 / SUPERSAMPLE, interpolation=cv2.INTER_AREA)
        mine = stroke_width(small > 0.5)
        if mine and stroke > 1.2 * mine:
            thicken = round((stroke - mine) / 2 * SUPERSAMPLE)
    left, _, right, _ = face.getbbox(new, anchor="ls", stroke_width=thicken)
    room = 0.96 * width * SUPERSAMPLE
    if right - left > room:  # longer than the box: smaller, on the same baseline
        face = font(font_name, max(6, round(size * room / (right - left))))
        thicken = round(thicken * room / (right - left))
        left, _, right, _ = face.getbbox(new, anchor="ls", stroke_width=thicken)
    x = (width * SUPERSAMPLE - (right - left)) / 2 - left
    alpha = _coverage(new, face, thicken, width * SUPERSAMPLE, height * SUPERSAMPLE, (x, baseline))
    alpha = cv2.resize(alpha, (width, height), interpolation=cv2.INTER_AREA)
    return paint(image, quad, alpha, colour)


def _coverage(text: str, face, thicken: int, width: int, height: int, at: tuple[float, float]) -> np.ndarray:
    """float32 (height, width) coverage of `text` drawn with its left baseline at `at`."""
    canvas = Image.new("L", (max(1, width), max(1, height)), 0)
    ImageDraw.Draw(canvas).text(at, text, fill=255, font=face, anchor="ls", stroke_width=thicken, stroke_fill=255)
    return np.asarray(canvas, np.float32) / 255


def luminance(colour) -> float:
    """WCAG 2's relative luminance of an sRGB colour (0-255 channels)."""
    c = np.asarray(colour, np.float64) / 255
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return float(linear @ np.array([0.2126, 0.7152, 0.0722]))


def contrast(a, b) -> float:
    """WCAG 2's contrast ratio of two colours: 1 (the same) to 21 (black on white)."""
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


MIN_CONTRAST = 3.0
"""WCAG 2's floor for large text: a new string's colour contrasts at least this much with the background it is
written on, or it is drawn in black or white instead (whichever contrasts more)."""


def contrasting(colour, background) -> tuple[int, int, int]:
    """`colour` where it contrasts with `background` at MIN_CONTRAST or more, else black or white, whichever
    contrasts more."""
    if contrast(colour, background) >= MIN_CONTRAST:
        return tuple(int(v) for v in colour)
    return (0, 0, 0) if contrast((0, 0, 0), background) >= contrast((255, 255, 255), background) else (255, 255, 255)


def line_colours(image: np.ndarray, quad) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(background, ink) of the line under the quadrilateral: the median colours of its two classes of grey
    levels (Otsu), the larger one taken as the background."""
    rectified = patch(image, quad)
    bright, dark = _classes(rectified)
    ground, ink = (bright, dark) if bright.sum() >= dark.sum() else (dark, bright)
    pixels = rectified.reshape(-1, 3)
    return tuple(tuple(int(v) for v in np.median(pixels[cls.reshape(-1)], axis=0)) for cls in (ground, ink))


NEW_COLOUR_DISTANCE = 96.0
"""A restyle's new colour is another colour: at least this far from the old ink in RGB (cream letters recoloured
white are the same letters)."""


def background(image: np.ndarray, quad) -> tuple[int, int, int]:
    """The median colour under the quadrilateral: after a line's removal, the colour a new string is written on."""
    return tuple(int(v) for v in np.median(patch(image, quad).reshape(-1, 3), axis=0))


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
