"""The distributors: a phase's shards handed to workers inline (one process, for debugging and benchmarks) or on a
Ray cluster (an actor pool with bounded restarts), behind one signature:

    distribute(configs, phase, todo, on_result, address, workers, lease, worker=MixtureWorker)

`worker(configs, phase, lease)` is built once per process (inline) or per Ray actor, answers `ready()`, and runs
`run(task, phase, shard)` into a result that never raises (datagen/worker.py's `attempt`): a run's MixtureWorker for
write and render, datagen/curate.py's CurateWorker for the curate map. `todo` lists (task, shard) pairs;
`on_result(item, result, attempts, final=False)` returns True once the shard is finished (committed or given up),
False to have it retried; `lease` is the token of the driver's lease on OUT, which every worker checks before it
clears leftovers or commits.
"""

from __future__ import annotations

import os
import re
import time
import traceback
from collections import Counter
from typing import Any

from datagen.config import ActorSpec, RunConfig
from datagen.errors import ConfigError
from datagen.progress import log_event
from datagen.worker import MixtureWorker


def run_inline(
    configs: list[RunConfig],
    phase: str,
    todo: list[tuple[str, int]],
    on_result,
    address: str | None = None,
    workers: int | None = None,
    lease: str | None = None,
    worker: type = MixtureWorker,
) -> None:
    """Every shard in this process, one after the other, with one worker's models."""
    try:
        built = worker(configs, phase, lease)
    except Exception as e:  # a model that cannot load: every shard fails with the reason, nothing is attempted
        result = {"ok": False, "error": f"worker could not start: {type(e).__name__}: {e}"[:800]}
        result["traceback"] = traceback.format_exc()
        for item in todo:
            on_result(item, result, 0, final=True)
        return
    for item in todo:
        attempts = 0
        while True:
            attempts += 1
            if on_result(item, built.run(item[0], phase, item[1]), attempts):
                break


def init_ray(address: str | None) -> None:
    """Join RAY_ADDRESS / --ray-address, or start an embedded single-machine cluster bound to loopback."""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    common = dict(include_dashboard=False, log_to_driver=False, logging_level="ERROR", configure_logging=True)
    if address:
        ray.init(address=address, **common)
    else:
        ray.init(_node_ip_address="127.0.0.1", **common)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def actor_error(error: Exception) -> str:
    """One line for a dead worker: the exception its constructor raised, or how it died (node lost, killed)."""
    lines = [line.strip() for line in _ANSI.sub("", str(error)).splitlines() if line.strip()]
    if not lines:
        return f"worker died: {type(error).__name__}"
    if "creation task" in lines[0]:  # the constructor raised: its exception is the last line of the traceback
        return f"worker could not start: {lines[-1]}"[:800]
    return f"worker died: {lines[0]}"[:800]


WAITING_NOTE_S = 60.0
"""How often the driver says it is waiting for workers the cluster cannot place yet."""


def run_ray(
    configs: list[RunConfig],
    phase: str,
    todo: list[tuple[str, int]],
    on_result,
    address: str | None,
    workers: int | None,
    lease: str | None = None,
    worker: type = MixtureWorker,
) -> None:
    """Shards go only to workers that answered `ready` (their models loaded), two in flight each. A worker that dies
    (its node lost, killed, out of memory) or cannot start is replaced while the budget lasts (actor.max_restarts
    per worker); its shards go back to the queue, each attempt counted. Replacements the cluster cannot place stay
    pending without holding work; when no worker is left and none is starting, the remaining shards fail with the
    last worker's error."""
    if not todo:
        return
    import ray

    init_ray(address)
    actor = configs[0].pipeline.writer_actor if phase == "write" else configs[0].pipeline.actor
    count = min(worker_count(actor, phase, ray.cluster_resources(), workers), len(todo))
    pool = ActorPool(configs, phase, lease, actor, count, todo, worker)
    try:
        pool.run(on_result)
    finally:
        pool.stop()


def worker_count(actor: ActorSpec, phase: str, resources: dict[str, float], workers: int | None) -> int:
    """How many actors of this phase to start: `workers`, or as many as the cluster's CPUs hold, no more than its
    GPUs hold; a ConfigError when an actor that needs GPUs fits nowhere (it would wait forever)."""
    count = workers or max(1, int(resources.get("CPU", 1.0) // actor.num_cpus))
    if actor.num_gpus > 0:
        fit = int(resources.get("GPU", 0.0) // actor.num_gpus)
        if fit == 0:
            raise ConfigError(
                f"the {phase} actors need {actor.num_gpus} GPU(s) each and the Ray cluster has "
                f"{resources.get('GPU', 0.0):g}; join a cluster with GPUs (--ray-address) or lower "
                f"{'writer_actor' if phase == 'write' else 'actor'}.num_gpus"
            )
        count = min(count, fit)
    return count


IN_FLIGHT = 2
"""Shards in flight per worker: two keep a worker busy between a result and its next shard."""


class ActorPool:
    """The Ray workers of one phase and the shards they hold: which workers are starting and which answered
    `ready`, the queue, what is in flight where, each shard's attempts, and the replacements left."""

    def __init__(
        self,
        configs: list[RunConfig],
        phase: str,
        lease: str | None,
        actor: ActorSpec,
        count: int,
        todo: list[tuple[str, int]],
        worker: type = MixtureWorker,
    ):
        import ray

        self.configs, self.phase, self.lease, self.actor = configs, phase, lease, actor
        self.remote = ray.remote(num_cpus=actor.num_cpus, num_gpus=actor.num_gpus, max_restarts=0)(worker)
        self.starting: dict[Any, Any] = {}
        """ready() ref -> a worker that has not answered yet."""
        self.ready: list[Any] = []
        self.queue = list(reversed(todo))
        """Shards not handed out, the next last."""
        self.attempts: Counter[tuple[str, int]] = Counter()
        self.in_flight: dict[Any, tuple[tuple[str, int], Any]] = {}
        """run() ref -> (shard, the worker running it)."""
        self.per_worker: Counter[int] = Counter()
        self.replacements = actor.max_restarts * count
        self.last_error = ""
        self.busy_since: dict[int, float] = {}
        """id(worker) -> when it started the shard it is on (Ray runs an actor's calls in the order they came)."""
        for _ in range(count):
            self.start()

    def start(self) -> None:
        handle = self.remote.remote(self.configs, self.phase, self.lease)
        self.starting[handle.ready.remote()] = handle

    def lose(self, handle, error: str) -> None:
        """A worker is dead or never started: kill it, and start a replacement while the budget lasts."""
        import ray

        self.last_error = error
        ray.kill(handle, no_restart=True)
        log_event("worker_lost", phase=self.phase, error=error, replacements_left=self.replacements)
        if self.replacements > 0:
            self.replacements -= 1
            self.start()

    def hand_out(self) -> None:
        """Fill every ready worker up to IN_FLIGHT shards from the queue."""
        for handle in self.ready:
            while self.queue and self.per_worker[id(handle)] < IN_FLIGHT:
                if not self.per_worker[id(handle)]:
                    self.busy_since[id(handle)] = time.monotonic()
                item = self.queue.pop()
                self.attempts[item] += 1
                self.in_flight[handle.run.remote(item[0], self.phase, item[1])] = (item, handle)
                self.per_worker[id(handle)] += 1

    def run(self, on_result) -> None:
        """Until every shard is finished: hand out shards, then take the next worker start or result."""
        import ray

        waited_since = time.monotonic()
        while self.queue or self.in_flight:
            self.hand_out()
            if not (self.ready or self.starting or self.in_flight):
                self.fail_the_rest(on_result)
                return
            done, _ = ray.wait([*self.in_flight, *self.starting], num_returns=1, timeout=self.wait_seconds())
            self.replace_stalled(on_result)
            if not done and not self.ready:
                log_event(
                    "waiting_for_workers",
                    phase=self.phase,
                    starting=len(self.starting),
                    seconds=round(time.monotonic() - waited_since),
                    cluster=ray.available_resources(),
                )
            for ref in done:
                if ref not in self.starting and ref not in self.in_flight:
                    continue  # a stalled worker's shard, already given back
                if ref in self.starting:
                    self.started(ref)
                else:
                    self.finished(ref, on_result)

    def started(self, ref) -> None:
        """A worker answered `ready` (its models loaded), or its constructor raised."""
        import ray
        from ray.exceptions import RayActorError

        handle = self.starting.pop(ref)
        try:
            ray.get(ref)
            self.ready.append(handle)
        except RayActorError as e:
            self.lose(handle, actor_error(e))

    def finished(self, ref, on_result) -> None:
        """A shard's result, or its worker's death as the result; the shard goes back to the queue unless
        `on_result` says it is finished."""
        import ray
        from ray.exceptions import RayActorError

        item, handle = self.in_flight.pop(ref)
        self.per_worker[id(handle)] -= 1
        self.busy_since[id(handle)] = time.monotonic()  # its next shard, if it holds one, starts now
        try:
            result = ray.get(ref)
        except RayActorError as e:
            error = actor_error(e)
            result = {"ok": False, "error": error, "traceback": _ANSI.sub("", str(e))}
            if handle in self.ready:
                self.ready.remove(handle)
                self.lose(handle, error)
        if not on_result(item, result, self.attempts[item]):
            self.queue.append(item)

    def wait_seconds(self) -> float:
        """How long to wait for the next result: until the earliest a busy worker could be said to have stalled."""
        stall = self.actor.stall_seconds
        busy = [self.busy_since[id(h)] for _, h in self.in_flight.values() if id(h) in self.busy_since]
        if not stall or not busy:
            return WAITING_NOTE_S
        return max(0.05, min(WAITING_NOTE_S, min(busy) + stall - time.monotonic()))

    def replace_stalled(self, on_result) -> None:
        """Kill and replace each worker that has finished no shard within actor.stall_seconds of starting one: the
        shard it was on is a failed attempt (`worker_stalled`), retried while its retries last; the one waiting
        behind it goes back to the queue unattempted."""
        stall = self.actor.stall_seconds
        if not stall:
            return
        now = time.monotonic()
        for handle in list(self.ready):
            started = self.busy_since.get(id(handle))
            if not self.per_worker[id(handle)] or started is None or now - started < stall:
                continue
            held = [(ref, item) for ref, (item, h) in self.in_flight.items() if h is handle]
            error = f"worker_stalled: no shard finished in {stall:g} s (actor.stall_seconds); the worker was replaced"
            self.ready.remove(handle)
            self.lose(handle, error)
            log_event("worker_stalled", phase=self.phase, shard=f"{held[0][1][0]}-{held[0][1][1]:06d}", seconds=stall)
            for position, (ref, item) in enumerate(held):
                del self.in_flight[ref]
                self.per_worker[id(handle)] -= 1
                if position:  # never started: not an attempt
                    self.attempts[item] -= 1
                    self.queue.append(item)
                elif not on_result(item, {"ok": False, "error": error, "stalled": True}, self.attempts[item]):
                    self.queue.append(item)

    def fail_the_rest(self, on_result) -> None:
        """No worker is left and none is starting: every queued shard fails with the last worker's error."""
        restarts = f"{self.actor.max_restarts} restart(s) per worker"
        error = f"no worker left after {restarts}; the last: {self.last_error or 'died'}"
        for item in self.queue:
            on_result(item, {"ok": False, "error": error}, self.attempts[item], final=True)

    def stop(self) -> None:
        import ray

        for handle in [*self.ready, *self.starting.values()]:
            ray.kill(handle, no_restart=True)


DISTRIBUTORS = {"inline": run_inline, "ray": run_ray}
"""`--workers 0` runs inline; otherwise on Ray."""
