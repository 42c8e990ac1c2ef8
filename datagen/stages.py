"""Where a shard's render time goes: seconds, model calls and items per stage, for the shard's stats."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

COUNTERS = ("calls", "items", "forwards")
"""What a batched role counts (datagen/models/batching.py Counted): model calls, items in them, denoiser forwards."""


class StageClock:
    """`with clock.stage("ground"): ...` adds the block's seconds to the stage, and what each role's model was asked
    meanwhile (its counters before and after). `roles()` returns the adapters built so far, role -> adapter."""

    def __init__(self, roles):
        self._roles = roles
        self.seconds: Counter[str] = Counter()
        self.models: dict[str, dict[str, Counter[str]]] = {}
        """stage -> counter name -> role -> count."""

    def _snapshot(self) -> dict[tuple[str, str], int]:
        return {
            (role, name): getattr(adapter, name, 0) for role, adapter in self._roles().items() for name in COUNTERS
        }

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        before = self._snapshot()
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - started
            for (role, counter), value in self._snapshot().items():
                delta = value - before.get((role, counter), 0)
                if delta:
                    self.models.setdefault(name, {}).setdefault(counter, Counter())[role] += delta

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] += seconds

    def stats(self) -> dict[str, Any]:
        """{stage: {"seconds": s, "calls": {role: n}, "items": {role: n}[, "forwards": {role: n}]}}."""
        out = {}
        for name in sorted(self.seconds):
            entry: dict[str, Any] = {"seconds": round(self.seconds[name], 4)}
            for counter, roles in sorted(self.models.get(name, {}).items()):
                entry[counter] = dict(sorted(roles.items()))
            out[name] = entry
        return out
