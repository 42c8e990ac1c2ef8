"""`datagen`: make instruction-based image-editing data, look at it, and train and measure an editor on it.

The command line: the table of commands, their flags, and the commands that are a few lines each. Each command runs
as `function(args) -> exit code` in the module the table names. Its flags are added only when it is parsed, so
`datagen --help` imports nothing heavy (train's come from TrainConfig, in a module that needs torch).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

from datagen import __version__

EPILOG = "Example: datagen generate --task remove --pipeline local --n 200 --out out/remove"
VERBOSE_HELP = "show the library messages datagen silences as known to be harmless (datagen/quiet.py)"


@dataclass(frozen=True)
class Command:
    """A `datagen` subcommand: its line in `datagen --help`, what runs it and what adds its flags."""

    name: str
    help: str
    runs: str
    """The "module:function" called with the parsed arguments; it returns the exit code."""
    flags: str | None
    """The "module:function" adding the command's flags to its parser; None where the running module's
    `add_parser(subparsers)` registers the command itself (with this help line: a test holds them equal)."""


COMMANDS = (
    Command("curate", "gate photos (size, shape, blur, NSFW, aesthetics) and drop near-duplicates: a set --source "
            "curated reads", "datagen.curate:run", "datagen.curate:flags"),
    Command("generate", "write instructions, then render, filter and shard them (resumable)",
            "datagen.runner:run", "datagen.runner:flags"),
    Command("write", "phase 1: captions and edit instructions -> OUT/texts/*.jsonl",
            "datagen.runner:run", "datagen.runner:flags"),
    Command("render", "phase 2: instructions -> images, scores, filters -> OUT/shards/*.tar|parquet|stats.json",
            "datagen.runner:run", "datagen.runner:flags"),
    Command("verify", "check every committed shard of a run",
            "datagen.shards.verify:run", "datagen.shards.verify:flags"),
    Command("export", "export a run's committed shards as a Hugging Face parquet dataset, an imagefolder or "
            "preference pairs", "datagen.export:run", None),
    Command("report", "write a static HTML report of a run: counts, reject reasons, score histograms, throughput, "
            "gallery", "datagen.report:run", None),
    Command("bench", "speed against a baseline measured in the same run (datagen/bench.py)",
            "datagen.bench:run", None),
    Command("show", "print a few samples of a run: instruction, captions, scores, where they are",
            "datagen.shards.show:run", "datagen.shards.show:flags"),
    Command("train", "train the editing model on shards",
            "datagen.train:run", "datagen.train:flags"),
    Command("edit", "edit an image with a trained checkpoint (multi-turn: repeat --instruction)",
            "datagen.edit:run", "datagen.edit:flags"),
    Command("classify", "train the task classifier on shards, or classify instructions",
            "datagen.classifier:run", "datagen.classifier:flags"),
    Command("eval", "CLIP_dir, CLIP_img, CLIP_out, L1, DINO per task; with --judge, VIEScore's SC, PQ, O",
            "datagen.evaluate:run", "datagen.evaluate:flags"),
    Command("review", "label a run's pairs in the browser (good / bad / unsure) for calibrate",
            "datagen.review:run", "datagen.review:flags"),
    Command("labels", "the labels store: import Label Studio's JSON export into OUT/labels/",
            "datagen.label_studio:run", "datagen.label_studio:flags"),
    Command("calibrate", "measure every gate and the judge of a run against its labels; suggest thresholds",
            "datagen.calibrate:run", "datagen.calibrate:flags"),
    Command("tasks", "list every task: group, generator, the pipelines it runs on",
            "datagen.resolve:tasks", "datagen.resolve:tasks_flags"),
    Command("preflight", "check that every model a pipeline names is on this machine",
            "datagen.preflight:run", "datagen.preflight:flags"),
)  # fmt: skip


def look_up(target: str) -> Callable:
    """The function a "module:function" names. This module's own come from here: under `python -m datagen.cli` it
    is __main__, and importing it again would load it twice."""
    module, _, name = target.partition(":")
    return (globals() if module == "datagen.cli" else vars(importlib.import_module(module)))[name]


class CommandParser(argparse.ArgumentParser):
    """A command's parser that adds its flags the first time it parses, so only the chosen command's module is
    imported (train's needs torch)."""

    def __init__(self, *args, flags: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.pending_flags = flags
        """The "module:function" that adds the flags, until they are added."""
        # also after the command (`datagen bench render -v`); SUPPRESS keeps a `datagen -v` given before it
        self.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)

    def parse_known_args(self, args=None, namespace=None):
        if self.pending_flags is not None:
            add, self.pending_flags = self.pending_flags, None
            look_up(add)(self)
        return super().parse_known_args(args, namespace)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="datagen", description=__doc__.split("\n\n")[0], epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"datagen {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help=VERBOSE_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=CommandParser)
    for command in COMMANDS:
        if command.flags is None:
            importlib.import_module(command.runs.partition(":")[0]).add_parser(sub)
        else:
            sub.add_parser(command.name, help=command.help, description=command.help, flags=command.flags)
    return parser


def main(argv: list[str] | None = None) -> int:
    from datagen.errors import ConfigError, RunStopped
    from datagen.quiet import VERBOSE, quiet

    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # run.json keeps the command that started a run
    if args.verbose:
        os.environ[VERBOSE] = "1"  # for this process and the workers it starts
    quiet()
    runs = next(command.runs for command in COMMANDS if command.name == args.command)
    try:
        return look_up(runs)(args)
    except ConfigError as e:
        print(f"datagen: configuration error:\n{e}", file=sys.stderr)
        return 2
    except RunStopped as e:
        print(f"datagen: run stopped: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("datagen: interrupted; committed shards are kept — rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
