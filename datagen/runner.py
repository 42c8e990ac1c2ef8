"""Runs: a phase (write, render, or generate = both) over every shard not yet committed, under OUT's lease, and
the summary. One shard's work is datagen/worker.py's; handing shards to workers is datagen/distribute.py's; run.json,
resume planning and failure records are datagen/shards/run.py's.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from datagen.config import RunConfig
from datagen.distribute import DISTRIBUTORS
from datagen.errors import ConfigError, RunStopped
from datagen.lease import Lease, describe
from datagen.progress import Progress, log_event
from datagen.shards import shard_name
from datagen.shards.run import clear_failure, pending_shards, record_failure, start_run
from datagen.shards.tally import RunCounts, SessionCounts


@dataclass
class Summary:
    phase: str
    shards_total: int = 0
    shards_done: int = 0
    shards_skipped: int = 0
    failed: dict[int, str] = field(default_factory=dict)
    counts: RunCounts = field(default_factory=RunCounts)
    """This invocation's shards counted (datagen/shards/tally.py), from their stats as they commit."""
    task: str = ""
    seconds: float = 0.0
    written: Summary | None = None
    """For generate: the summary of its write phase."""
    stalled: int = 0
    """Shard attempts whose worker stalled (actor.stall_seconds) and was replaced: `worker_stalled`."""

    def add(self, stats: dict[str, Any]) -> None:
        self.shards_done += 1
        self.counts.add_stats(stats, self.task)

    @property
    def samples(self) -> int:
        return self.counts.task(self.task).samples

    @property
    def kept(self) -> int:
        return self.counts.task(self.task).kept

    @property
    def errors(self) -> int:
        return self.counts.task(self.task).errors

    @property
    def reasons(self) -> Counter:
        return self.counts.task(self.task).reasons

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
        if self.stalled:
            lines.append(
                f"  worker_stalled: {self.stalled} (a worker finished no shard within actor.stall_seconds; "
                f"it was replaced and the shard retried)"
            )
        if self.failed:
            lines.append(f"  FAILED shards: {len(self.failed)} (tracebacks in {out}/failed/; rerun to retry them)")
            for shard, error in sorted(self.failed.items())[:10]:
                lines.append(f"    {shard:06d}: {error}")
        return lines


def execute_all(
    configs: list[RunConfig],
    phase: str,
    ray_address: str | None = None,
    workers: int | None = None,
    progress: bool = True,
    allow_version_change: bool = False,
    command: str | None = None,
) -> list[Summary]:
    """Run `phase` over every shard not yet committed, for one task or a mixture sharing OUT: 'write', 'render',
    or 'generate' (every task's shards written, then every task's shards rendered, each phase on its own actors,
    which every task shares: the LLM's GPUs are free before the image models load). One summary per task.
    A resume under other versions of the libraries that decide the bytes stops unless `allow_version_change`.
    `command`, the command line that started the run, goes into run.json (the export's dataset card quotes it)."""
    start_run(configs, allow_version_change, command)
    out = configs[0].run.out
    with Lease.acquire(out, holder=" ".join(["datagen", *sys.argv[1:]])) as lease:  # one live writer per OUT
        if lease.took_over and progress:
            log_event("lease_taken_over", out=str(out), previous=describe(lease.took_over))
        if phase != "generate":
            return _execute_phase(configs, phase, ray_address, workers, progress, lease)
        written = _execute_phase(configs, "write", ray_address, workers, progress, lease)
        if workers == 0:
            from datagen.models.vllm_engine import release_engines

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
    summaries = {name: Summary(phase, c.run.num_shards, task=name) for name, c in by_task.items()}
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
                f"{config.run.out}: cannot write shard {shard_name(name, shard)} there "
                f"({result['error'][:300]}). Every shard committed so far is complete and kept, and nothing "
                f"half-written is visible; free space (or fix permissions) and rerun the same command to resume."
            )
        summary.stalled += bool(result.get("stalled"))
        if result["ok"]:
            summary.add(result["stats"])
            clear_failure(config.run.out, name, shard)
        elif not final and attempts <= config.run.max_shard_retries:
            return False
        else:
            summary.failed[shard] = result["error"]
            record_failure(config.run.out, name, phase, shard, result, attempts)
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


# ------------------------------------------------------------------------------------------ command line


def flags(parser: argparse.ArgumentParser) -> None:
    """RunSpec's flags (datagen/flags.py: help and defaults are its field docstrings), then how to run it."""
    from datagen.config import RunSpec
    from datagen.flags import overrides_flag, progress_flag, spec_flags
    from datagen.resolve import RUN_FLAGS
    from datagen.sources import help_text, kinds

    parser.epilog = "Example: datagen generate --task remove --pipeline local --n 200 --out out/remove"
    spec_flags(parser, RunSpec, ["out"])
    parser.add_argument(
        "--task",
        help="task name in tasks/, a task YAML path, 'all' (every task the pipeline runs) or a,b,... (omit to resume)",
    )
    parser.add_argument("--tasks", help="a mixture with weights: remove:0.2,add:0.1,... (N is shared by weight)")
    spec_flags(parser, RunSpec, RUN_FLAGS, choices={"source": kinds()}, more={"source": f"Sources: {help_text()}."})
    overrides_flag(parser, "filters.mask_area.min=0.02 (task), pipeline.image_size=512, prompt.verbs=[Remove]")
    parser.add_argument(
        "--curate",
        action="store_true",
        help="first curate --source images or shards --input into OUT/curated (as `datagen curate` does, with the "
        "pipeline's gates), then read the curated set (--source curated)",
    )
    parser.add_argument("--ray-address", help="join this Ray cluster (default: $RAY_ADDRESS, else start a local one)")
    parser.add_argument("--workers", type=int, help="worker actors (default: one per CPU); 0 runs inline without Ray")
    progress_flag(parser)
    parser.add_argument(
        "--allow-version-change",
        action="store_true",
        help="resume a run started under other versions of torch, diffusers, transformers, vLLM, OpenCV, Pillow or "
        "numpy (without it such a resume stops and names them); the shards committed after it say so in their stats",
    )


def curate_first(args: argparse.Namespace) -> None:
    """`generate --curate`: the curate phase into OUT/curated (resumed like the rest of the run), then the run reads
    the curated set."""
    from datagen.curate import curate
    from datagen.sources import kinds

    if args.command == "render":
        raise ConfigError("--curate comes before the instructions: give it to generate or write, not render")
    if not (args.task or args.tasks):
        raise ConfigError(f"--curate needs --task: resuming {args.out} reads the curated set its run.json names")
    if args.source not in kinds(curates=True):
        raise ConfigError(f"--curate reads photos: give --source {' or '.join(kinds(curates=True))} and --input")
    curated = f"{args.out.rstrip('/')}/curated"
    pipeline_overrides = [o[len("pipeline.") :] for o in args.overrides if o.startswith("pipeline.")]
    options = {"pipeline": args.pipeline} if args.pipeline else {}
    funnel = curate(
        args.source,
        args.input,
        curated,
        overrides=pipeline_overrides,
        progress=not args.no_progress,
        workers=args.workers or 0,
        **options,
    )
    dropped = ", ".join(f"{reason} {n}" for reason, n in funnel["dropped"].items()) or "none"
    print(
        f"curated {funnel['inputs']} inputs into {curated}: dropped by the gates {dropped}; near-duplicates "
        f"{funnel['duplicates']}; kept {funnel['kept']}"
    )
    args.source, args.input = "curated", curated


def run(args: argparse.Namespace) -> int:
    from datagen.preflight import require
    from datagen.resolve import configs_from_flags, roles_used

    if args.curate:
        curate_first(args)
    configs = configs_from_flags(args)
    require(configs[0].pipeline, args.command, set().union(*(roles_used(c, args.command) for c in configs)))
    summaries = execute_all(
        configs,
        args.command,
        ray_address=args.ray_address,
        workers=args.workers,
        progress=not args.no_progress,
        allow_version_change=args.allow_version_change,
        command=shlex.join(["datagen", *args.argv]) if getattr(args, "argv", None) else None,
    )
    failed = False
    for config, summary in zip(configs, summaries, strict=True):
        for line in summary.lines(config.task.name, config.run.out):
            print(line)
        failed |= bool(summary.failed or (summary.written and summary.written.failed))
    if len(summaries) > 1 and args.command != "write":
        kept, samples = sum(s.kept for s in summaries), sum(s.samples for s in summaries)
        print(f"all {len(summaries)} tasks: {kept} kept of {samples} attempted")
    sessions = SessionCounts()
    for summary in summaries:
        if summary.counts.sessions:
            sessions.merge(summary.counts.sessions)
    if sessions.sessions and args.command != "write":  # the lines above count turns by their shard's task
        print(
            f"sessions: {sessions.kept} kept of {sessions.sessions} ({sessions.complete} complete), "
            f"{configs[0].run.turns} turns each; each task's lines above count the turns of its shards' sessions, "
            f"the report counts them by their own task"
        )
    if args.command != "render":
        from datagen.sources import describe_unreadable, unreadable_inputs

        for line in describe_unreadable(unreadable_inputs(configs[0].run.source, configs[0].run.input)):
            print(line)
    if args.command != "write":
        out = configs[0].run.out
        print(f"  shards: {out.rstrip('/')}/shards (check them with: datagen verify {out})")
    return 1 if failed else 0
