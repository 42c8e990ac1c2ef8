"""The README and docs/ kept true: every `datagen` command in their shell examples parses with the real command line
(its command, flags and choices exist), every `make` target they run exists, and every relative link points at a
file of the repository."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from datagen.cli import build_parser, look_up

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def shell_lines(page: Path) -> list[str]:
    """The commands of a page's ```sh blocks: continuations joined, comments and prompts dropped."""
    lines = []
    for language, body in FENCE.findall(page.read_text()):
        if language not in ("sh", "bash", "shell"):
            continue
        for line in body.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip().removeprefix("$ ")
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


INLINE = re.compile(r"(?<!`)`(datagen [^`]+)`(?!`)")
PLACEHOLDERS = ("[", "|", "...", "…", "<")
"""An inline command holding these is a synopsis (`datagen show OUT [--n 8]`), not an example to run."""


def inline_commands(page: Path) -> list[str]:
    """The `datagen ...` code spans of a page's prose that are whole commands (no synopsis placeholders)."""
    prose = FENCE.sub("", page.read_text())
    return [span for span in INLINE.findall(prose) if not any(mark in span for mark in PLACEHOLDERS)]


def examples(program: str) -> list[tuple[str, str]]:
    return [(page.name, line) for page in PAGES for line in shell_lines(page) if line.split()[0] == program]


def command_parser(name: str) -> argparse.ArgumentParser | None:
    """A command's parser with its flags added (they are added on first parse), or None for no such command."""
    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    command = subparsers.choices.get(name)
    if command is not None and getattr(command, "pending_flags", None):
        look_up(command.pending_flags)(command)
        command.pending_flags = None
    return command


def parse(argv: list[str]) -> argparse.Namespace:
    """argv parsed as `datagen` parses it; SystemExit on any error."""
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if argv and argv[0] in subparsers.choices:
        subparsers.choices[argv[0]] = command_parser(argv[0])
    return parser.parse_args(argv)


def test_the_pages_hold_examples_to_check():
    """Enough examples that the checks below are not vacuous (the README's first run and curation among them)."""
    found = [line for _, line in examples("datagen")]
    assert len(found) >= 10, found
    assert any(line.startswith("datagen curate ") for line in found)
    assert {line.split()[1] for _, line in examples("make")} >= {"install", "test", "generate"}


@pytest.mark.parametrize("page,line", examples("datagen"))
def test_every_datagen_example_parses(page, line):
    argv = shlex.split(line)[1:]
    try:
        parse(argv)
    except SystemExit as e:
        pytest.fail(f"{page}: `{line}` does not parse (exit {e.code})")


@pytest.mark.parametrize("page,span", [(page.name, span) for page in PAGES for span in inline_commands(page)])
def test_every_datagen_command_named_in_prose_exists_with_its_flags(page, span):
    """Prose names commands in part (`datagen generate --task all`): the command and every flag named must exist."""
    words = shlex.split(span)[1:]
    if not words or words[0] in ("-v", "--verbose", "--version", "COMMAND"):
        return
    command = command_parser(words[0])
    assert command is not None, f"{page}: `{span}`: no command {words[0]!r}"
    nested = [a for a in command._actions if isinstance(a, argparse._SubParsersAction)]
    if nested and len(words) > 1 and not words[1].startswith("-"):  # `datagen bench render ...`
        assert words[1] in nested[0].choices, f"{page}: `{span}`: {words[0]} has no {words[1]!r}"
        command = nested[0].choices[words[1]]
        if getattr(command, "pending_flags", None):
            look_up(command.pending_flags)(command)
            command.pending_flags = None
    known = {option for action in command._actions for option in action.option_strings}
    flags = {word.split("=", 1)[0] for word in words[1:] if word.startswith("--")}
    assert flags <= known, f"{page}: `{span}`: {words[0]} has no {sorted(flags - known)}"


def test_every_make_example_names_a_target():
    targets = set(re.findall(r"^([a-z][a-z0-9-]*):", (REPO / "Makefile").read_text(), re.M))
    for page, line in examples("make"):
        words = [w for w in shlex.split(line)[1:] if "=" not in w]
        assert words and set(words) <= targets, f"{page}: `{line}`: no target {set(words) - targets}"


def test_every_relative_link_points_at_a_file():
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target:
                continue
            assert (page.parent / target).exists(), f"{page.relative_to(REPO)}: link to {target} goes nowhere"


def test_the_readme_is_a_front_door():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 250, len(lines)
