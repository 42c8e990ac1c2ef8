"""`datagen` command line: generate | write | render | verify | preflight."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from datagen import __version__

EPILOG = "Example: datagen generate --task remove --pipeline local --n 200 --out out/remove"


def _run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="run directory (created; an existing run there is resumed)")
    parser.add_argument("--task", help="task name in tasks/ or a path to a task YAML (omit to resume OUT's run)")
    parser.add_argument("--pipeline", default="local", help="pipeline name in pipelines/ (default: local)")
    parser.add_argument("--n", type=int, default=200, help="samples to attempt; kept ones are fewer (default: 200)")
    parser.add_argument("--seed", type=int, default=0, help="run seed (default: 0)")
    parser.add_argument("--shard-size", type=int, default=100, help="samples per shard (default: 100)")
    parser.add_argument(
        "--source",
        help="input source: scene (procedural), images (a folder), shards (WebDataset tars with captions), "
        "captions (a .txt/.jsonl/.parquet file) or topics (the LLM writes captions); default: the task's first",
    )
    parser.add_argument("--input", help="the source's input: image folder, tar folder, caption file or topic file")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="override a config field by dotted path: filters.mask_area.min=0.02 (task), "
        "pipeline.image_size=512, prompt.verbs=[Remove]; repeatable",
    )
    parser.add_argument("--ray-address", help="join this Ray cluster (default: $RAY_ADDRESS, else start a local one)")
    parser.add_argument("--workers", type=int, help="worker actors (default: one per CPU); 0 runs inline without Ray")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="datagen", description=__doc__, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"datagen {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in (
        ("generate", "write instructions, then render, filter and shard them (resumable)"),
        ("write", "phase 1: captions and edit instructions -> OUT/texts/*.jsonl"),
        ("render", "phase 2: instructions -> images, scores, filters -> OUT/shards/*.tar|parquet|stats.json"),
    ):
        _run_options(sub.add_parser(name, help=text, description=text, epilog=EPILOG))
    verify = sub.add_parser(
        "verify",
        help="check every committed shard of a run",
        description="Check every committed shard: tar readable and safe, members of a key "
        "contiguous and complete, counts agree across tar, parquet and stats, "
        "checksums match. Exits 1 on any problem.",
    )
    verify.add_argument("out", help="run directory")
    verify.add_argument("--json", action="store_true", help="print the verdict as JSON")
    check = sub.add_parser(
        "preflight",
        help="check that every model a pipeline names is on this machine",
        description="List each weighted role's model and where it was found; for a missing one, "
        "the command that fetches it. Tiny models are built. Exits 1 if any is "
        "missing. Nothing is downloaded.",
    )
    check.add_argument("--pipeline", required=True, help="pipeline name in pipelines/ or a YAML path")
    check.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="override a pipeline field, e.g. roles.clip.model=/models/clip",
    )
    return parser


def resolve_config(args: argparse.Namespace):
    from datagen.config import ConfigError, RunConfig, load_run

    if args.task:
        return load_run(
            args.task,
            args.pipeline,
            out=args.out,
            n=args.n,
            seed=args.seed,
            shard_size=args.shard_size,
            source=args.source,
            input=args.input,
            overrides=args.overrides,
        )
    run_json = Path(args.out) / "run.json"
    if not run_json.is_file():
        raise ConfigError(f"--task is required: {run_json} does not exist, so there is no run to resume")
    try:
        config = RunConfig.model_validate(json.loads(run_json.read_text())["config"])
    except Exception as e:
        raise ConfigError(f"{run_json}: not a datagen run record ({e})") from None
    config.run.out = args.out
    return config


def cmd_preflight(args: argparse.Namespace) -> int:
    from datagen.config import load_pipeline
    from datagen.preflight import preflight

    checks = preflight(load_pipeline(args.pipeline, args.overrides))
    for c in checks:
        print(f"{'ok' if c.ok else 'MISSING':<8} {c.role:<10} {c.model:<45} {c.where}")
    missing = [c for c in checks if not c.ok]
    if missing:
        print(
            f"{len(missing)} model(s) missing; fetch them with the commands above (nothing is downloaded at run time)"
        )
    else:
        print(f"pipeline {args.pipeline}: every model is present ({len(checks)} checked)")
    return 1 if missing else 0


def cmd_run(args: argparse.Namespace) -> int:
    from datagen.preflight import require
    from datagen.runner import execute

    config = resolve_config(args)
    require(config.pipeline, args.command)
    summary = execute(
        config, args.command, ray_address=args.ray_address, workers=args.workers, progress=not args.no_progress
    )
    for line in summary.lines(config.task.name, config.run.out):
        print(line)
    if args.command != "write":
        print(f"  shards: {Path(config.run.out) / 'shards'} (check them with: datagen verify {config.run.out})")
    return 1 if summary.failed or (summary.written and summary.written.failed) else 0


def cmd_verify(args: argparse.Namespace) -> int:
    from datagen.shards import verify

    verdict = verify(args.out)
    if args.json:
        print(json.dumps(verdict.__dict__, indent=1))
    else:
        for problem in verdict.problems:
            print(f"PROBLEM {problem}")
        if verdict.uncommitted:
            print(
                f"ignored {len(verdict.uncommitted)} uncommitted file(s) (no stats marker): "
                + ", ".join(verdict.uncommitted[:5])
            )
        state = "OK" if not verdict.problems else f"{len(verdict.problems)} problem(s)"
        print(f"{args.out}: {verdict.shards} committed shards, {verdict.samples} samples: {state}")
    return 1 if verdict.problems else 0


def main(argv: list[str] | None = None) -> int:
    from datagen.config import ConfigError

    args = build_parser().parse_args(argv)
    try:
        if args.command == "verify":
            return cmd_verify(args)
        if args.command == "preflight":
            return cmd_preflight(args)
        return cmd_run(args)
    except ConfigError as e:
        print(f"datagen: configuration error:\n{e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("datagen: interrupted; committed shards are kept — rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
