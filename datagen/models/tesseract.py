"""The reader role: a second text reader that shares no weights with the ocr role (which finds the lines the text task
edits). It reads back what the text task drew, and recovers the word gaps the ocr role's recogniser drops.

Backend `tesseract`: Tesseract 5's LSTM recogniser, the OS package (`tesseract-ocr` on Debian, Apache-2.0; `make
install-ocr`), run as a program — an argument list, never a shell — on each line's crop, all crops of a call in one
process. Where the program is missing the role is `available = False`: the run says so once (preflight.require), the
records carry only the ocr role's reading and the card says the text was verified by the planner's model alone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from datagen.models.batching import Counted

PROGRAM = "tesseract"
EDGE_MARKS = " |[]{}()!:;,.'\"`~_-"
"""What Tesseract makes of a sign's rim or a crop's edge at either end of a line ("| LOVE |"), stripped."""


def installed(binary: str = PROGRAM) -> str | None:
    """The path of the Tesseract program, or None where it is not installed."""
    return shutil.which(binary)


class TesseractReader(Counted):
    """`read_lines(crops)` -> the text of each crop, read as one line (Tesseract's page segmentation mode 7)."""

    def __init__(self, spec, options=None, **_context: Any):
        self.spec = spec
        self.options = options
        self.model_id = "tesseract"
        self.available = False
        self._binary: str | None = None

    def load(self) -> None:
        if self._binary is not None:
            return
        binary = installed()
        if binary is None:
            return  # available stays False: the run reads back with the ocr role alone (preflight said so)
        language = self.options.language if self.options is not None else "eng"
        listed = self._run([binary, "--list-langs"]).split()
        if language not in listed:
            raise FileNotFoundError(
                f"Tesseract at {binary} has no {language!r} model (it lists {', '.join(listed[1:]) or 'none'}): "
                f"install tesseract-ocr-{language} (`make install-ocr` installs English)"
            )
        version = self._run([binary, "--version"]).split()
        self.model_id = f"tesseract:{version[1] if len(version) > 1 else 'unknown'}:{language}"
        self._binary, self.available = binary, True

    def _run(self, argv: list[str]) -> str:
        timeout = self.options.timeout_s if self.options is not None else 120.0
        env = {**os.environ, "OMP_THREAD_LIMIT": "1"}  # one thread a process: the workers own the cores
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} exited {done.returncode}: {done.stderr.strip()[-300:]}")
        return done.stdout

    def read_lines(self, crops: Sequence[np.ndarray]) -> list[str]:
        """What Tesseract reads in each crop (a rectified line, uint8 grey or RGB), one process for all of them: the
        crops written as PNGs into a temporary folder and listed in a file Tesseract reads page by page."""
        from PIL import Image

        self.load()
        if not self.available:
            raise RuntimeError("the reader role's Tesseract is not installed here (`make install-ocr`)")
        self.counted(len(crops))
        if not crops:
            return []
        language = self.options.language if self.options is not None else "eng"
        with tempfile.TemporaryDirectory(prefix="datagen-reader-") as folder:
            paths = []
            for n, crop in enumerate(crops):
                path = Path(folder) / f"{n:06d}.png"
                Image.fromarray(np.ascontiguousarray(crop)).save(path)
                paths.append(str(path))
            listing = Path(folder) / "crops.txt"
            listing.write_text("\n".join(paths) + "\n")
            pages = self._run([self._binary, str(listing), "stdout", "--psm", "7", "-l", language]).split("\f")
        texts = [" ".join(page.split()).strip(EDGE_MARKS).strip() for page in pages]
        if texts and not texts[-1] and len(texts) == len(crops) + 1:
            texts.pop()  # the form feed after the last page
        if len(texts) != len(crops):
            raise RuntimeError(f"Tesseract returned {len(texts)} pages for {len(crops)} crops")
        return texts
