"""One shard of sessions in a worker (datagen/sessions.py says what a session is): the first turn of each session
written from the run's source (`first_turns`), then turn by turn, every session's turn rendered, scored and gated
(each task's in its own micro-batches) and the next turn written from the kept output (`SessionRender`); at the end
the sessions' verdicts, and the kept and rejected candidates encoded into the shard's tars in session and turn order.

A session is kept or dropped whole, so the kept turns' images stay in memory until the shard's last turn is
decided: about shard_size x turns x 3 images (at 1 MP, 100 sessions of 3 turns hold some 2.7 GB; with
pipeline.keep_rejected, their rendered siblings too). A smaller --shard-size bounds it.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from datagen.record import EditRecord, InstructionRecord, new_instruction, sample_key, sample_seed
from datagen.render import ShardRender
from datagen.sessions import TURN_SOURCE, plan, turn_key, turn_seed
from datagen.sources import LoadedInput, Source, SourceItem

if TYPE_CHECKING:
    from datagen.config import RunConfig
    from datagen.shards import TarShardWriter


@runtime_checkable
class Worker(Protocol):
    """What a session shard needs of the worker of each task in the process — datagen.worker.ShardWorker keeps it
    (tests/test_sessions.py checks): the task's run configuration, its models and source, its writer, the workers of
    the run's other tasks, and the two write steps a later turn reuses. Declared here, so the dependency runs one
    way: the worker imports this module, never the reverse."""

    config: RunConfig
    siblings: Mapping[str, Worker]
    """Task -> the worker of each task of the run in this process (this one's too)."""

    @property
    def models(self) -> Any:
        """Role -> its adapter, built on first use (datagen.worker.ModelSet)."""
        ...

    @property
    def source(self) -> Source:
        """The run's input source."""
        ...

    @property
    def writer(self) -> Any:
        """The task's instruction writer: an llm role adapter (its `model_id` is recorded)."""
        ...

    def write_records(self, texts: list[InstructionRecord]) -> None:
        """Fill in new instruction records from the run's source, in one batched writer call."""
        ...

    def write_items(self, texts: list[InstructionRecord], items: dict[int, SourceItem]) -> None:
        """Write the edits of these records from the given source items, in one batched writer call."""
        ...


def first_turns(worker: Worker, shard: int) -> list[InstructionRecord]:
    """Phase 1 of a sessions shard: the first turn of each of its sessions, each written by its own task's writer
    from the run's source (one batched call per task)."""
    run, anchor = worker.config.run, worker.config.task.name
    configs = {name: sibling.config for name, sibling in worker.siblings.items()}
    texts = []
    for index in range(run.shard_len(shard)):
        session = sample_key(anchor, shard, index)
        first = plan(configs, anchor, sample_seed(run.seed, anchor, shard, index), run.turns)[0]
        key = turn_key(session, 1)
        text = new_instruction(first, shard, index, turn_seed(run.seed, key), "")
        text.update(key=key, session=session, writer=worker.siblings[first].writer.model_id)
        texts.append(text)
    for name in sorted({t["task"] for t in texts}):
        worker.siblings[name].write_records([t for t in texts if t["task"] == name])
    return texts


@dataclass
class State:
    """One image of a session and what holds in it: the object masks the source or the edits gave, the objects the
    next turn's writer may name, its caption."""

    image: np.ndarray
    masks: dict[str, np.ndarray]
    objects: list[str]
    caption: str


class ChainSource:
    """The run's source for first turns; a later turn's input from memory: the previous turn's kept output, with
    the object masks that still hold in it."""

    def __init__(self, source):
        self.source = source
        self.outputs: dict[str, LoadedInput] = {}
        """Kept key -> what the turn after it starts from."""

    def load(self, ref: dict[str, Any], max_pixels: int) -> LoadedInput:
        if ref.get("kind") == TURN_SOURCE:
            kept = self.outputs[ref["previous"]]
            return LoadedInput(image=kept.image.copy(), masks=dict(kept.masks), history=list(kept.history or []))
        return self.source.load(ref, max_pixels)


class SessionRender:
    """A sessions shard's render (the interface of render.ShardRender): every turn of every session, turn by turn,
    each turn batched by task; `run` returns every candidate record, session by session, turn by turn."""

    def __init__(self, worker: Worker):
        self.worker = worker
        self.run_spec = worker.config.run
        self.chain = ChainSource(worker.source)
        self.renders: dict[str, ShardRender] = {}
        self.loaded: dict[str, LoadedInput] = {}
        """Key -> the input a first turn was rendered from (its object masks carry to the turns after it)."""
        self.states: dict[str, list[State]] = {}
        """Session -> its images so far, its input first, each with what holds in it."""
        self.counts: dict[str, Any] = {}

    def _render_of(self, task: str) -> ShardRender:
        if task not in self.renders:
            sibling = self.worker.siblings[task]
            render = ShardRender(sibling.config, sibling.models, self.chain)
            if self.renders:  # one clock for the shard
                render.clock = next(iter(self.renders.values())).clock
            self.renders[task] = render
        return self.renders[task]

    def run(self, texts, tar: TarShardWriter, rejected: TarShardWriter | None = None) -> list[EditRecord]:
        turns, configs = self.run_spec.turns, {n: s.config for n, s in self.worker.siblings.items()}
        anchor = self.worker.config.task.name
        current = list(texts)
        plans = {
            t["session"]: plan(configs, anchor, sample_seed(self.run_spec.seed, anchor, t["shard"], t["index"]), turns)
            for t in current
        }
        done: dict[str, list[list[EditRecord]]] = {t["session"]: [] for t in current}
        for turn in range(1, turns + 1):
            following = []
            for text, candidates in zip(current, self._render_turn(current, rejected is not None), strict=True):
                done[text["session"]].append(candidates)
                kept = next((c for c in candidates if c.selected), None)
                if kept is not None and turn < turns:
                    following.append(self._next(text, kept, plans[text["session"]][turn]))
            current = self._write_turn(following)
        records = self._verdicts(done)
        with ThreadPoolExecutor(self.worker.config.pipeline.actor.io_threads, thread_name_prefix="datagen-io") as pool:
            into = [tar if r.selected else rejected if r.output_image is not None else None for r in records]
            encoded = [pool.submit(t.encode, r) if t is not None else None for r, t in zip(records, into, strict=True)]
            for record, target, members in zip(records, into, encoded, strict=True):
                if target is not None:
                    target.add_members(record.key, members.result())
                record.input_image = record.output_image = record.mask = None
        return records

    def stats(self) -> dict[str, Any]:
        renders = list(self.renders.values())
        first = renders[0].stats() if renders else {"stages": {}, "timings": {}}
        return {
            "micro_batch": self.worker.config.pipeline.micro_batch,
            "micro_batches": sum(r.micro_batches for r in renders),
            "oom_backoff": sum(r.oom_backoff for r in renders),
            "stages": first["stages"],
            "timings": first["timings"],
            "sessions": self.counts,
        }

    # ---------------------------------------------------------------------------------------------- one turn

    def _render_turn(self, texts: list[InstructionRecord], keep_rejected: bool) -> list[list[EditRecord]]:
        """Each record's candidates, scored and gated; those of each task in that task's micro-batches."""
        out: list[list[EditRecord] | None] = [None] * len(texts)
        for task in sorted({t["task"] for t in texts}):
            render = self._render_of(task)
            positions = [n for n, t in enumerate(texts) if t["task"] == task]
            size = render.config.pipeline.micro_batch
            for start in range(0, len(positions), size):
                chunk = positions[start : start + size]
                batch = [(texts[n], functools.partial(self._load, render, texts[n])) for n in chunk]
                for n, candidates in zip(chunk, render.render_batch(batch), strict=True):
                    out[n] = self._checked(texts[n], candidates, keep_rejected)
        return out

    def _load(self, render: ShardRender, text: InstructionRecord) -> LoadedInput | None:
        loaded = render.load_input(text)
        if loaded is not None and text["turn"] == 1:
            self.loaded[text["key"]] = loaded
        return loaded

    def _checked(self, text: InstructionRecord, candidates: list[EditRecord], keep: bool) -> list[EditRecord]:
        """A later turn's candidate whose pair does not start from the previous turn's output breaks the chain:
        rejected as input_changed. Pixels that no tar takes are let go."""
        given = self.chain.outputs.get(text["previous"]) if text["turn"] > 1 else None
        for candidate in candidates:
            if given is not None and candidate.input_image is not None:
                if not np.array_equal(candidate.input_image, given.image):
                    candidate.reject("input_changed", "the pair's input is not the previous turn's output")
            if not candidate.selected and not keep:
                candidate.input_image = candidate.output_image = candidate.mask = None
        return candidates

    def _source_objects(self, text: InstructionRecord) -> list[str]:
        """The objects the source names in a first turn's input."""
        if text["status"] != "ok" or not text["source"]:
            return []
        try:
            return list(self.worker.source.item(text["source"]).objects)
        except Exception:  # noqa: BLE001  the first turn's own render says what is wrong with its input
            return []

    def _next(self, text: InstructionRecord, kept: EditRecord, task: str) -> tuple:
        """The next turn's new record and its writer's input, from this turn's kept candidate; the session's images
        so far (with the object masks and names that hold in each, and its caption) are kept for it."""
        session, turn = text["session"], text["turn"] + 1
        states = self.states.setdefault(session, [])
        if not states:  # the session's input, as the first turn's pair has it
            loaded = self.loaded.pop(text["key"], None)
            masks = dict(loaded.masks) if loaded is not None else {}
            states.append(State(kept.input_image, masks, self._source_objects(text), kept.input_caption))
        states.append(self._after(text, kept, states))
        now = states[-1]
        history = [state.image for state in states]
        self.chain.outputs[kept.key] = LoadedInput(image=now.image, masks=now.masks, history=history)
        key = turn_key(session, turn)
        sibling = self.worker.siblings[task]
        new = new_instruction(task, text["shard"], text["index"], turn_seed(self.run_spec.seed, key), "")
        source = {"kind": TURN_SOURCE, "previous": kept.key}
        new.update(
            key=key, session=session, turn=turn, previous=kept.key, source=source, writer=sibling.writer.model_id
        )
        captions = [
            None if k < len(states) - 1 and np.array_equal(state.image, now.image) else state.caption
            for k, state in enumerate(states)
        ]
        item = SourceItem(
            ref=source, caption=now.caption, objects=list(now.objects), image=now.image, history=captions
        )
        return new, item

    def _after(self, text: InstructionRecord, kept: EditRecord, states: list[State]) -> State:
        """What holds in a kept turn's output: a backtracking turn's is the earlier image's; else the objects the
        task's file says its edit removes or replaces are updated (datagen/config.py: SessionRule.objects)."""
        config = self.worker.siblings[text["task"]].config
        if config.generator.kind == "backtrack":
            back = states[int(kept.params["back_to"])]
            return State(kept.output_image, dict(back.masks), list(back.objects), back.caption)
        before = states[-1]
        names, masks = list(before.objects), dict(before.masks)
        rule = config.task.session.objects
        if rule in ("remove", "replace"):
            names = [name for name in names if name not in kept.objects]
            for name in kept.objects:
                masks.pop(name, None)
        if rule == "replace" and kept.params.get("new_object"):
            new = str(kept.params["new_object"])
            names.append(new)
            if kept.mask is not None:
                masks[new] = kept.mask > 127
        return State(kept.output_image, masks, names, kept.output_caption or before.caption)

    def _write_turn(self, following: list[tuple[InstructionRecord, SourceItem]]) -> list[InstructionRecord]:
        """The next turn's records written, each task's in one batched call of its writer; in session order."""
        texts = [text for text, _ in following]
        for task in sorted({t["task"] for t in texts}):
            sibling = self.worker.siblings[task]
            field = f"{sibling.config.prompt.caption_role}_caption"
            group = [(text, item) for text, item in following if text["task"] == task]
            for text, item in group:
                text[field] = text["source_caption"] = item.caption
            sibling.write_items([text for text, _ in group], {n: item for n, (_, item) in enumerate(group)})
        return texts

    # ---------------------------------------------------------------------------------------------- verdicts

    def _verdicts(self, done: dict[str, list[list[EditRecord]]]) -> list[EditRecord]:
        """Whole sessions kept (or their passing prefix, with keep_prefix); the kept turns of a dropped session
        rejected as session_dropped, naming the turn that failed and why. Counts for the stats."""
        turns = self.run_spec.turns
        dropped_at: Counter = Counter()
        kept_turns: Counter = Counter()
        complete = kept_sessions = 0
        records = []
        for candidates_by_turn in done.values():
            passed = 0
            for candidates in candidates_by_turn:
                if not any(c.selected for c in candidates):
                    break
                passed += 1
            if passed == turns:
                complete += 1
            else:
                dropped_at[str(passed + 1)] += 1
                failing = candidates_by_turn[passed]
                reason = next((c.reason for c in failing if c.reason), "rejected")
                task = failing[0].task
                if not self.run_spec.keep_prefix:
                    for candidates in candidates_by_turn[:passed]:
                        for candidate in candidates:  # the kept one and those it outranked: the session is gone
                            if candidate.selected or candidate.reason == "outranked":
                                why = f"turn {passed + 1} ({task}) was not kept: {reason}"
                                candidate.reject("session_dropped", why)
            if passed == turns or (self.run_spec.keep_prefix and passed):
                kept_sessions += 1
                kept_turns[str(passed)] += 1
            for candidates in candidates_by_turn:
                records += candidates
        self.counts = {
            "turns": turns,
            "keep_prefix": self.run_spec.keep_prefix,
            "sessions": len(done),
            "complete": complete,
            "kept": kept_sessions,
            "kept_by_length": dict(sorted(kept_turns.items())),
            "dropped_at_turn": dict(sorted(dropped_at.items())),
        }
        return records
