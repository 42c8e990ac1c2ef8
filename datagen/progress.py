"""Progress of long steps: a tqdm bar on a terminal, plain JSON log lines otherwise (cluster jobs, CI, `| tee`).

One line per event on stderr, e.g.
`{"time": "2026-11-22T10:00:00Z", "event": "progress", "step": "remove render", "done": 12, "total": 80, ...}`:
the first update, then at most one every `DATAGEN_LOG_EVERY` seconds (default 10), and one when the step ends.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any


def log_event(event: str, **fields: Any) -> None:
    """One JSON line on stderr."""
    line = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "event": event, **fields}
    print(json.dumps(line, default=str), file=sys.stderr, flush=True)


class Progress:
    """`update(n, **fields)` / `close()`; a bar when stderr is a terminal, JSON lines when it is not."""

    def __init__(self, total: int | None, step: str, unit: str = "it", enabled: bool = True, initial: int = 0):
        self.step, self.unit, self.total, self.done = step, unit, total, initial
        self.enabled = enabled
        self.fields: dict[str, Any] = {}
        self.every = float(os.environ.get("DATAGEN_LOG_EVERY", "10"))
        self.started = time.perf_counter()
        self._last: float | None = None
        self._bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=step, unit=unit, file=sys.stderr, dynamic_ncols=True)

    def update(self, n: int = 1, **fields: Any) -> None:
        self.done += n
        self.fields.update(fields)
        if self._bar is not None:
            self._bar.update(n)
            if fields:
                self._bar.set_postfix_str(", ".join(f"{k} {v}" for k, v in self.fields.items()), refresh=True)
        elif self.enabled:
            now = time.perf_counter()
            if self._last is None or now - self._last >= self.every:
                self._last = now
                self._log("progress")

    def _log(self, event: str) -> None:
        elapsed = time.perf_counter() - self.started
        log_event(
            event,
            step=self.step,
            done=self.done,
            total=self.total,
            unit=self.unit,
            seconds=round(elapsed, 1),
            **self.fields,
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.enabled:
            self._log("done")
        self.enabled = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
