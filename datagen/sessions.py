"""Multi-turn editing sessions (`--turns K`): K chained edits of one input, each turn checked against its own input.

A session is one sample of the run: the shard of its *anchor* task (the task the mixture drew for the sample) holds
it whole, so a resume stays exact at the shard. The tasks of its turns are drawn from the run's mixture by the
session's seed (`plan`), each where it may stand: its task file's `session.position`, and whether its generator on
this pipeline can edit an image an earlier turn made (`cannot_follow`: the local pipeline's scene re-renders and
prompt-to-prompt's drawn pairs cannot). The anchor takes the first turn, or the last where it may only end one.

A shard of sessions is datagen/session_shard.py's. The write phase writes every session's first turn. The render
phase renders the
first turn of every session of the shard, batched as single samples are, then writes the second turn of each session
whose first was kept, from that turn's output: its output caption and the objects still in it (the task file's
`session.objects`), and the image itself for a writer that sees images; then renders it; and so on. Every turn is
scored and gated like a single sample against its own input, the judge included. A session is kept only if every
turn passes; otherwise its kept turns are rejected as `session_dropped`, naming the turn and its reason, or, with
run.keep_prefix, its passing prefix is kept. A turn whose pair's input is not the previous turn's output is
rejected as `input_changed`, so that every kept session chains (`datagen verify` checks it, byte for byte).

Keys: the session `{anchor}_{shard}_{index}` (the sample key) has turns `{anchor}_t{turn}_{shard}_{index}`; each
record names its `session`, `turn` and `previous` (the key whose output is its input). A later turn's source is
`{"kind": "turn", "previous": KEY}`.
"""

from __future__ import annotations

import hashlib

import numpy as np

from datagen import generators
from datagen.config import RunConfig
from datagen.errors import ConfigError

TURN_SOURCE = "turn"
"""The source kind of a later turn's input: the output of the turn its `previous` names."""


def turn_key(session: str, turn: int) -> str:
    """The key of a session's turn: `remove_000003_00012`, turn 2 -> `remove_t2_000003_00012`."""
    anchor, shard, index = session.rsplit("_", 2)
    return f"{anchor}_t{turn}_{shard}_{index}"


def turn_seed(run_seed: int, key: str) -> int:
    """A turn's seed, from the run seed and its key (as sample_seed is from a sample's)."""
    digest = hashlib.sha256(f"{run_seed}/{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def cannot_follow(config: RunConfig) -> str | None:
    """Why this task cannot edit an image an earlier turn made, on this run's pipeline; None where it can."""
    spec = config.generator
    kind = generators.get(spec.kind)
    follows = getattr(kind, "follows_edits", None)  # a kind may say it cannot (generators/base.py)
    if follows is not None and not follows(kind.Args.parse(spec.args), config.run.source):
        return f"its generator ({spec.kind}) does not start from the image it is given on --source {config.run.source}"
    for role in generators.roles(kind, spec.args, source=config.run.source):
        if config.pipeline.roles[role].backend == "scene":
            return f"its {role} role reads the procedural scene"
    return None


def allowed(config: RunConfig, turn: int, turns: int) -> bool:
    """Whether this task may be turn `turn` (from 1) of a `turns`-turn session."""
    position = config.task.session.position
    if turn == 1:
        return position in ("any", "first") or (position == "last" and turns == 1)
    if cannot_follow(config) is not None:
        return False
    return position in ("any", "later") or (position == "last" and turn == turns)


def anchor_turn(config: RunConfig, turns: int) -> int | None:
    """The turn its own sessions give this task: the first, else the last; None where it can stand at neither."""
    return next((turn for turn in (1, turns) if allowed(config, turn, turns)), None)


def plan(configs: dict[str, RunConfig], anchor: str, seed: int, turns: int) -> list[str]:
    """The task of each turn of the session with this seed, drawn from the mixture (weighted by each task's share of
    the run) among those that may stand there; the anchor at its own turn."""
    rng = np.random.default_rng([seed, 0x5E55])
    at = anchor_turn(configs[anchor], turns)
    tasks = []
    for turn in range(1, turns + 1):
        if turn == at:
            tasks.append(anchor)
            continue
        pool = [name for name in sorted(configs) if allowed(configs[name], turn, turns)]
        weights = np.array([configs[name].run.n for name in pool], dtype=float)
        tasks.append(pool[int(rng.choice(len(pool), p=weights / weights.sum()))])
    return tasks


def unplaceable(config: RunConfig, turns: int) -> str | None:
    """Why this task cannot stand in a `turns`-turn session at all (None where it can)."""
    if anchor_turn(config, turns) is not None:
        return None
    position = config.task.session.position
    why = cannot_follow(config) or (
        "it goes back to an earlier image of its session: give --turns 2 or more"
        if position == "later"
        else f"its task file allows it only as a session's {position} turn"
    )
    where = f"a {turns}-turn session on pipeline {config.pipeline.name!r}"
    return f"task {config.task.name!r} cannot stand in {where}: {why}"


def check(configs: list[RunConfig]) -> None:
    """A sessions run every session of which can be planned: every task has a turn of its own and every turn a task
    that may stand there; a ConfigError says which does not."""
    turns = configs[0].run.turns
    if turns == 1:
        return
    for config in configs:
        if why := unplaceable(config, turns):
            raise ConfigError(f"--turns {turns}: {why}; leave it out of the mixture")
    by_name = {c.task.name: c for c in configs}
    if not any(allowed(c, 1, turns) for c in by_name.values()):
        raise ConfigError(
            f"--turns {turns}: no task of the mixture can open a session (each is a later or a last turn only: "
            f"{', '.join(by_name)}); add one that can (remove, color, global, style, text)"
        )
    for turn in range(2, turns + 1):
        if not any(allowed(c, turn, turns) for c in by_name.values()):
            reasons = "; ".join(
                f"{n}: {cannot_follow(c) or 'its task file says ' + c.task.session.position}"
                for n, c in by_name.items()
            )
            raise ConfigError(
                f"--turns {turns}: no task of the mixture can edit turn {turn - 1}'s output ({reasons}); add a task "
                f"that can (remove, color, global, style, text)"
            )
