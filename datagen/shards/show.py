"""`datagen show OUT`: a quick look at a run, the first N samples (of a task, of a status) with everything the
manifests know about them and where their members are."""

from __future__ import annotations

import argparse
import json
from itertools import islice

from datagen.errors import ConfigError
from datagen.record import SCORE_PREFIX
from datagen.shards.reader import RunFolder


def flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", help="run directory or URL")
    parser.add_argument("--n", type=int, default=8, help="how many (default: 8)")
    parser.add_argument("--task", help="only this task")
    parser.add_argument(
        "--status", default="kept", choices=["kept", "rejected", "error", "all"], help="(default: kept)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per line")


def run(args: argparse.Namespace) -> int:
    """A quick look: the first N samples (of a task, of a status) with everything known about them."""
    if args.n < 1:
        raise ConfigError(f"--n {args.n}: give a positive number of samples")
    run = RunFolder(args.out)
    rows = list(islice(run.rows(args.task, None if args.status == "all" else args.status), args.n))
    if not rows:
        what = " ".join(x for x in (args.status if args.status != "all" else "", args.task or "", "samples") if x)
        raise ConfigError(f"{args.out}: no committed {what} (check the run with: datagen verify {args.out})")
    keeps_rejected = {s.name for s in run.committed(args.task, required=False) if s.keeps_rejected}
    mask_area = f"{SCORE_PREFIX}mask_area"  # measured on every rendered candidate
    for row in rows:
        scores = {
            k.removeprefix(SCORE_PREFIX): v for k, v in row.items() if k.startswith(SCORE_PREFIX) and v is not None
        }
        members = f"{row['key']}.input|output|mask|json|txt"
        where = run.shards.url(f"{row['shard_name']}.tar") if row["status"] == "kept" else "not stored (not kept)"
        if row["status"] != "kept" and row["shard_name"] in keeps_rejected and row.get(mask_area) is not None:
            members = f"{row['key']}.c{row['candidate']}.input|output|mask|json"  # rendered: kept as data
            where = run.shards.url(f"{row['shard_name']}.rejected.tar")
        if args.json:
            keep = (
                "key",
                "task",
                "status",
                "reason",
                "instruction",
                "input_caption",
                "output_caption",
                "objects",
                "judge_reasoning",
                "instruction_rewritten",
            )
            print(json.dumps({**{k: row.get(k) for k in keep}, "scores": scores, "tar": where}, ensure_ascii=False))
            continue
        print(f"{row['key']}  [{row['task']}] {row['status']}" + (f": {row['reason']}" if row["reason"] else ""))
        print(f"  instruction:    {row['instruction']}")
        print(f"  input caption:  {row['input_caption']}")
        print(f"  output caption: {row['output_caption']}")
        if row["objects"]:
            print(f"  objects:        {', '.join(row['objects'])}")
        if row.get("instruction_rewritten"):
            print(f"  edit done:      {row['instruction_rewritten']} (the judge's words)")
        if row.get("judge_reasoning"):
            print(f"  judge:          {row['judge_reasoning']}")
        print("  scores:         " + ", ".join(f"{k} {v:.3f}" for k, v in sorted(scores.items())))
        print(f"  tar:            {where}" + (f" ({members})" if where.endswith(".tar") else ""))
    return 0
