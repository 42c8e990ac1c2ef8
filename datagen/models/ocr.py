"""The ocr role: text lines read from images — each its quadrilateral, string and confidence.

Backend `rapidocr`: PP-OCRv4 detection and recognition with the orientation classifier, ONNX weights shipped inside
the `rapidocr-onnxruntime` wheel (Apache-2.0), run on the CPU by onnxruntime: real weights on every pipeline, `local`
and CI included, with nothing to fetch. The text task reads its inputs with it at write time (which lines are there
to edit) and reads every candidate again (is the new string there, the old one gone).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from datagen.models.batching import Counted


@dataclass(frozen=True)
class TextLine:
    """One line of text found in an image."""

    quad: tuple[tuple[float, float], ...]
    """Its four corners in pixels: top-left, top-right, bottom-right, bottom-left."""
    text: str
    confidence: float
    height: float = field(default=0.0)
    """The line's height in pixels (the mean of its two sides)."""

    @classmethod
    def of(cls, quad, text: str, confidence: float) -> TextLine:
        q = np.asarray(quad, np.float64).reshape(4, 2)
        height = (np.linalg.norm(q[3] - q[0]) + np.linalg.norm(q[2] - q[1])) / 2
        corners = tuple((round(float(x), 1), round(float(y), 1)) for x, y in q)
        return cls(corners, str(text), round(float(confidence), 4), round(float(height), 1))

    def as_dict(self) -> dict[str, Any]:
        return {
            "quad": [list(p) for p in self.quad],
            "text": self.text,
            "confidence": self.confidence,
            "height": self.height,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TextLine:
        return cls.of(data["quad"], data["text"], data["confidence"])


def normalise(text: str) -> str:
    """How OCR benchmarks compare strings: case folded, whitespace removed (detectors often drop spaces)."""
    return re.sub(r"\s+", "", text).casefold()


def edit_distance(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def ned_similarity(read: str, target: str) -> float:
    """1 - normalised edit distance (AnyText's NED) of the normalised strings: 1.0 when they are equal."""
    a, b = normalise(read), normalise(target)
    if not a and not b:
        return 1.0
    return 1.0 - edit_distance(a, b) / max(len(a), len(b))


def text_scores(read: str, mode: str, target: str, old: str, prefix: str = "ocr") -> dict[str, float]:
    """The read-back scores of a line edited in a photo (scores.py: ocr_target_ned, ocr_exact, ocr_old_gone; with
    `prefix` "reader", the independent reader's reader_target_ned ...), from what was read in the line's place after
    the edit."""
    scores: dict[str, float] = {}
    if mode in ("replace", "restyle"):
        scores[f"{prefix}_target_ned"] = round(ned_similarity(read, target), 6)
        scores[f"{prefix}_exact"] = float(normalise(read) == normalise(target))
    if mode == "remove" or mode == "replace" and normalise(old) not in normalise(target):
        scores[f"{prefix}_old_gone"] = round(1.0 - ned_similarity(read, old), 6)
    return scores


def read_box(quad, shape: tuple[int, ...], grow: float) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the quad's bounding box grown by `grow` times its height on every side, inside the image."""
    points = np.asarray(quad, np.float32)
    (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
    pad = grow * TextLine.of(points.tolist(), "", 0.0).height
    return (
        max(0, int(x0 - pad)),
        max(0, int(y0 - pad)),
        min(shape[1], int(np.ceil(x1 + pad))),
        min(shape[0], int(np.ceil(y1 + pad))),
    )


READ_CONTEXT = 4.0
"""How much context around a line the read-back gives the detector, in line heights on every side. Measured on the
replacements and restyles of `datagen bench text` (26 + 26 candidates, 512 px): exact reads 23 + 23 with 1 line
height, 24 + 24 with 2, 26 + 24 with 4, 26 + 23 with the whole image; and per read 237, 192, 176, 152 ms — the
detector upscales a small crop, so more context is not slower until the crop nears the whole image."""


def read_regions(reader, images: Sequence[np.ndarray], quads: Sequence) -> list[str]:
    """What `reader` reads in each image where its quad is, in one batched call: the image cropped around the quad
    (READ_CONTEXT line heights of context on every side, which the detector needs), and the lines read there whose
    centre lies in the quad's box grown by half its height, left to right, joined by a space."""
    boxes = [read_box(quad, image.shape, READ_CONTEXT) for image, quad in zip(images, quads, strict=True)]
    crops = [image[y0:y1, x0:x1] for image, (x0, y0, x1, y1) in zip(images, boxes, strict=True)]
    out = []
    for (x0, y0, _, _), quad, image, lines in zip(boxes, quads, images, reader.read_batch(crops), strict=True):
        left, top, right, bottom = read_box(quad, image.shape, 0.5)
        there = []
        for line in lines:
            cx, cy = np.asarray(line.quad, np.float32).mean(axis=0) + (x0, y0)
            if left <= cx <= right and top <= cy <= bottom:
                there.append((float(cx), line.text))
        out.append(" ".join(text for _, text in sorted(there)))
    return out


LINE_CROP_HEIGHT = 48
"""The height in pixels a line's crop is scaled to for the reader role (Tesseract reads best at 30-50 px letters)."""


def line_crop(image: np.ndarray, quad, along: float = 0.3, across: float = 0.15) -> np.ndarray:
    """The line under `quad` for a one-line reader: the quadrilateral grown by `along` times its height at each end
    and `across` times it above and below (little: a sign's rim just past the letters reads as a "|"), rectified
    (baseline horizontal), scaled to LINE_CROP_HEIGHT pixels high, in grey, dark letters on light: the letters are
    the fewer of the crop's two Otsu classes (they fill less than half their box), inverted where they are the
    brighter; a light border around it."""
    import cv2

    from datagen import glyphs

    q = glyphs.lengthened(quad, along)
    g = glyphs.geometry(q)
    q = glyphs.line_quad(tuple(q.mean(axis=0)), g.width, g.height * (1 + 2 * across), g.angle)
    grey = cv2.cvtColor(glyphs.patch(image, q), cv2.COLOR_RGB2GRAY)
    scale = LINE_CROP_HEIGHT / grey.shape[0]
    grey = cv2.resize(grey, (max(4, round(grey.shape[1] * scale)), LINE_CROP_HEIGHT), interpolation=cv2.INTER_CUBIC)
    _, split = cv2.threshold(grey, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    if (split > 0).mean() < 0.5:  # the bright class is the smaller: bright letters on a dark ground
        grey = 255 - grey
    return cv2.copyMakeBorder(grey, 12, 12, 12, 12, cv2.BORDER_CONSTANT, value=int(np.percentile(grey, 90)))


def reread_regions(reader, images: Sequence[np.ndarray], quads: Sequence) -> list[str] | None:
    """What the reader role (an independent reader, datagen/models/tesseract.py) reads where each quad is, in one
    call; None where there is no such reader or it is not installed."""
    if reader is None or not getattr(reader, "available", False):
        return None
    return reader.read_lines([line_crop(image, quad) for image, quad in zip(images, quads, strict=True)])


def as_printed(text: str, reread: str) -> str:
    """`text` (the ocr role's reading, which drops the gaps between Latin words) as printed, from `reread` (a second
    reading of the same line by a reader that keeps them): a space goes before a character of `text` where it and
    the character before it match two consecutive characters of `reread` (case folded) with a gap between them;
    spaces `text` already has stay; a reading that matches nowhere adds none. Where the two agree letter for letter
    up to case, the letters are the reread's, in its case: of 59 lines the two readers read alike up to case (48
    held-out signs and 48 text photos, seed 5, 512 px), they differed in case on one, a monospaced "Post Office"
    that PP-OCRv4 read "Post office", and the reread was right."""
    from difflib import SequenceMatcher

    chars = [c for c in text if not c.isspace()]
    letters = [c for c in reread if not c.isspace()]
    same = bool(chars) and [c.casefold() for c in chars] == [c.casefold() for c in letters]
    gaps = set()
    k = 0
    for n, c in enumerate(text):
        if c.isspace():
            continue
        if n and text[n - 1].isspace() and k:
            gaps.add(k)
        k += 1
    other, other_gap = [], []
    pending = False
    for c in reread:
        if c.isspace():
            pending = bool(other)
            continue
        other.append(c.casefold())
        other_gap.append(pending)
        pending = False
    matcher = SequenceMatcher(None, [c.casefold() for c in chars], other, autojunk=False)
    at = {}
    for block in matcher.get_matching_blocks():
        for step in range(block.size):
            at[block.a + step] = block.b + step
    for k in range(1, len(chars)):
        if k in at and k - 1 in at and at[k] == at[k - 1] + 1 and other_gap[at[k]]:
            gaps.add(k)
    return "".join((" " if k in gaps else "") + c for k, c in enumerate(letters if same else chars))


class RapidOCRReader(Counted):
    """PP-OCRv4 through rapidocr-onnxruntime; `read_batch(images)` -> the lines of each image."""

    def __init__(self, spec, options=None, **_context: Any):
        self.spec = spec
        self.options = options
        self.model_id = "rapidocr-onnxruntime:PP-OCRv4"
        self._engine = None

    def load(self) -> None:
        if self._engine is not None:
            return
        from rapidocr_onnxruntime import RapidOCR

        threads = self.options.threads if self.options is not None and self.options.threads else -1
        self._engine = RapidOCR(intra_op_num_threads=threads, inter_op_num_threads=threads)
        models = Path(__import__("rapidocr_onnxruntime").__file__).parent / "models"
        missing = [
            name
            for name in ("ch_PP-OCRv4_det_infer.onnx", "ch_PP-OCRv4_rec_infer.onnx")
            if not (models / name).is_file()
        ]
        if missing:
            raise FileNotFoundError(f"rapidocr-onnxruntime's wheel lacks {', '.join(missing)} in {models}")

    def read_batch(self, images: Sequence[np.ndarray]) -> list[list[TextLine]]:
        """The lines of each image (RGB uint8), those read at the backend's min_confidence or above, top to
        bottom. One call per image inside (the detector takes one image at a time); counted as one batch."""
        self.load()
        self.counted(len(images))
        floor = self.options.min_confidence if self.options is not None else 0.5
        out = []
        for image in images:
            bgr = np.ascontiguousarray(np.asarray(image)[..., ::-1])
            found, _ = self._engine(bgr, text_score=floor)
            lines = [TextLine.of(quad, text, score) for quad, text, score in (found or []) if float(score) >= floor]
            out.append(sorted(lines, key=lambda line: (line.quad[0][1], line.quad[0][0])))
        return out

    def read(self, image: np.ndarray) -> list[TextLine]:
        return self.read_batch([image])[0]
