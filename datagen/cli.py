"""`datagen`: make instruction-based image-editing data, look at it, and train and measure an editor on it.

The command line: the table of commands, their flags, and the commands that are a few lines each. Each command runs
as `function(args) -> exit code` in the module the table names. Its flags are added only when it is parsed, so
`datagen --help` imports nothing heavy (train's come from TrainConfig, in a module that needs torch).
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from datagen import __version__

EPILOG = "Example: datagen generate --task remove --pipeline local --n 200 --out out/remove"


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
    Command("generate", "write instructions, then render, filter and shard them (resumable)",
            "datagen.cli:cmd_run", "datagen.cli:run_flags"),
    Command("write", "phase 1: captions and edit instructions -> OUT/texts/*.jsonl",
            "datagen.cli:cmd_run", "datagen.cli:run_flags"),
    Command("render", "phase 2: instructions -> images, scores, filters -> OUT/shards/*.tar|parquet|stats.json",
            "datagen.cli:cmd_run", "datagen.cli:run_flags"),
    Command("verify", "check every committed shard of a run",
            "datagen.cli:cmd_verify", "datagen.cli:verify_flags"),
    Command("export", "export a run's committed shards as a Hugging Face parquet dataset or an imagefolder",
            "datagen.export:run", None),
    Command("report", "write a static HTML report of a run: counts, reject reasons, score histograms, throughput, "
            "gallery", "datagen.report:run", None),
    Command("bench", "speed against a baseline measured in the same run (datagen/bench.py)",
            "datagen.bench:run", None),
    Command("show", "print a few samples of a run: instruction, captions, scores, where they are",
            "datagen.cli:cmd_show", "datagen.cli:show_flags"),
    Command("train", "train the editing model on shards",
            "datagen.cli:cmd_train", "datagen.cli:train_flags"),
    Command("edit", "edit an image with a trained checkpoint (multi-turn: repeat --instruction)",
            "datagen.cli:cmd_edit", "datagen.cli:edit_flags"),
    Command("classify", "train the task classifier on shards, or classify instructions",
            "datagen.classifier:run", "datagen.cli:classify_flags"),
    Command("eval", "CLIP_dir, CLIP_img, CLIP_out, L1, DINO per task",
            "datagen.evaluate:run", "datagen.cli:eval_flags"),
    Command("tasks", "list every task: group, generator, the pipelines it runs on",
            "datagen.cli:cmd_tasks", "datagen.cli:tasks_flags"),
    Command("preflight", "check that every model a pipeline names is on this machine",
            "datagen.cli:cmd_preflight", "datagen.cli:preflight_flags"),
)  # fmt: skip


def look_up(target: str) -> Callable:
    """The function a "module:function" names. This module's own come from here: under `python -m datagen.cli` it
    is __main__, and importing it again would load it twice."""
    module, _, name = target.partition(":")
    return (globals() if module == "datagen.cli" else vars(importlib.import_module(module)))[name]


class CommandParser(argparse.ArgumentParser):
    """A command's parser that adds its flags the first time it parses, so only the chosen command's are built."""

    def __init__(self, *args, flags: Callable[[argparse.ArgumentParser], None] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.pending_flags = flags

    def parse_known_args(self, args=None, namespace=None):
        if self.pending_flags is not None:
            add, self.pending_flags = self.pending_flags, None
            add(self)
        return super().parse_known_args(args, namespace)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="datagen", description=__doc__.split("\n\n")[0], epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"datagen {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=CommandParser)
    for command in COMMANDS:
        if command.flags is None:
            importlib.import_module(command.runs.partition(":")[0]).add_parser(sub)
        else:
            sub.add_parser(command.name, help=command.help, description=command.help, flags=look_up(command.flags))
    return parser


# ------------------------------------------------------------------------------------------------------ flags


def run_flags(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.add_argument("--out", required=True, help="run directory (created; an existing run there is resumed)")
    parser.add_argument(
        "--task",
        help="task name in tasks/, a task YAML path, 'all' (every task the pipeline runs) or a,b,... (omit to resume)",
    )
    parser.add_argument("--tasks", help="a mixture with weights: remove:0.2,add:0.1,... (N is shared by weight)")
    parser.add_argument("--pipeline", help="pipeline name in pipelines/ (default: local)")
    parser.add_argument("--n", type=int, help="samples to attempt; kept ones are fewer (default: 200)")
    parser.add_argument("--seed", type=int, help="run seed (default: 0)")
    parser.add_argument("--shard-size", type=int, help="samples per shard (default: 100)")
    parser.add_argument(
        "--source",
        help="input source: scene (procedural), images (a folder), shards (WebDataset tars with captions), "
        "captions (a .txt/.jsonl/.parquet file) or topics (the LLM writes captions); default: the task's first",
    )
    parser.add_argument("--input", help="the source's input: image folder, tar folder, caption file or topic file")
    parser.add_argument(
        "--repeat",
        action="store_true",
        help="--source images: let --n exceed the number of images, reusing them (without it such a run stops "
        "before any work)",
    )
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


def verify_flags(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Check every committed shard: tar readable and safe, members of a key contiguous and complete, counts agree "
        "across tar, parquet and stats, checksums match. Exits 1 on any problem."
    )
    parser.add_argument("out", help="run directory")
    parser.add_argument("--json", action="store_true", help="print the verdict as JSON")


def show_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", help="run directory or URL")
    parser.add_argument("--n", type=int, default=8, help="how many (default: 8)")
    parser.add_argument("--task", help="only this task")
    parser.add_argument(
        "--status", default="kept", choices=["kept", "rejected", "error", "all"], help="(default: kept)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per line")


def train_flags(parser: argparse.ArgumentParser) -> None:
    from datagen.train import add_flags

    parser.description = (
        "Train an InstructPix2Pix-style editor with task embeddings on shards (datagen/train.py); resumes from OUT's "
        "last checkpoint."
    )
    add_flags(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (or JSON lines)")


def edit_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="a training run folder or one of its checkpoints")
    parser.add_argument("--image", required=True)
    parser.add_argument("--instruction", action="append", required=True, help="repeat for multi-turn editing")
    parser.add_argument("--task", help="task of the instruction (default: --classifier's prediction)")
    parser.add_argument("--classifier", help="task classifier folder (datagen classify) used when --task is not given")
    parser.add_argument("--out", required=True, help="PNG to write (turn k also as OUT-k.png when several)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--image-guidance", type=float, default=1.5)
    parser.add_argument("--text-guidance", type=float, default=5.0)
    parser.add_argument(
        "--alpha", type=float, default=0.03, help="multi-turn: keep a new pixel only if it changed this much"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (or JSON lines) over the steps")


def classify_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shards", nargs="+", help="train on the instructions in these runs or .tar files")
    parser.add_argument("--model", required=True, help="classifier folder (written when training, read otherwise)")
    parser.add_argument("--instruction", action="append", default=[], help="classify this instruction (repeatable)")


def eval_flags(parser: argparse.ArgumentParser) -> None:
    from datagen import evaluate

    parser.description = evaluate.__doc__
    parser.add_argument("--shards", nargs="+", help="run folders or .tar files: their pairs, or a checkpoint's edits")
    parser.add_argument("--benchmark", help="a benchmark-format parquet (needs --checkpoint)")
    parser.add_argument("--checkpoint", help="evaluate this model's edits instead of the stored outputs")
    parser.add_argument("--pipeline", default="sd15", help="whose clip and dino roles measure (default: sd15)")
    parser.add_argument("--limit", type=int, help="at most this many pairs")
    parser.add_argument("--json", help="also write the numbers here")
    parser.add_argument("--batch-size", type=int, default=8, help="pairs edited and embedded together (default: 8)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (or JSON lines) over the pairs")


def tasks_flags(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "List every task in tasks/ with its group, its generators (neural and local) and the pipelines in pipelines/ "
        "it runs on."
    )
    parser.add_argument("--json", action="store_true", help="as JSON, with the reason a task does not run somewhere")


def preflight_flags(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "List each weighted role's model and where it was found; for a missing one, the command that fetches it. "
        "Tiny models are built. Exits 1 if any is missing. Nothing is downloaded."
    )
    parser.add_argument("--pipeline", required=True, help="pipeline name in pipelines/ or a YAML path")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="override a pipeline field, e.g. roles.clip.model=/models/clip",
    )


# --------------------------------------------------------------------------------------------- commands


RUN_DEFAULTS = {"pipeline": "local", "n": 200, "seed": 0, "shard_size": 100}


def parse_mixture(text: str) -> dict[str, float]:
    """'remove:0.2,add:0.1' -> weights; 'remove,add' -> equal weights."""
    from datagen.errors import ConfigError

    weights = {}
    for part in text.split(","):
        name, _, weight = part.strip().partition(":")
        try:
            value = float(weight) if weight else 1.0
        except ValueError:
            value = -1.0
        if not name or not math.isfinite(value) or value <= 0:
            raise ConfigError(f"--tasks {text!r}: expected NAME[:WEIGHT],... with positive weights (got {part!r})")
        weights[name] = weights.get(name, 0.0) + value
    return weights


def resolve_configs(args: argparse.Namespace) -> list:
    """The run's task configurations: one task, a mixture (--tasks, or --task all / a,b), or OUT's run.json."""
    from datagen.config import known
    from datagen.errors import ConfigError
    from datagen.resolve import load_run
    from datagen.runner import load_runs, split_n

    if not args.task and not args.tasks:
        given = [f"--{name.replace('_', '-')}" for name in RUN_DEFAULTS if getattr(args, name) is not None]
        given += ["--set"] * bool(args.overrides) + ["--source"] * bool(args.source) + ["--input"] * bool(args.input)
        given += ["--repeat"] * bool(args.repeat)
        if given:
            raise ConfigError(
                f"{', '.join(given)} given without --task: resuming {args.out} uses its run.json as it is; start a "
                f"new run (another --out) to change the configuration"
            )
        return load_runs(args.out)
    if args.task and args.tasks:
        raise ConfigError("give --task or --tasks, not both")
    for name, default in RUN_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    spec = args.tasks or args.task
    weights = {name: 1.0 for name in known("tasks")} if spec == "all" else parse_mixture(spec)

    def load(name: str, n: int):
        return load_run(
            name,
            args.pipeline,
            out=args.out,
            n=n,
            seed=args.seed,
            shard_size=args.shard_size,
            source=args.source,
            input=args.input,
            repeat=args.repeat,
            overrides=args.overrides,
        )

    skipped = []
    if spec == "all":  # every task the pipeline runs, N shared among those
        for name in list(weights):
            try:
                load(name, 1)
            except ConfigError as e:
                skipped.append(f"{name}: {str(e).splitlines()[0]}")
                del weights[name]
    if args.n < 1:
        raise ConfigError(f"--n {args.n}: allowed: a positive number of samples")
    counts = split_n(args.n, weights) if weights else {}
    configs = [load(name, n) for name, n in counts.items() if n > 0]
    if skipped:
        print(f"skipped {len(skipped)} task(s) pipeline {args.pipeline!r} cannot run:", file=sys.stderr)
        for line in skipped:
            print(f"  {line}", file=sys.stderr)
    if not configs:
        raise ConfigError(f"no task of {spec!r} runs on pipeline {args.pipeline!r}")
    return configs


def cmd_preflight(args: argparse.Namespace) -> int:
    from datagen.preflight import preflight
    from datagen.resolve import load_pipeline

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
    from datagen.runner import execute_all

    configs = resolve_configs(args)
    from datagen.resolve import roles_used

    require(configs[0].pipeline, args.command, set().union(*(roles_used(c, args.command) for c in configs)))
    summaries = execute_all(
        configs, args.command, ray_address=args.ray_address, workers=args.workers, progress=not args.no_progress
    )
    failed = False
    for config, summary in zip(configs, summaries, strict=True):
        for line in summary.lines(config.task.name, config.run.out):
            print(line)
        failed |= bool(summary.failed or (summary.written and summary.written.failed))
    if len(summaries) > 1 and args.command != "write":
        kept, samples = sum(s.kept for s in summaries), sum(s.samples for s in summaries)
        print(f"all {len(summaries)} tasks: {kept} kept of {samples} attempted")
    if args.command != "write":
        out = configs[0].run.out
        print(f"  shards: {out.rstrip('/')}/shards (check them with: datagen verify {out})")
    return 1 if failed else 0


def cmd_tasks(args: argparse.Namespace) -> int:
    """Every task: group, generators, and the pipelines it runs on (or why not)."""
    import tempfile

    from datagen.config import TaskSpec, find_config, known, read_yaml, validate
    from datagen.errors import ConfigError
    from datagen.resolve import load_run

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for name in known("tasks"):
            path = find_config("tasks", name)
            task = validate(TaskSpec, read_yaml(path), str(path))
            runs, why = [], {}
            for pipeline in known("pipelines"):
                try:
                    load_run(name, pipeline, out=scratch, n=1)
                    runs.append(pipeline)
                except ConfigError as e:
                    why[pipeline] = str(e).splitlines()[0]
            neural = task.generator.kind if task.generator else "-"
            local = task.local if isinstance(task.local, str) else (task.local.kind if task.local else neural)
            rows.append(
                {
                    "task": name,
                    "group": task.group,
                    "generator": neural,
                    "local": local,
                    "pipelines": runs,
                    "not_on": why,
                    "description": task.description,
                }
            )
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'task':<11} {'group':<12} {'generator':<17} {'local':<17} pipelines")
    for row in rows:
        print(
            f"{row['task']:<11} {row['group']:<12} {row['generator']:<17} {row['local']:<17} "
            f"{', '.join(row['pipelines']) or '(none yet)'}"
        )
    print(f"{len(rows)} tasks; `datagen tasks --json` says why a task does not run on a pipeline")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from datagen.train import config_from_flags, train

    result = train(config_from_flags(args), progress=not args.no_progress)
    print(f"step {result['step']}: loss {result['loss']:.4f}; checkpoint {result['checkpoint']}")
    return 0


def cmd_edit(args: argparse.Namespace) -> int:
    from datagen.images import BadImage, decode_image
    from datagen.progress import Progress
    from datagen.train import edit, keep_changed, load_editor, to_png

    model = load_editor(args.checkpoint)
    try:
        image = decode_image(Path(args.image).read_bytes(), 50_000_000)
    except (OSError, BadImage) as e:
        print(f"datagen: --image {args.image}: {e}", file=sys.stderr)
        return 2
    task = args.task
    if task is None and args.classifier:
        from datagen.classifier import TaskClassifier

        task = TaskClassifier.load(args.classifier).predict([args.instruction[0]])[0]
    task = task or model.tasks[0]
    current = image
    turns = len(args.instruction)
    with Progress(turns * args.steps, "edit", unit="step", enabled=not args.no_progress) as bar:
        for turn, instruction in enumerate(args.instruction, 1):  # each turn edits the previous one's result
            bar.update(0, turn=f"{turn}/{turns}")
            new = edit(model, current, instruction, task, args.steps, args.image_guidance, args.text_guidance,
                       args.seed, on_step=lambda done, steps: bar.update(1))  # fmt: skip
            current = keep_changed(current[: new.shape[0], : new.shape[1]], new, args.alpha) if turn > 1 else new
            if turns > 1:
                Path(f"{Path(args.out).with_suffix('')}-{turn}.png").write_bytes(to_png(current))
    Path(args.out).write_bytes(to_png(current))
    print(f"wrote {args.out} ({len(args.instruction)} turn(s), task {task})")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """A quick look: the first N samples (of a task, of a status) with everything known about them."""
    from itertools import islice

    from datagen.errors import ConfigError
    from datagen.shards import manifest_rows

    if args.n < 1:
        raise ConfigError(f"--n {args.n}: give a positive number of samples")
    rows = list(islice(manifest_rows(args.out, args.task, None if args.status == "all" else args.status), args.n))
    if not rows:
        what = " ".join(x for x in (args.status if args.status != "all" else "", args.task or "", "samples") if x)
        raise ConfigError(f"{args.out}: no committed {what} (check the run with: datagen verify {args.out})")
    root = args.out.rstrip("/")
    for row in rows:
        scores = {k[len("score_") :]: v for k, v in row.items() if k.startswith("score_") and v is not None}
        where = f"{root}/shards/{row['shard_name']}.tar" if row["status"] == "kept" else "not stored (not kept)"
        if args.json:
            keep = ("key", "task", "status", "reason", "instruction", "input_caption", "output_caption", "objects")
            print(json.dumps({**{k: row[k] for k in keep}, "scores": scores, "tar": where}, ensure_ascii=False))
            continue
        print(f"{row['key']}  [{row['task']}] {row['status']}" + (f": {row['reason']}" if row["reason"] else ""))
        print(f"  instruction:    {row['instruction']}")
        print(f"  input caption:  {row['input_caption']}")
        print(f"  output caption: {row['output_caption']}")
        if row["objects"]:
            print(f"  objects:        {', '.join(row['objects'])}")
        print("  scores:         " + ", ".join(f"{k} {v:.3f}" for k, v in sorted(scores.items())))
        print(f"  tar:            {where}" + (f" ({row['key']}.input|output|mask|json|txt)" if "tar" in where else ""))
    return 0


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
    from datagen.errors import ConfigError, RunStopped

    args = build_parser().parse_args(argv)
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
