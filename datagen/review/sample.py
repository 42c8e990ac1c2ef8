"""Which candidates a review shows: per task, kept pairs and rejected candidates whose images the run stored,
spread over the range of every score the task gates on, so that labels say something about every threshold."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

from datagen.scores import SCORE_PREFIX, SCORES

STATUSES = ("kept", "rejected")


@dataclass
class Item:
    """One candidate to label. `status`, `reason` and `scores` stay on the server until it is labelled."""

    id: int
    key: str
    candidate: int
    task: str
    shard: str
    instruction: str
    status: str
    reason: str
    scores: dict[str, float] = field(default_factory=dict)


def _rank(seed: int, key: str, candidate: int) -> bytes:
    return hashlib.blake2b(f"{seed}/{key}/{candidate}".encode(), digest_size=8).digest()


def spread(pool: list[dict[str, Any]], quota: int, gated: list[str], seed: int) -> list[dict[str, Any]]:
    """`quota` rows of `pool`: for each gated score in turn, rows at evenly spaced ranks of that score (rows without
    it last), then the rest in hash order; the same rows for the same seed whatever the pool's order."""
    if quota >= len(pool):
        return sorted(pool, key=lambda r: _rank(seed, r["key"], r["candidate"]))
    by_hash = sorted(pool, key=lambda r: _rank(seed, r["key"], r["candidate"]))
    picked: dict[tuple[str, int], dict[str, Any]] = {}
    orders = [
        sorted(by_hash, key=lambda r, g=g: (g not in r["scores"], r["scores"].get(g, 0.0)))
        for g in gated
        if any(g in r["scores"] for r in pool)
    ]
    if orders:
        per = math.ceil(quota / len(orders))
        for position in range(per):
            for order in orders:
                if len(picked) == quota:
                    break
                row = order[min(len(order) - 1, int((position + 0.5) * len(order) / per))]
                picked.setdefault((row["key"], row["candidate"]), row)
    for row in by_hash:
        if len(picked) == quota:
            break
        picked.setdefault((row["key"], row["candidate"]), row)
    return list(picked.values())


def choose(run, n: int, tasks: list[str] | None = None, seed: int = 0) -> list[Item]:
    """The review's items: `n` shared evenly by task, then by status (kept; rejected where the shard stored its
    rejected candidates), each share spread over the task's gated scores; shown in hash order so that kept and
    rejected candidates come mixed."""
    from datagen.report.tally import split_evenly

    record = run.record()
    gates = {
        task: [
            name
            for name, spec in (entry["config"]["task"].get("filters") or {}).items()
            if spec.get("enabled", True) and name in SCORES
        ]
        for task, entry in record["runs"].items()
    }
    columns = ("key", "task", "candidate", "status", "reason", "instruction", *(f"{SCORE_PREFIX}{s}" for s in SCORES))
    pools: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for shard in run.committed():
        for row in run.manifest(shard.name, columns).to_pylist():
            status = row["status"]
            if (tasks and row["task"] not in tasks) or status not in STATUSES:
                continue
            if status == "rejected" and not shard.keeps_rejected:
                continue  # its images were never stored
            scores = {
                name: float(value)
                for name in SCORES
                if (value := row.get(f"{SCORE_PREFIX}{name}")) is not None and math.isfinite(value)
            }
            pools.setdefault((row["task"], status), []).append(
                {**row, "candidate": int(row["candidate"] or 0), "shard": shard.name, "scores": scores}
            )
    by_task = sorted({task for task, _ in pools})
    per_task = split_evenly({t: sum(len(p) for (task, _), p in pools.items() if task == t) for t in by_task}, n)
    chosen = []
    for task in by_task:
        sizes = {status: len(pools.get((task, status), [])) for status in STATUSES}
        for status, quota in split_evenly(sizes, per_task[task]).items():
            chosen += spread(pools.get((task, status), []), quota, gates.get(task, []), seed)
    chosen.sort(key=lambda r: _rank(seed + 1, r["key"], r["candidate"]))
    return [
        Item(
            number,
            r["key"],
            r["candidate"],
            r["task"],
            r["shard"],
            r.get("instruction") or "",
            r["status"],
            r["reason"] or "",
            r["scores"],
        )
        for number, r in enumerate(chosen)
    ]


def images(run, items: list[Item]) -> dict[int, dict[str, tuple[str, bytes]]]:
    """Each item's input, output and mask as stored (member name, bytes), read from its shard's tar (kept) or
    rejected tar, one pass over each shard that holds an item."""
    kept: dict[str, dict[str, int]] = {}
    rejected: dict[str, dict[tuple[str, int], int]] = {}
    for item in items:
        if item.status == "kept":
            kept.setdefault(item.shard, {})[item.key] = item.id
        else:
            rejected.setdefault(item.shard, {})[(item.key, item.candidate)] = item.id
    shards = {shard.name: shard for shard in run.committed()}
    out: dict[int, dict[str, tuple[str, bytes]]] = {}
    for name in sorted(set(kept) | set(rejected)):
        if name in kept:
            for sample in run.samples(shards[name]):
                if sample.key in kept[name]:
                    out[kept[name][sample.key]] = sample.images
        if name in rejected:
            for candidate in run.rejected(shards[name]):
                number = rejected[name].get((candidate.key, candidate.candidate))
                if number is not None:
                    out[number] = candidate.images
    return out
