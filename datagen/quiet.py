"""Known-harmless library noise, silenced by default: `datagen --verbose` (or DATAGEN_VERBOSE=1) shows it again.

Only messages known to be harmless are listed, each with the reason; everything else a library says still reaches
the terminal. The CLI applies the filters at start, and `datagen/models/vllm_engine.py` before it starts an engine
(Ray workers and library callers start engines outside the CLI's process).

    datagen -v bench render --pipeline tiny      # with vLLM's messages as they are
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass

VERBOSE = "DATAGEN_VERBOSE"
"""Set to 1 (by `datagen --verbose`, or by hand) to keep every library message, in this process and its workers."""


@dataclass(frozen=True)
class Harmless:
    """One library message that says nothing a datagen user can act on."""

    logger: str
    """The `logging` logger that emits it."""
    text: str
    """A part of the message that only it has."""
    why: str
    """Why it is harmless."""


HARMLESS = (
    Harmless(
        "vllm.v1.worker.cpu_worker",
        "`torch.set_num_threads` after the thread binding",
        "vLLM's CPU backend pins its threads, then replaces torch.set_num_threads with a stub that logs this on "
        "every call; vLLM calls it itself around each multimodal request, so a judge on CPU printed one per "
        "candidate (318 for `bench render --pipeline tiny`). Nothing is changed by the call it skips.",
    ),
    Harmless(
        "vllm.triton_utils.dispatcher",
        "is already registered. Overwriting.",
        "a second vLLM engine in one process (the writer, then the judge) registers the same CPU kernels again.",
    ),
)
"""Log messages dropped unless verbose."""

HARMLESS_WARNINGS = (
    (
        FutureWarning,
        r"`torch\.distributed\.reduce_op` is deprecated",
        "vLLM's kernel dispatcher scans every loaded module's attributes and so touches this deprecated alias.",
    ),
)
"""Python warnings dropped unless verbose: (category, message pattern, why it is harmless)."""


def is_harmless(record: logging.LogRecord) -> bool:
    """Whether a log record is one of HARMLESS."""
    return any(record.name == entry.logger and entry.text in record.getMessage() for entry in HARMLESS)


class DropHarmless(logging.Filter):
    """A logger filter that drops HARMLESS records."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not is_harmless(record)


def verbose() -> bool:
    return os.environ.get(VERBOSE, "") not in ("", "0")


def quiet() -> None:
    """Drop HARMLESS messages and HARMLESS_WARNINGS in this process, unless DATAGEN_VERBOSE is set; safe to call
    more than once."""
    if verbose():
        return
    for name in dict.fromkeys(entry.logger for entry in HARMLESS):
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropHarmless) for f in logger.filters):
            logger.addFilter(DropHarmless())
    for category, message, _ in HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
