"""Real-size stand-ins: the checkpoints `datagen train --init stable-diffusion-v1-5/stable-diffusion-v1-5` and
`datagen eval --pipeline sd15` name, randomly initialised at their published sizes and written where the real ones
would be (a Hugging Face cache), so the real commands run at real size on a GPU machine that has no weights.

    python benchmarks/real_size.py models --cache /tmp/hf                 # SD 1.5, CLIP ViT-L/14, DINOv2-base
    HF_HUB_CACHE=/tmp/hf datagen train --init stable-diffusion-v1-5/stable-diffusion-v1-5 ...
    python benchmarks/real_size.py steady RUN_DIR --batch-size 32         # steady-state steps/s from log.jsonl
    python benchmarks/real_size.py loader SHARDS --resolution 256 --batch-size 32 --workers 8   # data path alone

The sizes are datagen/models/architectures.py's, written by datagen.bench_gpu.write_stand_ins under the model ids
pipelines/sd15.yaml names (`datagen bench gpu` writes its stand-ins the same way). `--small` writes the tiny sizes
in the same layout (a CPU check of this script). The tokenizer is datagen's tiny CLIP tokenizer (the real
vocabulary is a download); the text towers keep CLIP's 49408-token embedding table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from datagen.bench_gpu import write_stand_ins

ROLES = ("t2i", "clip", "dino")
"""The sd15 pipeline's roles whose models `datagen train --init` and `datagen eval --pipeline sd15` load."""


def steady(run: Path, batch_size: int, skip: int) -> dict:
    """Steps/s and samples/s after the first `skip` steps (allocator and cuDNN warm-up, the loader's start), from
    the cumulative rate `datagen train` logs each step."""
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    first = rows[0]["step"] - 1  # the step the run started from
    at = {r["step"]: (r["step"] - first) * batch_size / r["samples_per_s"] for r in rows}  # seconds since start
    start, end = rows[min(max(skip - 1, 0), len(rows) - 2)]["step"], rows[-1]["step"]
    seconds = at[end] - at[start]
    return {
        "steps": end - start,
        "seconds": seconds,
        "steps_s": (end - start) / seconds,
        "samples_s": (end - start) * batch_size / seconds,
        "first_steps_s": at[start],
        "loss_first": rows[0]["loss"],
        "loss_last": rows[-1]["loss"],
    }


def loader(shards: list[str], resolution: int, batch_size: int, workers: int, steps: int, skip: int) -> dict:
    """The training data path alone (read, decode, crop, batch) as `datagen train` runs it: samples/s, no model."""
    import time

    from datagen.train import TrainConfig, batches, shard_urls

    config = TrainConfig(shards=shards, out="", resolution=resolution, batch_size=batch_size, workers=workers)
    stream = batches(config, shard_urls(shards))
    for _ in range(skip):  # worker start-up and the shuffle buffer's first fill
        next(stream)
    started = time.perf_counter()
    for _ in range(steps):
        next(stream)
    seconds = time.perf_counter() - started
    return {"resolution": resolution, "batch_size": batch_size, "workers": workers, "steps_s": steps / seconds,
            "samples_s": steps * batch_size / seconds}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    models = sub.add_parser("models", help="write the stand-in checkpoints into a hub cache folder")
    models.add_argument("--cache", type=Path, required=True)
    models.add_argument("--small", action="store_true", help="tiny configurations, same layout")
    models.add_argument("--device", default="cuda")
    rate = sub.add_parser("steady", help="steady-state training speed of a `datagen train` run folder")
    rate.add_argument("run", type=Path)
    rate.add_argument("--batch-size", type=int, required=True)
    rate.add_argument("--skip", type=int, default=6, help="steps left out at the start (default 6)")
    data = sub.add_parser("loader", help="samples/s of the training data path alone")
    data.add_argument("shards", nargs="+")
    data.add_argument("--resolution", type=int, default=256)
    data.add_argument("--batch-size", type=int, default=32)
    data.add_argument("--workers", type=int, default=8)
    data.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    if args.command == "models":
        written = write_stand_ins(args.cache, ROLES, "tiny" if args.small else "full", args.device)
        print(json.dumps({"cache": str(args.cache), "stand_ins": written}))
    elif args.command == "steady":
        print(json.dumps(steady(args.run, args.batch_size, args.skip)))
    else:
        print(json.dumps(loader(args.shards, args.resolution, args.batch_size, args.workers, args.steps, skip=5)))


if __name__ == "__main__":
    main()
