"""The distributors: a phase's shards handed to workers inline (one process, for debugging and benchmarks) or on a
Ray cluster (an actor pool with bounded restarts), behind one signature:

    distribute(configs, phase, todo, on_result, address, workers, lease)

`todo` lists (task, shard) pairs; `on_result(item, result, attempts, final=False)` returns True once the shard is
finished (committed or given up), False to have it retried; `lease` is the token of the driver's lease on OUT,
which every worker checks before it clears leftovers or commits.
"""

from __future__ import annotations

import os
import re
import time
import traceback
from collections import Counter
from typing import Any

from datagen.config import RunConfig
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
) -> None:
    """Every shard in this process, one after the other, with one worker's models."""
    try:
        worker = MixtureWorker(configs, phase, lease)
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
            if on_result(item, worker.run(item[0], phase, item[1]), attempts):
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
) -> None:
    """Shards go only to workers that answered `ready` (their models loaded), two in flight each. A worker that dies
    (its node lost, killed, out of memory) or cannot start is replaced while the budget lasts (actor.max_restarts
    per worker); its shards go back to the queue, each attempt counted. Replacements the cluster cannot place stay
    pending without holding work; when no worker is left and none is starting, the remaining shards fail with the
    last worker's error."""
    if not todo:
        return
    import ray
    from ray.exceptions import RayActorError

    init_ray(address)
    pipeline = configs[0].pipeline
    actor = pipeline.writer_actor if phase == "write" else pipeline.actor
    resources = ray.cluster_resources()
    count = workers or max(1, int(resources.get("CPU", 1.0) // actor.num_cpus))
    if actor.num_gpus > 0:  # actors that cannot be placed would wait forever
        fit = int(resources.get("GPU", 0.0) // actor.num_gpus)
        if fit == 0:
            raise ConfigError(
                f"the {phase} actors need {actor.num_gpus} GPU(s) each and the Ray cluster has "
                f"{resources.get('GPU', 0.0):g}; join a cluster with GPUs (--ray-address) or lower "
                f"{'writer_actor' if phase == 'write' else 'actor'}.num_gpus"
            )
        count = min(count, fit)
    count = min(count, len(todo))
    Remote = ray.remote(num_cpus=actor.num_cpus, num_gpus=actor.num_gpus, max_restarts=0)(MixtureWorker)
    starting: dict[Any, Any] = {}  # ready() ref -> worker not answering yet
    ready: list[Any] = []
    queue = list(reversed(todo))
    attempts: Counter[tuple[str, int]] = Counter()
    in_flight: dict[Any, tuple[tuple[str, int], Any]] = {}
    per_actor: Counter[int] = Counter()
    budget = actor.max_restarts * count
    last_error = ""

    def start() -> None:
        handle = Remote.remote(configs, phase, lease)
        starting[handle.ready.remote()] = handle

    def lose(handle, error: str) -> None:
        nonlocal budget, last_error
        last_error = error
        ray.kill(handle, no_restart=True)
        log_event("worker_lost", phase=phase, error=error, replacements_left=budget)
        if budget > 0:
            budget -= 1
            start()

    def submit(handle) -> None:
        item = queue.pop()
        attempts[item] += 1
        in_flight[handle.run.remote(item[0], phase, item[1])] = (item, handle)
        per_actor[id(handle)] += 1

    for _ in range(count):
        start()
    waited_since = time.monotonic()
    try:
        while queue or in_flight:
            for handle in ready:
                while queue and per_actor[id(handle)] < 2:  # two in flight keeps a worker busy between results
                    submit(handle)
            if not (ready or starting or in_flight):
                restarts = f"{actor.max_restarts} restart(s) per worker"
                error = f"no worker left after {restarts}; the last: {last_error or 'died'}"
                for item in queue:
                    on_result(item, {"ok": False, "error": error}, attempts[item], final=True)
                break
            done, _ = ray.wait([*in_flight, *starting], num_returns=1, timeout=WAITING_NOTE_S)
            if not done:
                if not ready:
                    log_event(
                        "waiting_for_workers", phase=phase, starting=len(starting),
                        seconds=round(time.monotonic() - waited_since), cluster=ray.available_resources(),
                    )  # fmt: skip
                continue
            for ref in done:
                if ref in starting:
                    handle = starting.pop(ref)
                    try:
                        ray.get(ref)
                        ready.append(handle)
                    except RayActorError as e:
                        lose(handle, actor_error(e))
                    continue
                item, handle = in_flight.pop(ref)
                per_actor[id(handle)] -= 1
                try:
                    result = ray.get(ref)
                except RayActorError as e:
                    error = actor_error(e)
                    result = {"ok": False, "error": error, "traceback": _ANSI.sub("", str(e))}
                    if handle in ready:
                        ready.remove(handle)
                        lose(handle, error)
                if not on_result(item, result, attempts[item]):
                    queue.append(item)
    finally:
        for handle in [*ready, *starting.values()]:
            ray.kill(handle, no_restart=True)


DISTRIBUTORS = {"inline": run_inline, "ray": run_ray}
"""`--workers 0` runs inline; otherwise on Ray."""
