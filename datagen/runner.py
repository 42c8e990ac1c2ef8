"""Runs: a phase (write, render, or generate = both) over every shard not yet committed, resume planning, run.json
and the summary. One shard's work is datagen/worker.py's; handing shards to workers is datagen/distribute.py's.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from datagen import __version__, shards
from datagen.config import RunConfig
from datagen.distribute import DISTRIBUTORS
from datagen.errors import ConfigError, RunStopped
from datagen.lease import Lease, describe
from datagen.progress import Progress, log_event
from datagen.storage import Folder
from datagen.worker import now


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": sys.version.split()[0], "datagen": __version__}
    for name in ("numpy", "opencv-python-headless", "pillow", "pyarrow", "ray", "webdataset", "torch"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def _fingerprint_view(data: dict) -> dict:
    view = json.loads(json.dumps(data))
    view["run"].pop("out", None)  # a run directory may be moved or mounted elsewhere
    return view


def start_run(configs: list[RunConfig]) -> None:
    """Write OUT/run.json for these tasks (one, or a mixture), or check that an existing one plans the same run."""
    out = Folder(configs[0].run.out)
    out.makedirs()
    resolved = {c.task.name: c.model_dump(mode="json", by_alias=True) for c in configs}
    if out.exists("run.json"):
        previous = read_run(out)
        if set(previous) != set(resolved):
            raise ConfigError(
                f"{out} holds a run of task(s) {', '.join(sorted(previous))}, not {', '.join(sorted(resolved))}; "
                f"resuming would mix two runs. Use another --out, or the original tasks."
            )
        diffs = []
        for task, config in resolved.items():
            diffs += _diff(_fingerprint_view(previous[task]), _fingerprint_view(config), f"{task}.")
        if diffs:
            raise ConfigError(
                f"{out} holds a run with a different configuration ({'; '.join(diffs[:5])}); resuming would mix "
                f"two runs. Use another --out, or the original settings."
            )
        return
    record = {
        "runs": {c.task.name: {"config": resolved[c.task.name], "fingerprint": c.fingerprint()} for c in configs},
        "seed": configs[0].run.seed,
        "versions": versions(),
        "created": now(),
    }
    try:
        out.write_atomic("run.json", json.dumps(record, indent=1, sort_keys=True).encode())
    except (OSError, ValueError) as e:  # a missing bucket, no permission, a full disk
        raise ConfigError(f"{out}: cannot write run.json there ({type(e).__name__}: {e})") from None


def read_run(out: Folder) -> dict[str, dict]:
    """Task name -> resolved configuration, from OUT/run.json."""
    path = out.url("run.json")
    try:
        record = json.loads(out.read_text("run.json"))
        if "config" in record and "runs" not in record:  # a single-task run written before mixtures existed
            return {record["config"]["task"]["name"]: record["config"]}
        return {task: run["config"] for task, run in record["runs"].items()}
    except (OSError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
        raise ConfigError(f"{path}: unreadable ({e}); move it away to start a new run in {out}") from None


def load_runs(out: str) -> list[RunConfig]:
    """The configurations of the run in OUT (resume without --task)."""
    folder = Folder(out)
    path = folder.url("run.json")
    if not folder.exists("run.json"):
        raise ConfigError(f"--task is required: {path} does not exist, so there is no run to resume")
    configs = []
    for task, data in sorted(read_run(folder).items()):
        try:
            config = RunConfig.model_validate(data)
        except Exception as e:
            raise ConfigError(f"{path}: the run of task {task!r} is not a datagen configuration ({e})") from None
        config.run.out = out
        configs.append(config)
    return configs


def split_n(n: int, weights: dict[str, float]) -> dict[str, int]:
    """N samples shared by weight, largest remainders first, so the parts add up to N exactly."""
    total = sum(weights.values())
    exact = {task: n * w / total for task, w in weights.items()}
    parts = {task: int(value) for task, value in exact.items()}
    for task in sorted(exact, key=lambda t: (parts[t] - exact[t], t))[: n - sum(parts.values())]:
        parts[task] += 1
    return parts


def _diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new)):
            out += _diff(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} -> {new!r}"]


@dataclass
class Summary:
    phase: str
    shards_total: int = 0
    shards_done: int = 0
    shards_skipped: int = 0
    failed: dict[int, str] = field(default_factory=dict)
    samples: int = 0
    kept: int = 0
    errors: int = 0
    reasons: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    written: Summary | None = None
    """For generate: the summary of its write phase."""

    def add(self, stats: dict[str, Any]) -> None:
        self.shards_done += 1
        if stats.get("phase") == "render":
            self.samples += stats["samples"]
            self.kept += stats["kept"]
            self.errors += stats["errors"]
        else:
            self.samples += stats["records"]
        self.reasons.update(stats["reasons"])

    def lines(self, task: str, out: str) -> list[str]:
        rate = self.samples / self.seconds if self.seconds else 0.0
        head = (
            f"{task} {self.phase}: {self.shards_done}/{self.shards_total} shards done "
            f"({self.shards_skipped} already committed)"
        )
        lines = self.written.lines(task, out) if self.written else []
        lines.append(head)
        if self.phase == "write":
            lines.append(f"  instructions: {self.samples} records, {sum(self.reasons.values())} rejected")
        else:
            pct = 100.0 * self.kept / self.samples if self.samples else 0.0
            lines.append(f"  samples: {self.kept} kept of {self.samples} attempted ({pct:.1f}%), {self.errors} errors")
        if self.reasons:
            lines.append("  rejected by reason: " + ", ".join(f"{k} {v}" for k, v in self.reasons.most_common()))
        lines.append(f"  {rate:.1f} samples/s over {self.seconds:.1f} s (this invocation)")
        if self.failed:
            lines.append(f"  FAILED shards: {len(self.failed)} (tracebacks in {out}/failed/; rerun to retry them)")
            for shard, error in sorted(self.failed.items())[:10]:
                lines.append(f"    {shard:06d}: {error}")
        return lines


def pending_shards(config: RunConfig, phase: str) -> list[int]:
    """Shards whose last phase is not committed yet (resume planning). One streaming pass over the folder's names
    into a bitmap of the run's shards: a million committed shards plan in about a second in a few MB."""
    run, task = config.run, config.task
    folder = Folder(run.out).sub("texts" if phase == "write" else "shards")
    done = bytearray(run.num_shards)
    prefix, suffix = f"{task.name}-", ".stats.json"
    for name in folder.iter_names(prefix):
        number = name[len(prefix) : -len(suffix)]
        if name.endswith(suffix) and number.isdigit() and int(number) < run.num_shards:
            done[int(number)] = 1
    return [i for i in range(run.num_shards) if not done[i]]


def record_failure(config: RunConfig, phase: str, shard: int, result: dict[str, Any], attempts: int) -> None:
    body = {
        "phase": phase,
        "shard": shard,
        "attempts": attempts,
        "error": result.get("error"),
        "traceback": result.get("traceback"),
    }
    failed = Folder(config.run.out).sub("failed")
    failed.write_atomic(f"{shards.shard_name(config.task.name, shard)}.json", json.dumps(body, indent=1).encode())


def clear_failure(config: RunConfig, shard: int) -> None:
    Folder(config.run.out).sub("failed").remove(f"{shards.shard_name(config.task.name, shard)}.json")


def execute_all(
    configs: list[RunConfig],
    phase: str,
    ray_address: str | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> list[Summary]:
    """Run `phase` over every shard not yet committed, for one task or a mixture sharing OUT: 'write', 'render',
    or 'generate' (every task's shards written, then every task's shards rendered, each phase on its own actors,
    which every task shares: the LLM's GPUs are free before the image models load). One summary per task."""
    start_run(configs)
    out = configs[0].run.out
    with Lease.acquire(out, holder=" ".join(["datagen", *sys.argv[1:]])) as lease:  # one live writer per OUT
        if lease.took_over and progress:
            log_event("lease_taken_over", out=str(out), previous=describe(lease.took_over))
        if phase != "generate":
            return _execute_phase(configs, phase, ray_address, workers, progress, lease)
        written = _execute_phase(configs, "write", ray_address, workers, progress, lease)
        if workers == 0:
            from datagen.writer import release_engines

            release_engines("cuda")  # the LLM's GPU memory goes back before the image models load in this process
        rendered = _execute_phase(
            configs,
            "render",
            ray_address,
            workers,
            progress,
            lease,
            skip={(c.task.name, s) for c, w in zip(configs, written, strict=True) for s in w.failed},
        )
    for summary, write in zip(rendered, written, strict=True):
        summary.written = write
    return rendered


def execute(
    config: RunConfig, phase: str, ray_address: str | None = None, workers: int | None = None, progress: bool = True
) -> Summary:
    """One task's run (see execute_all)."""
    return execute_all([config], phase, ray_address, workers, progress)[0]


def _execute_phase(
    configs: list[RunConfig],
    phase: str,
    ray_address: str | None,
    workers: int | None,
    progress: bool,
    lease: Lease,
    skip: set[tuple[str, int]] = frozenset(),
) -> list[Summary]:
    by_task = {c.task.name: c for c in configs}
    summaries = {name: Summary(phase=phase, shards_total=c.run.num_shards) for name, c in by_task.items()}
    todo = []
    for name, config in by_task.items():
        pending = [s for s in pending_shards(config, phase) if (name, s) not in skip]
        summaries[name].shards_skipped = config.run.num_shards - len(pending) - sum(1 for t, _ in skip if t == name)
        todo += [(name, s) for s in pending]
    started = time.perf_counter()
    label = configs[0].task.name if len(configs) == 1 else f"{len(configs)} tasks"
    bar = Progress(len(todo), f"{label} {phase}", unit="shard", enabled=progress)

    def on_result(item: tuple[str, int], result: dict[str, Any], attempts: int, final: bool = False) -> bool:
        """Returns True when the shard is finished (committed or given up); `final` gives it up without retry."""
        name, shard = item
        config, summary = by_task[name], summaries[name]
        lease.check()  # another writer took OUT over (this driver stalled past the lease's ttl): stop here
        if result.get("lease_lost"):
            raise RunStopped(f"{config.run.out}: {result['error'][:500]}")
        if result.get("storage"):
            if progress:
                log_event("run_stopped", task=name, shard=shard, phase=phase, error=result["error"])
            raise RunStopped(
                f"{config.run.out}: cannot write shard {shards.shard_name(name, shard)} there "
                f"({result['error'][:300]}). Every shard committed so far is complete and kept, and nothing "
                f"half-written is visible; free space (or fix permissions) and rerun the same command to resume."
            )
        if result["ok"]:
            summary.add(result["stats"])
            clear_failure(config, shard)
        elif not final and attempts <= config.run.max_shard_retries:
            return False
        else:
            summary.failed[shard] = result["error"]
            record_failure(config, phase, shard, result, attempts)
            if progress:
                log_event(
                    "shard_failed", task=name, shard=shard, phase=phase, attempts=attempts, error=result["error"]
                )
        elapsed = time.perf_counter() - started
        done = sum(s.samples for s in summaries.values())
        counts = {"kept": sum(s.kept for s in summaries.values())} if phase != "write" else {}
        bar.update(1, samples=done, **counts, samples_per_s=round(done / max(elapsed, 1e-9), 1))
        return True

    try:
        distribute = DISTRIBUTORS["inline" if workers == 0 else "ray"]
        distribute(configs, phase, todo, on_result, ray_address, workers, lease.token)
    finally:
        bar.close()
    seconds = time.perf_counter() - started
    for summary in summaries.values():
        summary.seconds = seconds
    return [summaries[c.task.name] for c in configs]
