"""A run counted: the one place that adds up samples attempted and kept, errors, reasons, turns and sessions, per
task, for the runner's summary (from each shard's stats as it commits), the report (from the manifests it streams)
and the export's dataset card (from the committed shards).

    counts = RunCounts()
    counts.add_stats(stats)        # a committed shard's marker (render: ShardStats, write: WriteStats)
    counts.add_manifest(table)     # or a render shard's manifest rows: each sample under its own task and turn
    counts.tasks["remove"].kept, counts.sessions.kept, counts.turns[2]["kept"]

A shard of multi-turn sessions holds turns of several tasks, and its stats count them under the shard's task; its
manifest names each turn's own task. Readers that want each sample under its own task read the manifests.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

SESSION_COUNTS = ("sessions", "complete", "kept")
"""What a shard of sessions counts (ShardStats.sessions), summed over the run."""


@dataclass
class TaskCounts:
    """One task's counts."""

    shards: int = 0
    samples: int = 0
    """Render: samples attempted; write: instruction records."""
    kept: int = 0
    errors: int = 0
    reasons: Counter = field(default_factory=Counter)
    """Render: why each sample that kept nothing did not (its first candidate's reason); write: records rejected."""
    candidate_reasons: Counter = field(default_factory=Counter)
    """Render: the first failing gate of every candidate rejected."""

    @property
    def rejected(self) -> int:
        return self.samples - self.kept - self.errors


@dataclass
class SessionCounts:
    """A run of multi-turn sessions: its shards' session counts summed."""

    turns: int = 0
    keep_prefix: bool = False
    sessions: int = 0
    complete: int = 0
    kept: int = 0
    dropped_at_turn: Counter = field(default_factory=Counter)

    def add(self, entry: dict[str, Any]) -> None:
        self.turns = int(entry.get("turns", self.turns) or self.turns)
        self.keep_prefix = bool(entry.get("keep_prefix", self.keep_prefix))
        for name in SESSION_COUNTS:
            setattr(self, name, getattr(self, name) + int(entry.get(name, 0)))
        self.dropped_at_turn.update({int(turn): n for turn, n in (entry.get("dropped_at_turn") or {}).items()})

    def merge(self, other: SessionCounts) -> None:
        self.add({**other.as_dict(), "dropped_at_turn": other.dropped_at_turn})

    def as_dict(self) -> dict[str, Any]:
        return {
            "turns": self.turns,
            "keep_prefix": self.keep_prefix,
            **{name: getattr(self, name) for name in SESSION_COUNTS},
            "dropped_at_turn": {turn: self.dropped_at_turn[turn] for turn in sorted(self.dropped_at_turn)},
        }


@dataclass
class RunCounts:
    """A run's (or one phase's) counts: per task, per turn, and its sessions."""

    tasks: dict[str, TaskCounts] = field(default_factory=dict)
    turns: dict[int, Counter] = field(default_factory=dict)
    """Turn -> Counter(attempted, kept) (from manifests)."""
    sessions: SessionCounts | None = None
    """None for a run of single-turn pairs."""

    def task(self, name: str) -> TaskCounts:
        return self.tasks.setdefault(name, TaskCounts())

    def add_stats(self, stats: dict[str, Any], task: str | None = None) -> TaskCounts:
        """A committed shard's marker, counted under `task` (default: the task in the shard's name)."""
        counts = self.task(task or str(stats.get("task")))
        counts.shards += 1
        if stats.get("phase") == "render":
            counts.samples += int(stats.get("samples", 0))
            counts.kept += int(stats.get("kept", 0))
            counts.errors += int(stats.get("errors", 0))
            counts.candidate_reasons.update(stats.get("candidate_reasons") or {})
            if stats.get("sessions"):
                self.sessions = self.sessions or SessionCounts()
                self.sessions.add(stats["sessions"])
        else:
            counts.samples += int(stats.get("records", 0))
        counts.reasons.update(stats.get("reasons") or {})
        return counts

    def add_manifest(self, keys, tasks, statuses, reasons, turns=None) -> set[str]:
        """A render shard's manifest columns: each sample (its candidates' rows) under its own task and turn; a
        sample is kept when a candidate is, else counted under its first candidate's reason. Returns the kept keys."""
        first: dict[str, tuple[str, str, str, int]] = {}
        kept_keys = set()
        for key, task, status, reason, turn in zip(
            keys, tasks, statuses, reasons, turns or [1] * len(keys), strict=True
        ):
            first.setdefault(key, (status, reason or "", task, int(turn or 1)))
            if status == "kept":
                kept_keys.add(key)
            if reason:
                self.task(task).candidate_reasons[reason] += 1
        for key, (status, reason, task, turn) in first.items():
            counts, by_turn = self.task(task), self.turns.setdefault(turn, Counter())
            counts.samples += 1
            counts.errors += status == "error"  # as the render counts them: the sample's first candidate errored
            by_turn["attempted"] += 1
            if key in kept_keys:
                counts.kept += 1
                by_turn["kept"] += 1
            else:
                counts.reasons[reason] += 1
        return kept_keys


def count_stats(shards, task_of=None) -> RunCounts:
    """Committed shards (shards.reader.Shard) counted from their stats."""
    counts = RunCounts()
    for shard in shards:
        counts.add_stats(shard.stats, task_of(shard) if task_of else shard.task)
    return counts


def count_manifests(run, shards=None) -> RunCounts:
    """A run's render shards counted from their manifests (each sample under its own task and turn), with the
    sessions summed from their stats."""
    counts = RunCounts()
    columns = ("key", "task", "status", "reason", "turn")
    for shard in run.committed(required=False) if shards is None else shards:
        table = run.manifest(shard.name, columns)  # the columns it has: a single-turn run's have no turn
        turns = table["turn"].to_pylist() if "turn" in table.column_names else None
        counts.add_manifest(*(table[c].to_pylist() for c in columns[:4]), turns)
        counts.task(shard.task).shards += 1
        if shard.stats.get("sessions"):
            counts.sessions = counts.sessions or SessionCounts()
            counts.sessions.add(shard.stats["sessions"])
    return counts
