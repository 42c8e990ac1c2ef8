"""A text-on-photo set from real photos that scikit-image ships (public domain / CC0, in its wheel): known strings
drawn in real fonts, sizes, colours and angles, each with its quadrilateral. The tests run the real OCR on it and
`datagen bench text` measures detection, the edits and the gates on it. Same seed, same set.

    from datagen.text_photos import text_photos
    for photo in text_photos(24, seed=0): photo.image, photo.line.text, photo.line.quad
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from datagen import glyphs

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "camera", "coins", "brick", "grass",
          "gravel", "clock", "moon", "colorwheel", "hubble_deep_field")  # fmt: skip
"""skimage.data photos bundled in its wheel (the ones fetched from the network are not used)."""
STRINGS = ("OPEN DAILY", "SALE", "EXIT 12", "Fresh Bread", "NO PARKING", "Hotel Central", "CAFE", "2024",
           "Welcome", "STOP", "Bus Stop", "Pharmacy", "FOR RENT", "Museum", "Books", "Station Road")  # fmt: skip
"""What the set writes: shop signs, street names, numbers."""
HEIGHTS = (12, 16, 20, 24, 32, 40, 48)
"""Ink heights in pixels: below 16 px is where detectors start to miss lines."""
COLOURS = ((255, 255, 255), (15, 15, 15), (230, 30, 30), (250, 220, 40), (30, 60, 200))


@dataclass(frozen=True)
class DrawnLine:
    text: str
    quad: np.ndarray
    """4x2 corners (top-left, top-right, bottom-right, bottom-left) of the line's box."""
    font: str
    colour: tuple[int, int, int]
    height: int
    """Ink height in pixels."""
    angle: float


@dataclass(frozen=True)
class TextPhoto:
    name: str
    """`{photo}-{k}`: which scikit-image photo, which draw."""
    image: np.ndarray
    line: DrawnLine
    clean: np.ndarray
    """The photo before the text was drawn."""


def photo(name: str, square: int | None = None) -> np.ndarray:
    """A scikit-image photo as HxWx3 uint8 RGB, at most 640 px on its long side (or its centre, `square` px)."""
    import cv2
    import skimage.data

    image = np.asarray(getattr(skimage.data, name)())
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    image = np.ascontiguousarray(image[..., :3]).astype(np.uint8)
    if square is not None:
        side = min(image.shape[:2])
        top, left = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
        return cv2.resize(image[top : top + side, left : left + side], (square, square), interpolation=cv2.INTER_AREA)
    scale = 640 / max(image.shape[:2])
    if scale < 1:
        image = cv2.resize(
            image, (round(image.shape[1] * scale), round(image.shape[0] * scale)), interpolation=cv2.INTER_AREA
        )
    return image


def derived_copies(image: np.ndarray) -> dict[str, np.ndarray]:
    """The copies of a photo a crawl holds: resized, re-encoded as JPEG at three qualities, cropped by a few percent
    a side, brightened (clipping the highlights), rotated by 2 degrees, watermarked, mirrored. Near-duplicate
    detection must find every one."""
    import cv2

    height, width = image.shape[:2]
    out = {}
    for scale in (0.5, 0.75):
        out[f"resized-{scale}"] = cv2.resize(
            image, (int(width * scale), int(height * scale)), interpolation=cv2.INTER_AREA
        )
    for quality in (30, 60, 90):
        _, data = cv2.imencode(".jpg", np.ascontiguousarray(image[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
        out[f"jpeg-{quality}"] = cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1]
    for share in (0.03, 0.06):
        dy, dx = int(height * share), int(width * share)
        out[f"cropped-{share}"] = image[dy : height - dy, dx : width - dx]
    out["brightened"] = np.clip(image.astype(np.int16) + 30, 0, 255).astype(np.uint8)
    turn = cv2.getRotationMatrix2D((width / 2, height / 2), 2, 1.0)
    out["rotated-2"] = cv2.warpAffine(image, turn, (width, height), borderMode=cv2.BORDER_REFLECT)
    marked = image.copy()
    cv2.putText(
        marked,
        "(c) stock",
        (width // 8, height // 2),
        cv2.FONT_HERSHEY_SIMPLEX,
        width / 250,
        (255, 255, 255),
        max(1, width // 100),
    )
    out["watermarked"] = cv2.addWeighted(image, 0.6, marked, 0.4, 0)
    out["mirrored"] = np.ascontiguousarray(image[:, ::-1])
    return out


OVERLAYS = ("banner", "disc", "logo", "border")
"""What a crawl puts on many distinct photos: a stock-photo banner along the bottom, a sticker in a corner, a logo,
a black border."""


def with_overlay(image: np.ndarray, overlay: str) -> np.ndarray:
    """The photo with one of OVERLAYS drawn on it, the same on every photo (in proportion to its size)."""
    import cv2

    height, width = image.shape[:2]
    out = image.copy()
    if overlay == "banner":
        out[int(height * 0.82) :] = (20, 20, 30)
        cv2.putText(
            out,
            "STOCKPHOTO.COM",
            (width // 20, int(height * 0.95)),
            cv2.FONT_HERSHEY_SIMPLEX,
            width / 500,
            (240, 240, 240),
            max(1, width // 200),
        )
    elif overlay == "disc":
        radius = int(min(height, width) * 0.22)
        cv2.circle(out, (width - radius - 5, radius + 5), radius, (250, 220, 0), -1)
    elif overlay == "logo":
        side = int(min(height, width) * 0.3)
        out[height - side - 10 : height - 10, 10 : 10 + side] = (200, 30, 30)
        cv2.putText(
            out,
            "LOGO",
            (20, height - side // 2),
            cv2.FONT_HERSHEY_SIMPLEX,
            side / 120,
            (255, 255, 255),
            max(1, side // 30),
        )
    elif overlay == "border":
        edge = int(min(height, width) * 0.12)
        out[:edge], out[-edge:], out[:, :edge], out[:, -edge:] = 0, 0, 0, 0
    else:
        raise ValueError(f"overlay {overlay!r}: one of {', '.join(OVERLAYS)}")
    return out


def _contrasting(image: np.ndarray, quad: np.ndarray, rng: np.random.Generator) -> tuple[int, int, int]:
    """A colour of COLOURS that stands out from the box's mean brightness (as real signs do)."""
    behind = float(glyphs.patch(image, quad).mean())
    ranked = sorted(COLOURS, key=lambda c: -abs(np.mean(c) - behind))
    return ranked[int(rng.integers(0, 2))]


def text_photos(
    n: int = 28, seed: int = 0, angles: float = 12.0, square: int | None = None, heights: tuple[int, ...] = HEIGHTS
) -> list[TextPhoto]:
    """`n` photos, each with one known line of text drawn on it (photos cycled, everything else drawn by seed);
    `square`: each photo's centre at that size (what a pipeline without buckets renders)."""
    rng = np.random.default_rng(seed)
    cache: dict[str, np.ndarray] = {}
    out = []
    for k in range(n):
        name = PHOTOS[k % len(PHOTOS)]
        clean = cache.setdefault(name, photo(name, square))
        h, w = clean.shape[:2]
        text = STRINGS[int(rng.integers(len(STRINGS)))]
        font = glyphs.FONTS[int(rng.integers(len(glyphs.FONTS)))]
        height = int(heights[k % len(heights)])
        angle = float(rng.uniform(-angles, angles))
        width = glyphs.text_width(text, font, height)
        if width > 0.85 * w:  # too long for this photo: smaller
            height = max(10, int(height * 0.85 * w / width))
            width = glyphs.text_width(text, font, height)
        box_h = height / (1 - 2 * 0.08)  # the box glyphs.draw fills, margins included
        cx = float(rng.uniform(width / 2 + 8, w - width / 2 - 8))
        cy = float(rng.uniform(box_h / 2 + 8 + width * 0.2, h - box_h / 2 - 8 - width * 0.2))
        quad = glyphs.line_quad((cx, cy), width, box_h, angle)
        colour = _contrasting(clean, quad, rng)
        image, _ = glyphs.draw(clean, quad, text, font, colour, fit="stretch")
        out.append(TextPhoto(f"{name}-{k}", image, DrawnLine(text, quad, font, colour, height, angle), clean))
    return out


SIGN_STRINGS = (
    "Bus Stop",
    "Fresh Coffee",
    "Garden Cafe",
    "Open 24h",
    "HOTEL",
    "Books",
    "Main Street",
    "City Library",
    "Parking",
    "Bakery",
    "No Entry",
    "Post Office",
)
"""What the held-out signs say: none of STRINGS, half of them two words (the word gaps a recogniser drops)."""
SIGN_PLATES = (
    ((20, 90, 50), (255, 255, 255)),
    ((25, 45, 120), (255, 255, 255)),
    ((190, 30, 30), (255, 240, 200)),
    ((245, 245, 240), (20, 20, 20)),
    ((250, 205, 40), (15, 15, 15)),
    ((95, 60, 35), (245, 230, 180)),
)
"""(plate, letters) colours of the held-out signs: street-sign green and blue, shop red, white, yellow, brown."""
HELD_OUT_FONT_DIR = "/usr/share/fonts/truetype/liberation"
HELD_OUT_FONTS = (
    "LiberationSans-Regular.ttf",
    "LiberationSans-Bold.ttf",
    "LiberationSerif-Regular.ttf",
    "LiberationSerif-Bold.ttf",
    "LiberationMono-Regular.ttf",
    "LiberationSansNarrow-Bold.ttf",
)
"""Fonts datagen does not ship (glyphs.FONTS are DejaVu, STIX and Pillow's): Debian's fonts-liberation."""


def held_out_fonts() -> list[str]:
    """The paths of HELD_OUT_FONTS installed here; a clear error where fonts-liberation is missing."""
    from pathlib import Path

    found = [str(Path(HELD_OUT_FONT_DIR) / name) for name in HELD_OUT_FONTS]
    found = [path for path in found if Path(path).is_file()]
    if not found:
        raise FileNotFoundError(
            f"no held-out font in {HELD_OUT_FONT_DIR}: install Debian's fonts-liberation (`make install-ocr`)"
        )
    return found


def _onto(base: np.ndarray, layer: np.ndarray, place: np.ndarray, cover: np.ndarray) -> np.ndarray:
    """`layer` warped by `place` onto `base` where `cover` (its warped footprint) is."""
    import cv2

    side = base.shape[1], base.shape[0]
    warped = cv2.warpPerspective(layer, place, side, flags=cv2.INTER_LINEAR)
    return np.clip(base * (1 - cover) + warped * cover + 0.5, 0, 255).astype(np.uint8)


def sign_photos(n: int = 12, seed: int = 0, square: int = 512, fonts: list[str] | None = None) -> list[TextPhoto]:
    """`n` held-out photos with signs: a scikit-image photo with a plate on it (a flat colour with a light gradient,
    grain and a rim, as painted metal is) carrying one line of SIGN_STRINGS in a font datagen does not ship, tilted
    by up to 6 degrees. `clean` is the photo with the plate and no letters — the exact truth of a removal, and the
    sign's background that an edit must keep."""
    import cv2
    from PIL import Image, ImageDraw, ImageFont

    fonts = fonts or held_out_fonts()
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        name = PHOTOS[k % len(PHOTOS)]
        base = photo(name, square)
        text = SIGN_STRINGS[(k + int(rng.integers(len(SIGN_STRINGS)))) % len(SIGN_STRINGS)]
        path = fonts[int(rng.integers(len(fonts)))]
        plate_colour, ink_colour = SIGN_PLATES[int(rng.integers(len(SIGN_PLATES)))]
        height = int(rng.integers(square // 20, square // 11))  # letters' cap height in pixels
        face = ImageFont.truetype(path, size=round(height * 1.45))
        left, top, right, bottom = face.getbbox(text)
        pad = int(height * 0.6)
        width = min(right - left + 2 * pad, int(square * 0.9))
        plate_h = bottom - top + 2 * pad
        letters = Image.new("L", (width, plate_h), 0)
        ImageDraw.Draw(letters).text(((width - (right - left)) / 2 - left, pad - top), text, font=face, fill=255)
        alpha = np.asarray(letters, np.float32)[..., None] / 255
        shade = np.linspace(-10, 10, plate_h, dtype=np.float32)[:, None, None]
        plate = np.clip(np.asarray(plate_colour, np.float32) + shade + rng.normal(0, 3, (plate_h, width, 1)), 0, 255)
        rim = max(2, height // 8)
        plate[:rim], plate[-rim:], plate[:, :rim], plate[:, -rim:] = 235, 235, 235, 235
        written = plate * (1 - alpha) + np.asarray(ink_colour, np.float32) * alpha
        angle = float(rng.uniform(-6, 6))
        cx = float(rng.uniform(width / 2 + 4, square - width / 2 - 4))
        cy = float(rng.uniform(plate_h / 2 + 4 + width * 0.1, square - plate_h / 2 - 4 - width * 0.1))
        corners = glyphs.line_quad((cx, cy), width, plate_h, angle)
        place = cv2.getPerspectiveTransform(np.float32([[0, 0], [width, 0], [width, plate_h], [0, plate_h]]), corners)
        cover = cv2.warpPerspective(np.ones((plate_h, width), np.float32), place, (base.shape[1], base.shape[0]))
        cover = cover[..., None]

        ink = np.asarray(letters) > 0
        rows, cols = np.nonzero(ink)
        left, top, right, bottom = cols.min(), rows.min(), cols.max() + 1, rows.max() + 1
        box = np.float32([[left, top], [right, top], [right, bottom], [left, bottom]])
        quad = cv2.perspectiveTransform(box[None], place)[0]
        line = DrawnLine(text, quad, path.rsplit("/", 1)[-1].removesuffix(".ttf"), ink_colour, height, angle)
        image, clean = (_onto(base, layer, place, cover) for layer in (written, plate))
        out.append(TextPhoto(f"sign-{name}-{k}", image, line, clean))
    return out
