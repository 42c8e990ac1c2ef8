"""Resume planning over a million committed shards: the streaming bitmap planner against the previous one (the
whole listing in memory, then a set). Run: .venv/bin/python benchmarks/resume_planning.py (creates and removes
/tmp/planb, about a minute on two cores)."""

import os
import shutil
import time
import tracemalloc

from datagen.resolve import load_run
from datagen.shards.layout import STATS, phase_folder, shard_name
from datagen.shards.run import pending_shards

OUT = "/tmp/planb"
SHARDS = 1_000_000
MISSING = 500_000


def make_markers() -> None:
    """One empty stats marker per committed shard, one shard in the middle missing."""
    folder = phase_folder(OUT, "render").path
    os.makedirs(folder, exist_ok=True)
    for i in range(SHARDS):
        if i != MISSING:
            os.close(os.open(f"{folder}/{shard_name('remove', i)}{STATS}", os.O_CREAT | os.O_WRONLY, 0o644))


def listing_in_memory(config) -> list[int]:
    """The previous planner, the baseline: the sorted listing in memory, then a set of done shards."""
    prefix, done = f"{config.task.name}-", set()
    for name in phase_folder(OUT, "render").names():
        if name.startswith(prefix) and name.endswith(STATS):
            done.add(int(name[len(prefix) : len(prefix) + 6]))
    return [i for i in range(config.run.num_shards) if i not in done]


def main() -> None:
    make_markers()
    config = load_run("remove", "local", out=OUT, n=SHARDS, shard_size=1)
    planners = {
        "before (listing in memory)": lambda: listing_in_memory(config),
        "streaming bitmap": lambda: list(pending_shards(config, "render")),
    }
    try:
        for label, plan in planners.items():
            started = time.perf_counter()
            pending = plan()
            seconds = time.perf_counter() - started
            tracemalloc.start()
            plan()
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            print(f"{label}: {seconds:.2f} s, peak {peak / 2**20:.1f} MiB, pending {pending}")
    finally:
        shutil.rmtree(OUT)


if __name__ == "__main__":
    main()
