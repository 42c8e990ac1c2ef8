"""The staged, batched render of one shard.

A shard's instruction records go through in micro-batches (`pipeline.micro_batch` samples), stage by stage: load
inputs (threads, ahead of time) -> text-to-image (text-only sources, each in a bucket drawn from its seed) -> the
generator's stages (e.g. ground -> segment -> generate, each one call of its role for the whole micro-batch) ->
score (embedders, detector gate) -> gates and ranking -> encode (threads, overlapping the next micro-batch's model
work) and write, in order. Every item keeps its own seed, so a sample becomes the same pair whatever its batch
neighbours. With pipeline.keep_rejected the rendered candidates that were not kept are encoded the same way, into
the shard's rejected tar.

A micro-batch that fails as a whole (a CUDA out-of-memory error, or one sample breaking a batched call) is halved
and tried again, down to single samples: an out-of-memory error is counted as `oom_backoff`, and a sample that
fails alone becomes a record with its reason, as one broken sample costs one sample and never the shard.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

import numpy as np

from datagen import filters, generators
from datagen.config import RunConfig
from datagen.errors import Reject, is_out_of_memory
from datagen.generators.base import Sample
from datagen.images import draw_bucket
from datagen.record import EditRecord, InstructionRecord
from datagen.resolve import roles_used
from datagen.shards import TarShardWriter
from datagen.sources import LoadedInput
from datagen.stages import StageClock

Live = tuple[EditRecord, LoadedInput, InstructionRecord]
"""A sample that reached the models: its record, its loaded input, its instruction record."""


class ShardRender:
    """One shard's render with a worker's models; `run(texts, tar, rejected)` returns every candidate record."""

    def __init__(self, config: RunConfig, models, source):
        self.config, self.models, self.source = config, models, source
        spec = config.generator
        self.generator = generators.build(spec.kind, spec.args, models)
        self.draws_input = bool(getattr(self.generator, "draws_input", False))
        self.used = {role: models[role].model_id for role in _recorded(config, models)}
        """Role -> model id of every model that made or scored a candidate: each record's `models`."""
        self.clock = StageClock(models.built)
        self.micro_batches = 0
        self.oom_backoff = 0

    def run(
        self, texts: Iterable[InstructionRecord], tar: TarShardWriter, rejected: TarShardWriter | None = None
    ) -> list[EditRecord]:
        """Render every instruction record; kept pairs go into `tar`, and the rendered candidates that were not kept
        into `rejected` where one is given (pipeline.keep_rejected)."""
        pipe = self.config.pipeline
        size = pipe.micro_batch
        records: list[EditRecord] = []
        with ThreadPoolExecutor(pipe.actor.io_threads, thread_name_prefix="datagen-io") as pool:
            writing: deque = deque()  # the previous micro-batch's pairs, encoding on the pool, in order
            batch: list = []
            for item in prefetched(texts, self.load_input, pipe.actor.prefetch * size, pool):
                batch.append(item)
                if len(batch) == size:
                    records += self._render_and_queue(batch, writing, (tar, rejected), pool)
                    batch = []
            if batch:
                records += self._render_and_queue(batch, writing, (tar, rejected), pool)
            self._write(writing)
        return records

    def stats(self) -> dict[str, Any]:
        """What the shard's stats say about the render: micro-batches, back-offs, each stage's time and model calls."""
        return {
            "micro_batch": self.config.pipeline.micro_batch,
            "micro_batches": self.micro_batches,
            "oom_backoff": self.oom_backoff,
            "stages": self.clock.stats(),
            "timings": {name: round(s, 4) for name, s in sorted(self.clock.seconds.items())},
        }

    # ------------------------------------------------------------------------------------------------ stages

    def load_input(self, text: InstructionRecord) -> LoadedInput | None:
        """A sample's input from the source (None for a rejected record, or where the generator draws its own)."""
        if text["status"] != "ok" or self.draws_input:  # e.g. prompt-to-prompt draws both images itself
            return None
        return self.source.load(text["source"] or {}, self.config.run.max_image_pixels)

    def _render_and_queue(
        self, batch: list, writing: deque, tars: tuple[TarShardWriter, TarShardWriter | None], pool: Executor
    ) -> list:
        """Render a micro-batch, write the previous one's pairs, queue this one's for encoding; `tars`: (the kept
        tar, the rejected tar or None)."""
        tar, rejected = tars
        candidates = self.render_batch(batch)
        self._write(writing)  # the previous micro-batch's pairs were encoding while this one rendered
        out = []
        for records in candidates:
            for record in records:
                # kept -> the tar; rendered but not kept -> the rejected tar, if the run keeps them; else nowhere
                into = tar if record.selected else rejected if record.output_image is not None else None
                if into is not None:
                    writing.append((record, into, pool.submit(into.encode, record)))
                else:
                    record.input_image = record.output_image = record.mask = None  # memory stays flat
            out += records
        return out

    def _write(self, writing: deque) -> None:
        started = time.perf_counter()
        while writing:
            record, tar, encoded = writing.popleft()
            tar.add_members(record.key, encoded.result())
            record.input_image = record.output_image = record.mask = None
        self.clock.add("encode", time.perf_counter() - started)

    def render_batch(
        self, batch: list[tuple[InstructionRecord, Callable[[], LoadedInput | None]]]
    ) -> list[list[EditRecord]]:
        """Each (instruction record, its input's loader) -> its candidates, scored, gated and ranked."""
        self.micro_batches += 1
        out: list[list[EditRecord] | None] = [None] * len(batch)
        live: list[tuple[int, Live]] = []
        for n, (text, loaded) in enumerate(batch):
            record = EditRecord.from_instruction(text, self.used)
            if text["status"] != "ok":
                out[n] = [record.reject(text["reason"], text["detail"])]
                continue
            try:
                with self.clock.stage("load"):
                    inputs = LoadedInput(image=None) if self.draws_input else loaded()
            except Exception as e:  # an unreadable image, a missing file: this sample only
                out[n] = [failed(record, e)]
                continue
            live.append((n, (record, inputs, text)))
        for (n, _), candidates in zip(live, self._halving([item for _, item in live]), strict=True):
            out[n] = candidates
        return out

    def _halving(self, live: list[Live]) -> list[list[EditRecord]]:
        try:
            return self._stages(live)
        except Exception as e:
            if is_out_of_memory(e):
                self.oom_backoff += 1
                _free_accelerator_memory()
            if len(live) == 1:
                return [[failed(live[0][0], e)]]
            half = (len(live) + 1) // 2
            return self._halving(live[:half]) + self._halving(live[half:])

    def _stages(self, live: list[Live]) -> list[list[EditRecord]]:
        drawn = [(record, inputs, text) for record, inputs, text in live if inputs.image is None]
        buckets = self.config.pipeline.bucket_sizes()
        for record, inputs, _ in drawn:
            inputs.bucket = draw_bucket(record.seed, buckets)
        if drawn and not self.draws_input:  # a text-only source: drawn from the source's own caption
            with self.clock.stage("t2i"):
                images = self.models["t2i"].generate_batch(
                    [text.get("source_caption") or record.input_caption for record, _, text in drawn],
                    [record.seed for record, _, _ in drawn],
                    [inputs.bucket for _, inputs, _ in drawn],
                )  # never a writer-rewritten caption
            for (_, inputs, _), image in zip(drawn, images, strict=True):
                inputs.image = image
        for record, inputs, _ in live:
            if inputs.image is not None:  # a sample that gets no candidate still says what it was made at
                record.height, record.width = inputs.image.shape[:2]
        samples = [Sample(record, inputs, np.random.default_rng([record.seed, 1])) for record, inputs, _ in live]
        outcomes = self.generator.render(samples, self.clock)
        rendered = [o for o in outcomes if not isinstance(o, Exception)]
        with self.clock.stage("score"):
            known = {id(s.inputs.image): s.inputs.found for s in samples if s.inputs.found}
            filters.model_scores(rendered, self.models, known)
        if "reward" in self.models:
            with self.clock.stage("reward"):
                filters.reward_scores(rendered, self.models["reward"])
        unjudged: dict[int, Exception] = {}
        if "judge" in self.models:
            with self.clock.stage("judge"):
                unjudged = filters.judge_scores(rendered, self.models["judge"], self.config.task.group)
        with self.clock.stage("gate"):
            return [
                [failed(sample.record, outcome)] if isinstance(outcome, Exception) else self._gate(outcome, unjudged)
                for sample, outcome in zip(samples, outcomes, strict=True)
            ]

    def _gate(self, candidates: list[EditRecord], unjudged: dict[int, Exception]) -> list[EditRecord]:
        """Each candidate judged by the task's filters; the best passing one kept, the other passing ones outranked.
        A candidate the judge gave no verdict on is rejected with the judge's reason."""
        task = self.config.task
        gates = task.filters if self.config.pipeline.enforce_filters else {}
        passing = []
        for candidate in candidates:
            if id(candidate) in unjudged:
                error = unjudged[id(candidate)]
                candidate.reject(getattr(error, "reason", "judge_failed"), getattr(error, "detail", str(error))[:500])
                continue
            reason = filters.gate(candidate.scores, gates)
            if reason:
                candidate.reject(reason)
            else:
                passing.append(candidate)
        if passing:
            best = max(passing, key=lambda c: (filters.rank_key(c.scores, task.select_by), -c.candidate))
            for candidate in passing:
                if candidate is best:
                    candidate.status, candidate.reason, candidate.selected = "kept", "", True
                else:
                    candidate.reject("outranked", f"candidate {best.candidate} scored better")
        return candidates


def failed(record: EditRecord, error: BaseException) -> EditRecord:
    """The record of a sample that has no candidate: rejected with the reason, or an error."""
    if isinstance(error, Reject):
        return record.reject(error.reason, str(error)[:500])
    record.status, record.reason, record.detail = "error", f"error_{type(error).__name__}", str(error)[:500]
    record.selected = False
    return record


def _free_accelerator_memory() -> None:
    with contextlib.suppress(Exception):
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def prefetched(items: Iterable, load: Callable, ahead: int, pool: Executor | None = None) -> Iterator[tuple]:
    """(item, result) pairs in order, `result()` returning load(item) or raising what it raised. With ahead > 0 the
    next `ahead` items load on the pool's threads (a thread of its own without one) while the caller works."""
    if ahead <= 0:
        for item in items:
            yield item, (lambda item=item: load(item))
        return
    with contextlib.ExitStack() as stack:
        if pool is None:
            pool = stack.enter_context(ThreadPoolExecutor(1, thread_name_prefix="datagen-prefetch"))
        window: deque = deque()
        for item in items:
            window.append((item, pool.submit(load, item)))
            if len(window) > ahead:
                first, future = window.popleft()
                yield first, future.result
        while window:
            first, future = window.popleft()
            yield first, future.result


def _recorded(config: RunConfig, models) -> list[str]:
    """The roles a record names: those of resolve.roles_used that make or score candidates (text-to-image made only
    the input), grounding only where it is a generator role or scores presence (the detector gate)."""
    named = []
    for role, why in roles_used(config, "render").items():
        if why in ("input", "writer", "reader"):
            continue
        if why == "score" and role == "grounding" and not _scores_presence(models[role]):
            continue
        named.append(role)
    return named


def _scores_presence(grounding) -> bool:
    return bool(getattr(grounding, "scores_presence", False))
