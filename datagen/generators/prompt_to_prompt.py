"""global and style on the neural stacks: prompt-to-prompt pairs drawn by the text-to-image model (InstructPix2Pix's
recipe: several seeds per prompt, the cross-attention injection fraction drawn per candidate from a range, the best
candidate kept by the CLIP filters).

The pair is generated: the input is drawn from the input caption and the output from the output caption in one
paired run, so the source's own image is not used (real images would need DDIM inversion, not implemented).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from datagen.generators.base import candidate, check_args, full_mask, int_in
from datagen.record import EditRecord
from datagen.sources import LoadedInput

DEFAULTS = {"seeds": 3, "cross_fraction": [0.1, 0.9], "self_fraction": 0.4, "reweight": [1.0, 1.0]}


def _range(low: float, high: float):
    def accepts(value) -> bool:
        return (
            isinstance(value, list)
            and len(value) == 2
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
            and low <= value[0] <= value[1] <= high
        )

    return accepts, f"[min, max] with {low} <= min <= max <= {high}"


class PromptToPrompt:
    roles = ("t2i",)
    draws_input = True
    """The runner skips loading the source image: this generator draws its own input."""

    @staticmethod
    def check_args(args: dict[str, Any], where: str) -> None:
        rules = {
            "seeds": int_in(1, 16),
            "cross_fraction": _range(0.0, 1.0),
            "self_fraction": (lambda v: isinstance(v, int | float) and 0 <= v <= 1, "a number in [0, 1]"),
            "reweight": _range(0.0, 5.0),
        }
        check_args(args, DEFAULTS, rules, where)

    def __init__(self, args: dict[str, Any], models):
        self.args = {**DEFAULTS, **args}
        self.t2i = models["t2i"]

    def candidates(self, record: EditRecord, inputs: LoadedInput, rng: np.random.Generator) -> list[EditRecord]:
        out = []
        for number in range(self.args["seeds"]):
            cross = float(rng.uniform(*self.args["cross_fraction"]))
            reweight = float(rng.uniform(*self.args["reweight"]))
            seed = record.seed + number
            before, after = self.t2i.prompt_to_prompt(
                record.input_caption,
                record.output_caption,
                seed=seed,
                cross_fraction=cross,
                self_fraction=float(self.args["self_fraction"]),
                reweight=reweight,
            )
            params = {"p2p_seed": seed, "cross_fraction": round(cross, 4), "reweight": round(reweight, 4)}
            out.append(candidate(record, before, after, full_mask(before), params, number=number))
        return out
