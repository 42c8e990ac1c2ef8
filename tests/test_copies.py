"""Copies are marked and checked, as diffusers' `make repo-consistency` does: a function or class under a
`# Copied from module.Name[.attr]` comment (optionally `with old->new[, old->new]`) must read exactly as its original,
comments aside, after those replacements; a copy that drifts fails here, naming both places."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import textwrap
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "datagen"
MARK = re.compile(r"^(\s*)# Copied from (datagen(?:\.\w+)+)(?: with (.+))?$")


def _normalised(source: str) -> str:
    """A definition's code without its comments or formatting: its AST dumped."""
    return ast.dump(ast.parse(textwrap.dedent(source)), include_attributes=False)


def _original(dotted: str):
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            found = getattr(found, name)
        return found
    raise LookupError(dotted)


def marked_copies() -> list[tuple[str, int, str, str, str]]:
    """(file, line, original, replacements, the copy's source) of every marked copy in the package."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        lines = path.read_text().splitlines()
        tree = ast.parse("\n".join(lines))
        starts = {
            node.lineno: node
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        }
        for number, line in enumerate(lines, start=1):
            match = MARK.match(line)
            if not match:
                continue
            node = starts.get(number + 1)
            assert node is not None, f"{path}:{number}: `# Copied from` must stand on the line above a def or class"
            copy = "\n".join(lines[node.lineno - 1 : node.end_lineno])
            found.append((f"{path.relative_to(PACKAGE.parent)}", number, match[2], match[3] or "", copy))
    return found


def check(original: str, replacements: str, copy: str) -> bool:
    source = inspect.getsource(_original(original))
    for pair in filter(None, (p.strip() for p in replacements.split(","))):
        old, new = (side.strip() for side in pair.split("->"))
        source = source.replace(old, new)
    return _normalised(source) == _normalised(copy)


COPIES = marked_copies()


def test_the_package_marks_its_copies():
    assert any(original.endswith("DiffusionInpainter.inpaint_batch") for _, _, original, _, _ in COPIES)


@pytest.mark.parametrize(("where", "line", "original", "replacements", "copy"), COPIES)
def test_a_marked_copy_reads_as_its_original(where, line, original, replacements, copy):
    assert check(original, replacements, copy), f"{where}:{line} has drifted from {original}: copy it again"


def test_a_drifted_copy_is_caught():
    where, line, original, replacements, copy = next(c for c in COPIES if "inpaint_batch" in c[2])
    assert not check(original, replacements, copy.replace("image.cpu().numpy()", "image.cpu().numpy().copy()"))
    assert check(original, replacements, copy.replace("# the caller", "# a comment changes nothing"))
