"""The command line's look for people and for log collectors: `datagen show`, JSON progress lines, clear errors."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from conftest import FAST, run_cli

from datagen.cli import COMMANDS

ARGS = ["--task", "remove", "--n", "24", "--shard-size", "8", "--workers", "0", *FAST]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    proc = run_cli("generate", "--out", str(out), *ARGS, env={"DATAGEN_LOG_EVERY": "0"})
    return out, proc


def test_progress_is_json_lines_when_stderr_is_not_a_terminal(run):
    _, proc = run
    events = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    steps = {(e["step"], e["event"]) for e in events}
    assert ("remove write", "done") in steps and ("remove render", "done") in steps
    render = [e for e in events if e["step"] == "remove render"]
    assert [e["done"] for e in render] == [1, 2, 3, 3], "every shard (interval 0), then the end"
    assert render[-1]["total"] == 3 and render[-1]["samples"] == 24 and 0 < render[-1]["kept"] <= 24
    assert all(e["time"].endswith("Z") for e in events)


def test_no_progress_silences_the_log_lines(run, tmp_path):
    proc = run_cli("generate", "--out", str(tmp_path), *ARGS, "--no-progress")
    assert not any(line.startswith("{") for line in proc.stderr.splitlines())


def test_show_prints_the_first_samples_with_scores_and_where_they_are(run):
    out, _ = run
    rows = pq.read_table(sorted((out / "shards").glob("*.parquet"))).to_pylist()
    kept = [r for r in rows if r["status"] == "kept"]
    proc = run_cli("show", str(out), "--n", "3")
    for row in kept[:3]:
        assert row["key"] in proc.stdout and row["instruction"] in proc.stdout
    assert kept[3]["key"] not in proc.stdout
    assert f"{out}/shards/remove-000000.tar" in proc.stdout and "mask_area" in proc.stdout

    lines = run_cli("show", str(out), "--n", "100", "--status", "rejected", "--json").stdout.splitlines()
    shown = [json.loads(line) for line in lines]
    assert [s["key"] for s in shown] == [r["key"] for r in rows if r["status"] == "rejected"][:100]
    assert all(s["reason"] and s["tar"] == "not stored (not kept)" for s in shown)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--task", "color"], "no committed kept color samples"),
        (["--n", "0"], "--n 0"),
    ],
)
def test_show_errors_say_what_is_wrong(run, args, message):
    out, _ = run
    proc = run_cli("show", str(out), *args, check=False)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_show_on_a_folder_with_no_run(tmp_path):
    proc = run_cli("show", str(tmp_path / "nothing"), check=False)
    assert proc.returncode == 2 and "no committed kept samples" in proc.stderr


def _commands(parser):
    """The subcommands' parsers and their lines in `datagen --help`."""
    import argparse

    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices, {line.dest: line.help for line in sub._choices_actions}


def test_the_command_table_and_the_parser_agree():
    from datagen.cli import build_parser, look_up

    parsers, helps = _commands(build_parser())
    names = [c.name for c in COMMANDS]
    assert len(set(names)) == len(names) and list(parsers) == names, "every command in the table, once, in order"
    for command in COMMANDS:
        assert command.help.strip() and "\n" not in command.help, command.name
        assert helps[command.name] == command.help, f"{command.name}: its module's add_parser says another help line"
        assert callable(look_up(command.runs)), command.runs


@pytest.mark.parametrize("name", [command.name for command in COMMANDS])
def test_every_command_builds_its_flags_and_its_help(name, capsys):
    from datagen.cli import build_parser

    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args([name, "--help"])
    assert stop.value.code == 0 and f"usage: datagen {name}" in capsys.readouterr().out


def test_datagen_help_imports_no_torch():
    import subprocess
    import sys

    code = "import sys; from datagen import cli; cli.build_parser().format_help(); print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


def test_train_flags_are_the_config_fields_with_their_defaults():
    from dataclasses import asdict

    from datagen.cli import build_parser
    from datagen.errors import ConfigError
    from datagen.train import TrainConfig, config_from_flags

    parser = build_parser()
    args = parser.parse_args(["train", "--shards", "a", "b", "--out", "o"])
    assert asdict(config_from_flags(args)) == asdict(TrainConfig(shards=["a", "b"], out="o"))
    flags = {o for a in _commands(parser)[0]["train"]._actions for o in a.option_strings}  # -h, -v: every command's
    assert flags == {"-h", "--help", "-v", "--verbose", "--shards", "--out", "--init", "--resolution",
                     "--bucket-multiple", "--batch-size", "--accumulation", "--steps", "--lr", "--checkpoint-every",
                     "--seed", "--ema", "--workers", "--min-score", "--invert-task", "--from",
                     "--no-progress"}  # fmt: skip
    given = ["--init", "x:y", "--resolution", "32", "--batch-size", "2", "--accumulation", "3", "--steps", "4",
             "--lr", "0.5", "--checkpoint-every", "5", "--seed", "6", "--ema", "0.9", "--workers", "7",
             "--min-score", "clip_dir=0.2", "--min-score", "dino=0.5", "--invert-task", "remove",
             "--from", "ck"]  # fmt: skip
    config = config_from_flags(parser.parse_args(["train", "--shards", "a", "--out", "o", *given, "--no-progress"]))
    assert (config.init, config.resolution, config.batch_size, config.accumulation) == ("x:y", 32, 2, 3)
    assert config.steps == 4
    assert (config.lr, config.checkpoint_every, config.seed, config.ema, config.workers) == (0.5, 5, 6, 0.9, 7)
    assert config.min_score == {"clip_dir": 0.2, "dino": 0.5}
    assert (config.invert_task, config.invert_from) == ("remove", "ck")
    with pytest.raises(ConfigError, match="--min-score 'clip_dir': expected SCORE=MIN, e.g. clip_dir=0.2"):
        config_from_flags(parser.parse_args(["train", "--shards", "a", "--out", "o", "--min-score", "clip_dir"]))
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--shards", "a", "--out", "o", "--steps", "many"])
