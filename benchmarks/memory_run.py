"""Peak memory of a long `local` run: does it stay flat from 10k to 100k samples?

Runs `datagen generate --task remove --pipeline local` as a child process and samples, once a second, the resident
memory of the whole process tree (driver, Ray's GCS and raylet, every worker) from /proc. Prints the peak and the
current figure when the committed samples first reach each checkpoint, then the run's end.

    .venv/bin/python benchmarks/memory_run.py --n 100000 --out /tmp/mem100k   # ~50 min on two cores
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE")


def tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(f"/proc/{entry.name}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def rss(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except (OSError, IndexError):
        return 0


def committed_samples(out: Path) -> int:
    total = 0
    for stats in (out / "shards").glob("*.stats.json"):
        try:
            total += json.loads(stats.read_text())["samples"]
        except (OSError, ValueError, KeyError):
            pass
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--out", default="/tmp/datagen-memory-run")
    parser.add_argument("--checkpoints", default="1000,10000,50000,100000")
    args = parser.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    checkpoints = sorted(int(c) for c in args.checkpoints.split(","))
    command = [sys.executable, "-m", "datagen.cli", "generate", "--task", "remove", "--pipeline", "local",
               "--n", str(args.n), "--out", str(out), "--no-progress"]  # fmt: skip
    started = time.monotonic()
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    peak_tree = peak_driver = 0
    last_check = 0.0
    samples = 0
    while run.poll() is None:
        pids = tree(run.pid)
        total = sum(rss(p) for p in pids)
        peak_tree, peak_driver = max(peak_tree, total), max(peak_driver, rss(run.pid))
        now = time.monotonic()
        if now - last_check > 5:
            samples, last_check = committed_samples(out), now
            while checkpoints and samples >= checkpoints[0]:
                line = {"samples": checkpoints.pop(0), "seconds": round(now - started), "processes": len(pids),
                        "rss_now_mib": round(total / 2**20), "peak_rss_mib": round(peak_tree / 2**20),
                        "peak_driver_mib": round(peak_driver / 2**20)}  # fmt: skip
                print(json.dumps(line), flush=True)
        time.sleep(1)
    summary = run.stdout.read()
    print(summary)
    print(json.dumps({"end": True, "samples": committed_samples(out), "seconds": round(time.monotonic() - started),
                      "peak_rss_mib": round(peak_tree / 2**20), "peak_driver_mib": round(peak_driver / 2**20),
                      "exit": run.returncode}))  # fmt: skip


if __name__ == "__main__":
    main()
