"""Resume planning over a million committed shards: the streaming bitmap planner against the previous one (the
whole listing in memory, then a set). Run: .venv/bin/python benchmarks/resume_planning.py (creates and removes
/tmp/planb, about a minute on two cores)."""

import os, time, tracemalloc, shutil
from datagen.config import load_run
from datagen.runner import pending_shards
from datagen.storage import Folder
out = "/tmp/planb"; folder = f"{out}/shards"; os.makedirs(folder, exist_ok=True)
for i in range(1_000_000):
    if i != 500_000:
        os.close(os.open(f"{folder}/remove-{i:06d}.stats.json", os.O_CREAT | os.O_WRONLY, 0o644))
c = load_run("remove", "local", out=out, n=1_000_000, shard_size=1)
def old():  # the previous planner: the sorted listing in memory, then a set of done shards
    f = Folder(out).sub("shards"); done = set(); prefix = "remove-"
    for name in f.names():
        if name.startswith(prefix) and name.endswith(".stats.json"):
            done.add(int(name[len(prefix): len(prefix) + 6]))
    return [i for i in range(c.run.num_shards) if i not in done]
for label, fn in (("before (listing in memory)", old), ("streaming bitmap", lambda: pending_shards(c, "render"))):
    t = time.perf_counter(); r = fn(); dt = time.perf_counter() - t
    tracemalloc.start(); fn(); peak = tracemalloc.get_traced_memory()[1]; tracemalloc.stop()
    print(f"{label}: {dt:.2f} s, peak {peak / 2**20:.1f} MiB, pending {r}")
shutil.rmtree(out)
