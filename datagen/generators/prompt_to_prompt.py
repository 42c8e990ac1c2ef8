"""global and style on the neural stacks: prompt-to-prompt (InstructPix2Pix's recipe: several seeds per prompt,
the cross-attention injection fraction drawn per candidate from a range, the best candidate kept by the CLIP
filters).

`inversion: never` generates the pair: input from the input caption, output from the output caption, in one
paired run (the source's own image is not used), in a bucket drawn from the sample's seed. `inversion: auto` edits
the source's image itself: DDIM inversion under the input caption, then plug-and-play (decoder features and
self-attention of the inverted branch injected) towards the output caption (SD 1.5 and SDXL families; a pipeline
without its own prompt encoder falls back to generated pairs, and the record's `method` says which ran).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, field_validator

from datagen.generators.base import GeneratorArgs, PerSample, candidate, full_mask
from datagen.record import EditRecord
from datagen.sources import LoadedInput

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Weight = Annotated[float, Field(ge=0.0, le=5.0)]


class PromptToPrompt(PerSample):
    class Args(GeneratorArgs):
        seeds: int = Field(default=3, ge=1, le=16)
        """Candidates per record, one seed each (InstructPix2Pix); the filters keep the best."""
        cross_fraction: list[Fraction] = Field(default=[0.1, 0.9], min_length=2, max_length=2)
        """[min, max] of the share of steps whose cross-attention is injected, drawn per candidate."""
        self_fraction: Fraction = 0.4
        """Share of steps whose self-attention is injected."""
        reweight: list[Weight] = Field(default=[1.0, 1.0], min_length=2, max_length=2)
        """[min, max] of the weight of the output caption's new words, drawn per candidate."""
        inversion: Literal["never", "auto"] = "never"
        """never: both images generated from the captions; auto: the source's image inverted and edited."""
        feature_fraction: Fraction = 0.8
        """Plug-and-play (inversion: auto): share of steps whose decoder features are injected."""

        @field_validator("cross_fraction", "reweight")
        @classmethod
        def _ordered(cls, value: list[float]) -> list[float]:
            if value[0] > value[1]:
                raise ValueError("[min, max] with min <= max")
            return value

    roles = ("t2i",)

    @classmethod
    def follows_edits(cls, args: Args, source: str) -> bool:
        """No: it draws its input from the caption (or inverts it, where the model can), so as a later turn of a
        session its pair would not start from the previous turn's output (datagen/sessions.py)."""
        return False

    @classmethod
    def roles_for(cls, args: Args) -> tuple[str, ...]:
        return cls.roles

    def __init__(self, args: Args, models: Mapping[str, Any]):
        self.args = args
        self.t2i = models["t2i"]

    @property
    def draws_input(self) -> bool:
        """True: the runner skips loading the source image, this generator draws the input itself."""
        return self.args.inversion == "never" or not self.t2i.can_invert()

    def candidates(self, record: EditRecord, inputs: LoadedInput, rng: np.random.Generator) -> list[EditRecord]:
        invert = not self.draws_input
        out = []
        for number in range(self.args.seeds):
            cross = float(rng.uniform(*self.args.cross_fraction))
            reweight = float(rng.uniform(*self.args.reweight))
            seed = record.seed + number
            edit = {"cross_fraction": cross, "self_fraction": self.args.self_fraction, "reweight": reweight}
            if invert:
                before = inputs.image
                after = self.t2i.plug_and_play(
                    before,
                    record.input_caption,
                    record.output_caption,
                    seed=seed,
                    feature_fraction=self.args.feature_fraction,
                    **edit,
                )
            else:
                before, after = self.t2i.prompt_to_prompt(
                    record.input_caption, record.output_caption, seed=seed, size=inputs.bucket, **edit
                )
            params = {
                "method": "plug_and_play" if invert else "prompt_to_prompt",
                "p2p_seed": seed,
                "cross_fraction": round(cross, 4),
                "reweight": round(reweight, 4),
            }
            out.append(candidate(record, before, after, full_mask(before), params, number=number))
        return out
