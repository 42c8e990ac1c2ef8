"""What every generator kind shares: the batched interface, argument checking and the one-candidate result."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Protocol

import numpy as np

from datagen.errors import ConfigError, is_out_of_memory
from datagen.filters import pixel_scores
from datagen.record import EditRecord
from datagen.sources import BadSource, LoadedInput
from datagen.stages import StageClock


@dataclass
class Sample:
    """One instruction record of a micro-batch with its loaded input, and its own random stream."""

    record: EditRecord
    inputs: LoadedInput
    rng: np.random.Generator


Outcome = list[EditRecord] | Exception
"""A sample's candidates, or why it has none: a Reject (counted by reason) or another error (status 'error')."""


class Generator(Protocol):
    """A generator kind: a micro-batch of samples in, each sample's candidates (or the reason it has none) out.

    `roles` names the model roles it needs (the pipeline supplies them built); `check_args` validates its task-file
    arguments before any work starts. `render` times its stages on `clock` and calls each role once per stage
    with every item of the micro-batch. A CUDA out-of-memory error must propagate: the caller halves the
    micro-batch and tries again.
    """

    roles: ClassVar[tuple[str, ...]]

    @staticmethod
    def check_args(args: dict[str, Any], where: str) -> None: ...

    def render(self, batch: Sequence[Sample], clock: StageClock) -> list[Outcome]: ...


class PerSample:
    """`render` for generators whose work is per sample (classical operators, prompt-to-prompt): their
    `candidates(record, inputs, rng)` of each sample in turn, in one `generate` stage."""

    def render(self, batch: Sequence[Sample], clock: StageClock) -> list[Outcome]:
        out: list[Outcome] = []
        with clock.stage("generate"):
            for sample in batch:
                out.append(attempt(self.candidates, sample.record, sample.inputs, sample.rng))
        return out


def attempt(function: Callable[..., Any], *args: Any) -> Any:
    """function(*args), or the exception it raised (one broken sample costs one sample); out-of-memory propagates."""
    try:
        return function(*args)
    except Exception as e:
        if is_out_of_memory(e):
            raise
        return e


class NoClassicalMethod(BadSource):
    """What the writer asked for has no classical rendering (an unknown style, a non-scene object on `local`)."""

    def __init__(self, detail: str):
        super().__init__("no_classical_method", detail)


Rule = tuple[Callable[[Any], bool], str]
"""(accepts the value?, what is allowed, in words)."""


def one_of(*values: Any) -> Rule:
    return (lambda v: v in values, f"one of {', '.join(map(str, values))}")


def int_in(low: int, high: int) -> Rule:
    return (
        lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v <= high,
        f"an integer in [{low}, {high}]",
    )


def number_in(low: float, high: float) -> Rule:
    ok = lambda v: isinstance(v, int | float) and not isinstance(v, bool) and low <= v <= high  # noqa: E731
    return (ok, f"a number in [{low}, {high}]")


RGB: Rule = (
    lambda v: isinstance(v, list) and len(v) == 3 and all(isinstance(c, int) and 0 <= c <= 255 for c in v),
    "[r, g, b] with integers in [0, 255]",
)


def check_args(args: dict[str, Any], defaults: dict[str, Any], rules: dict[str, Rule], where: str) -> None:
    """Unknown names and bad values of `generator.args` as a ConfigError naming the field and what is allowed."""
    unknown = set(args) - set(defaults)
    if unknown:
        raise ConfigError(
            f"{where}: field `generator.args`: unknown {sorted(unknown)}; allowed: {', '.join(defaults)}"
        )
    for name, (accepts, allowed) in rules.items():
        value = args.get(name, defaults[name])
        if not accepts(value):
            raise ConfigError(f"{where}: field `generator.args.{name}`: {value!r}; allowed: {allowed}")


def candidate(
    record: EditRecord,
    before: np.ndarray,
    after: np.ndarray,
    mask: np.ndarray,
    params: dict[str, Any],
    object_mask: np.ndarray | None = None,
    boxes: list[list[float]] | None = None,
    number: int = 0,
) -> EditRecord:
    """A scored candidate. mask: uint8, 255 where the edit may change pixels (all 255 for whole-image edits);
    object_mask: the region the edit is about (default: the mask)."""
    region = mask > 0 if object_mask is None else object_mask
    return replace(
        record,
        candidate=number,
        params={**record.params, **params},
        input_image=before,
        output_image=after,
        mask=mask,
        boxes=boxes or [],
        scores=pixel_scores(before, after, region, mask),
    )


def full_mask(image: np.ndarray) -> np.ndarray:
    """The mask of a whole-image edit: every pixel may change."""
    return np.full(image.shape[:2], 255, np.uint8)
