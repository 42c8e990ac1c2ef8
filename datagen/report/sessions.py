"""The report's Sessions section, for a run made with --turns (datagen/sessions.py): how many sessions were kept,
the share that stopped at each turn, and a sample of sessions as strips of turns — the first input, then each turn's
output with its task, instruction, verdict and the scores its gates read.

A strip's images are the kept turns' (from the shard's tar); the turns of a dropped session come from its rejected
tar where the run kept one (pipeline.keep_rejected), else they show their verdict without images.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from datagen.report.tally import thumbnails
from datagen.shards.tally import count_stats

if TYPE_CHECKING:
    from datagen.shards.reader import RunFolder, Shard

STRIPS = 12
"""Sessions drawn as strips: up to two thirds kept ones, the rest dropped ones (if any)."""
COLUMNS = ("key", "task", "candidate", "status", "reason", "detail", "instruction", "session", "turn")


def session_counts(shards: list[Shard]) -> dict[str, Any] | None:
    """The shards' session counts summed (datagen/shards/tally.py): turns, sessions, complete, kept,
    dropped_at_turn; None for a run of single-turn pairs."""
    sessions = count_stats(shards).sessions
    return sessions.as_dict() if sessions else None


def strips(run: RunFolder, shards: list[Shard], warnings: list[str], seed: int = 0) -> tuple[list[dict], dict]:
    """(sampled sessions, their thumbnail files): each session {session, kept, turns: [{turn, key, task,
    instruction, status, reason, thumbs}]}, chosen by a hash of the seed and the session name (the same whatever
    the shard order)."""
    sessions: dict[str, dict[int, dict[str, Any]]] = {}
    where: dict[str, str] = {}
    for shard in shards:
        if not shard.stats.get("sessions"):
            continue
        for row in run.manifest(shard.name, COLUMNS).to_pylist():
            turns = sessions.setdefault(row["session"], {})
            where[row["session"]] = shard.name
            chosen = turns.get(row["turn"])
            if chosen is None or (row["status"] == "kept" and chosen["status"] != "kept"):
                turns[row["turn"]] = row  # the kept candidate, else the first one: the turn's verdict

    def rank(session: str) -> bytes:
        return hashlib.blake2b(f"{seed}/{session}".encode(), digest_size=8).digest()

    whole = sorted((s for s, t in sessions.items() if all(r["status"] == "kept" for r in t.values())), key=rank)
    dropped = sorted((s for s in sessions if s not in set(whole)), key=rank)
    take_dropped = min(len(dropped), STRIPS // 3 if whole else STRIPS)
    chosen = sorted(whole[: STRIPS - take_dropped] + dropped[:take_dropped], key=lambda s: (s not in whole, s))
    out, entries = [], []
    for session in chosen:
        turns = []
        for turn in sorted(sessions[session]):
            row = sessions[session][turn]
            entry = {**{name: row[name] for name in COLUMNS}, "shard": where[session], "thumbs": None}
            entry["candidate"] = int(row["candidate"] or 0)
            turns.append(entry)
            entries.append(entry)
        out.append({"session": session, "kept": session in whole, "turns": turns})
    rejected_tars = {shard.name for shard in shards if shard.keeps_rejected}
    files = thumbnails(run, entries, warnings, rejected_tars)
    for entry in entries:
        del entry["shard"]
    return out, files
