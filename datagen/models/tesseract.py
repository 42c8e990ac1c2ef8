"""The reader role: a second text reader that shares no weights with the ocr role (which finds the lines the text task
edits). It reads back what the text task drew, and recovers the word gaps the ocr role's recogniser drops.

Backend `tesseract`: Tesseract 5's LSTM recogniser, the OS library (`libtesseract5`, pulled in by `tesseract-ocr` on
Debian, Apache-2.0; `make install-ocr`), called in this process through its C API (capi.h) — no program, no shell, no
files: each line's crop is handed over as pixels. Where the library is missing the role is `available = False`: the
run says so once (preflight.require), the records carry only the ocr role's reading and the card says the text was
verified by the planner's model alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Sequence
from typing import Any

import numpy as np

from datagen.models.batching import Counted

LIBRARY = "tesseract"
SINGLE_LINE = 7
"""Tesseract's page segmentation mode for a crop that holds one line of text (PSM_SINGLE_LINE)."""
EDGE_MARKS = " |[]{}()!:;,.'\"`~_-"
"""What Tesseract makes of a sign's rim or a crop's edge at either end of a line ("| LOVE |"), stripped."""


def installed(library: str = LIBRARY) -> str | None:
    """The name the loader knows Tesseract's library by (libtesseract.so.5), or None where it is not installed."""
    return ctypes.util.find_library(library)


def _bind(name: str) -> ctypes.CDLL:
    """The library with the C API's signatures declared (pointers stay pointers on 64-bit)."""
    lib = ctypes.CDLL(name)
    handle, text = ctypes.c_void_p, ctypes.c_void_p
    lib.TessVersion.restype = ctypes.c_char_p
    lib.TessBaseAPICreate.restype = handle
    lib.TessBaseAPIInit3.argtypes = [handle, ctypes.c_char_p, ctypes.c_char_p]
    lib.TessBaseAPIInit3.restype = ctypes.c_int
    lib.TessBaseAPISetPageSegMode.argtypes = [handle, ctypes.c_int]
    lib.TessBaseAPISetImage.argtypes = [handle, ctypes.c_void_p] + [ctypes.c_int] * 4
    lib.TessBaseAPIGetUTF8Text.argtypes = [handle]
    lib.TessBaseAPIGetUTF8Text.restype = text
    lib.TessDeleteText.argtypes = [text]
    lib.TessBaseAPIClear.argtypes = [handle]
    lib.TessBaseAPIEnd.argtypes = [handle]
    lib.TessBaseAPIDelete.argtypes = [handle]
    return lib


class TesseractReader(Counted):
    """`read_lines(crops)` -> the text of each crop, read as one line (Tesseract's page segmentation mode 7)."""

    def __init__(self, spec, options=None, **_context: Any):
        self.spec = spec
        self.options = options
        self.model_id = "tesseract"
        self.available = False
        self._lib: ctypes.CDLL | None = None
        self._api: int | None = None

    def load(self) -> None:
        if self._api is not None:
            return
        name = installed()
        if name is None:
            return  # available stays False: the run reads back with the ocr role alone (preflight said so)
        language = self.options.language if self.options is not None else "eng"
        lib = _bind(name)
        api = lib.TessBaseAPICreate()
        if lib.TessBaseAPIInit3(api, None, language.encode()) != 0:
            lib.TessBaseAPIDelete(api)
            raise FileNotFoundError(
                f"Tesseract ({name}) has no {language!r} model in its tessdata folder: install "
                f"tesseract-ocr-{language.split('+')[0]} (`make install-ocr` installs English)"
            )
        lib.TessBaseAPISetPageSegMode(api, SINGLE_LINE)
        self.model_id = f"tesseract:{lib.TessVersion().decode()}:{language}"
        self._lib, self._api, self.available = lib, api, True

    def read_lines(self, crops: Sequence[np.ndarray]) -> list[str]:
        """What Tesseract reads in each crop (a rectified line, uint8 grey or RGB)."""
        self.load()
        if not self.available:
            raise RuntimeError("the reader role's Tesseract is not installed here (`make install-ocr`)")
        self.counted(len(crops))
        return [self._read(crop) for crop in crops]

    def _read(self, crop: np.ndarray) -> str:
        lib, api = self._lib, self._api
        pixels = np.ascontiguousarray(crop, dtype=np.uint8)
        if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] not in (1, 3, 4)):
            raise ValueError(f"a crop to read is grey (H, W) or colour (H, W, 1|3|4) uint8; got shape {crop.shape}")
        height, width = pixels.shape[:2]
        depth = 1 if pixels.ndim == 2 else pixels.shape[2]
        lib.TessBaseAPISetImage(api, pixels.ctypes.data, width, height, depth, width * depth)
        text = lib.TessBaseAPIGetUTF8Text(api)
        try:
            read = ctypes.string_at(text).decode("utf-8", errors="replace") if text else ""
        finally:
            if text:
                lib.TessDeleteText(text)
            lib.TessBaseAPIClear(api)
        return " ".join(read.split()).strip(EDGE_MARKS).strip()

    def __del__(self) -> None:
        if self._api is not None and self._lib is not None:
            self._lib.TessBaseAPIEnd(self._api)
            self._lib.TessBaseAPIDelete(self._api)
            self._api = None
