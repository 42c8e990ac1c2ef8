"""Known-harmless library messages are dropped unless verbose; everything else still gets through. The end-to-end
check (a tiny judge on vLLM, which printed one `torch.set_num_threads` warning per request) is in
tests/test_bench.py's judge test; here the filter meets real records on the loggers vLLM uses."""

from __future__ import annotations

import logging
import warnings

import pytest

from datagen import quiet as quiet_module
from datagen.cli import main
from datagen.quiet import HARMLESS, VERBOSE, DropHarmless, is_harmless, quiet

NUM_THREADS = "CPU backend doesn't allow to use `torch.set_num_threads` after the thread binding, skip it."
"""The text vLLM's CPU worker logs (vllm/v1/worker/cpu_worker.py), word for word."""


class Kept(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def vllm_loggers(monkeypatch):
    """vLLM's loggers with a handler that keeps what reaches it; their filters put back afterwards."""
    monkeypatch.delenv(VERBOSE, raising=False)
    kept = Kept()
    loggers = [logging.getLogger(name) for name in dict.fromkeys(entry.logger for entry in HARMLESS)]
    saved = [(logger, list(logger.filters), logger.level) for logger in loggers]
    for logger in loggers:  # as before any quiet(): an engine started earlier in this process calls it
        logger.filters[:] = [f for f in logger.filters if not isinstance(f, DropHarmless)]
        logger.addHandler(kept)
        logger.setLevel(logging.INFO)
    yield kept
    for logger, filters, level in saved:
        logger.removeHandler(kept)
        logger.filters[:] = filters
        logger.setLevel(level)


def test_the_repeated_vllm_warning_is_dropped_and_other_messages_are_not(vllm_loggers):
    cpu_worker = logging.getLogger("vllm.v1.worker.cpu_worker")
    with warnings.catch_warnings():
        quiet()
        quiet()  # twice: one filter, not two
        for _ in range(3):
            cpu_worker.warning(NUM_THREADS)
        cpu_worker.warning("libtcmalloc is not found in LD_PRELOAD.")
        logging.getLogger("vllm.triton_utils.dispatcher").warning(
            "Kernel %s is already registered. Overwriting.", "vllm.v1.sample.rejection_sampler.expand_kernel"
        )
        logging.getLogger("vllm.triton_utils.dispatcher").warning("Kernel %s failed to load.", "expand_kernel")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            quiet()
            warnings.warn("`torch.distributed.reduce_op` is deprecated, please use ReduceOp", FutureWarning, 1)
            warnings.warn("`torch_dtype` is deprecated", FutureWarning, 1)
    assert vllm_loggers.messages == ["libtcmalloc is not found in LD_PRELOAD.", "Kernel expand_kernel failed to load."]
    assert [str(w.message) for w in caught] == ["`torch_dtype` is deprecated"]
    assert sum(isinstance(f, DropHarmless) for f in cpu_worker.filters) == 1


def test_verbose_keeps_every_message(vllm_loggers, monkeypatch):
    monkeypatch.setenv(VERBOSE, "1")
    quiet()
    logging.getLogger("vllm.v1.worker.cpu_worker").warning(NUM_THREADS)
    assert vllm_loggers.messages == [NUM_THREADS]


def test_is_harmless_matches_the_logger_and_the_text():
    def record(name: str, msg: str) -> logging.LogRecord:
        return logging.LogRecord(name, logging.WARNING, __file__, 1, msg, None, None)

    assert is_harmless(record("vllm.v1.worker.cpu_worker", NUM_THREADS))
    assert not is_harmless(record("vllm.v1.worker.gpu_worker", NUM_THREADS)), "another logger's message is its own"
    assert not is_harmless(record("vllm.v1.worker.cpu_worker", "out of memory"))
    assert all(entry.why for entry in HARMLESS) and all(why for *_, why in quiet_module.HARMLESS_WARNINGS)


@pytest.mark.parametrize("argv", [["-v", "tasks"], ["tasks", "--verbose"]])
def test_the_verbose_flag_reaches_the_workers_environment(argv, monkeypatch, capsys):
    monkeypatch.setenv(VERBOSE, "0")
    assert main(argv) == 0
    assert quiet_module.verbose(), "set in the environment, which Ray workers and engines inherit"
