"""What every generator kind shares: the batched interface, typed arguments and the one-candidate result."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
from pydantic import ConfigDict

from datagen.arguments import Arguments, parse_arguments
from datagen.errors import is_out_of_memory
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


class GeneratorArgs(Arguments):
    """A generator kind's `generator.args`: each kind declares its own as a subclass, `Args`, on its class.

    Strict: a number is not read from a string, nor an integer from a boolean (YAML's `yes` is one).
    """

    model_config = ConfigDict(strict=True)

    @classmethod
    def parse(cls, args: dict[str, Any], where: str = "task file") -> GeneratorArgs:
        """`args` checked against the fields; a ConfigError names `generator.args.NAME` in the file `where`."""
        return parse_arguments(cls, args, "generator.args", "generator", where)


@runtime_checkable
class Generator(Protocol):
    """A generator kind: a micro-batch of samples in, each sample's candidates (or the reason it has none) out.

    `Args` declares its task-file arguments; it is constructed with them parsed (kept as `args`) and with the built
    model roles (`roles_for(args)` names the roles it needs with those arguments; `roles`, the ones it uses).
    `render` times its stages on `clock` and calls each role once per stage with every item of the micro-batch.
    A CUDA out-of-memory error must propagate: the caller halves the micro-batch and tries again.
    A kind whose pair does not start from the image it is given (on some sources) declares a classmethod
    `follows_edits(args, source) -> bool`: False keeps it off the later turns of sessions (datagen/sessions.py).
    """

    Args: ClassVar[type[GeneratorArgs]]
    args: GeneratorArgs
    roles: tuple[str, ...]

    def __init__(self, args: GeneratorArgs, models: Mapping[str, Any]) -> None: ...

    @classmethod
    def roles_for(cls, args: GeneratorArgs) -> tuple[str, ...]: ...

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


class Classical(PerSample):
    """A per-sample generator that needs no model role (classical operators): no roles, its arguments kept."""

    roles: tuple[str, ...] = ()

    @classmethod
    def roles_for(cls, args: GeneratorArgs) -> tuple[str, ...]:
        return cls.roles

    def __init__(self, args: GeneratorArgs, models: Mapping[str, Any]):
        self.args = args


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
        width=before.shape[1],
        height=before.shape[0],
        scores=pixel_scores(before, after, region, mask),
    )


def full_mask(image: np.ndarray) -> np.ndarray:
    """The mask of a whole-image edit: every pixel may change."""
    return np.full(image.shape[:2], 255, np.uint8)
