"""Version backtracking (ImgEdit): a turn of a multi-turn session that goes back to an earlier image of the session,
"undo the last change" or "go back to how it was before the second edit". The target is that image itself, so the
pair is exact by construction; the mask is where the two images differ.

It runs only in sessions (`--turns`, datagen/sessions.py): the session gives its images so far as
LoadedInput.history, and its writer (always the template writer: the instruction must name the image the target
is, whatever the pipeline's writer) the index of the image to go back to as `back_to`.
"""

from __future__ import annotations

import numpy as np

from datagen.generators.base import Classical, GeneratorArgs, candidate
from datagen.record import EditRecord
from datagen.sources import BadSource, LoadedInput


class Backtrack(Classical):
    class Args(GeneratorArgs):
        """None: the image to go back to comes from the writer, per sample."""

    def candidates(self, record: EditRecord, inputs: LoadedInput, rng: np.random.Generator) -> list[EditRecord]:
        history = inputs.history or []
        back_to = record.params.get("back_to")
        if len(history) < 2:
            raise BadSource("no_session", "a backtracking turn goes back to an earlier image of its session")
        if not isinstance(back_to, int) or not 0 <= back_to < len(history) - 1:
            raise BadSource("bad_backtrack", f"back_to {back_to!r}: the session has images 0..{len(history) - 2}")
        before, after = inputs.image, history[back_to]
        if after.shape != before.shape:
            raise BadSource("bad_backtrack", f"image {back_to} is {after.shape[:2]}, the input {before.shape[:2]}")
        mask = np.where((before != after).any(axis=2), 255, 0).astype(np.uint8)
        return [candidate(record, before, after.copy(), mask, {"back_to": back_to})]
