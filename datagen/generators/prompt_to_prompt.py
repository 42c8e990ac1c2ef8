"""global and style on the neural stacks: prompt-to-prompt (InstructPix2Pix's recipe: several seeds per prompt,
the cross-attention injection fraction drawn per candidate from a range, the best candidate kept by the CLIP
filters).

`inversion: never` generates the pair: input from the input caption, output from the output caption, in one
paired run (the source's own image is not used). `inversion: auto` edits the source's image itself: DDIM inversion
under the input caption, then plug-and-play (decoder features and self-attention of the inverted branch injected)
towards the output caption (SD 1.5 and SDXL families; a pipeline without its own prompt encoder falls back to
generated pairs, and the record's `method` says which ran).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from datagen.generators.base import PerSample, candidate, check_args, full_mask, int_in, number_in, one_of
from datagen.record import EditRecord
from datagen.sources import LoadedInput

DEFAULTS = {
    "seeds": 3,
    "cross_fraction": [0.1, 0.9],
    "self_fraction": 0.4,
    "reweight": [1.0, 1.0],
    "inversion": "never",
    "feature_fraction": 0.8,
}


def _range(low: float, high: float):
    def accepts(value) -> bool:
        return (
            isinstance(value, list)
            and len(value) == 2
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
            and low <= value[0] <= value[1] <= high
        )

    return accepts, f"[min, max] with {low} <= min <= max <= {high}"


class PromptToPrompt(PerSample):
    roles = ("t2i",)

    @staticmethod
    def check_args(args: dict[str, Any], where: str) -> None:
        rules = {
            "seeds": int_in(1, 16),
            "cross_fraction": _range(0.0, 1.0),
            "self_fraction": number_in(0.0, 1.0),
            "reweight": _range(0.0, 5.0),
            "inversion": one_of("never", "auto"),
            "feature_fraction": number_in(0.0, 1.0),
        }
        check_args(args, DEFAULTS, rules, where)

    def __init__(self, args: dict[str, Any], models):
        self.args = {**DEFAULTS, **args}
        self.t2i = models["t2i"]

    @property
    def draws_input(self) -> bool:
        """True: the runner skips loading the source image, this generator draws the input itself."""
        return self.args["inversion"] == "never" or not self.t2i.can_invert()

    def candidates(self, record: EditRecord, inputs: LoadedInput, rng: np.random.Generator) -> list[EditRecord]:
        invert = not self.draws_input
        out = []
        for number in range(self.args["seeds"]):
            cross = float(rng.uniform(*self.args["cross_fraction"]))
            reweight = float(rng.uniform(*self.args["reweight"]))
            seed = record.seed + number
            edit = {"cross_fraction": cross, "self_fraction": float(self.args["self_fraction"]), "reweight": reweight}
            if invert:
                before = inputs.image
                after = self.t2i.plug_and_play(
                    before,
                    record.input_caption,
                    record.output_caption,
                    seed=seed,
                    feature_fraction=float(self.args["feature_fraction"]),
                    **edit,
                )
            else:
                before, after = self.t2i.prompt_to_prompt(
                    record.input_caption, record.output_caption, seed=seed, **edit
                )
            params = {
                "method": "plug_and_play" if invert else "prompt_to_prompt",
                "p2p_seed": seed,
                "cross_fraction": round(cross, 4),
                "reweight": round(reweight, 4),
            }
            out.append(candidate(record, before, after, full_mask(before), params, number=number))
        return out
