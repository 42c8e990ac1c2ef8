"""No import circles among datagen's modules, counting imports made inside functions (which only hide a circle)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "datagen"


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(package_dir: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package's modules it imports anywhere in its body (functions included); `from datagen import
    x` names x's module when x is one."""
    modules = {module_name(p, package_dir): p for p in package_dir.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: up from this module's package
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parent + ([base] if base else []))
                named = [f"{base}.{alias.name}" for alias in node.names]
                targets = [target if target in modules else base for target in named]
            else:
                continue
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name and not name.startswith(f"{target}."):
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_circles():
    assert cycles(imports()) == []


def test_the_finder_sees_a_circle_hidden_inside_a_function(tmp_path):
    package = tmp_path / "datagen"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from datagen.sub import b\n")
    (package / "sub" / "b.py").write_text("def f():\n    from datagen import a\n    return a\n")
    (package / "c.py").write_text("from .a import x\n")
    graph = imports(package)
    assert graph["datagen.c"] == {"datagen.a"}
    assert cycles(graph) == [["datagen.a", "datagen.sub.b"]]


def test_errors_and_scores_import_nothing_of_datagen():
    graph = imports()
    assert graph["datagen.errors"] == set() and graph["datagen.scores"] == set()
    assert "datagen.config" not in graph["datagen.record"], "the basic record does not pull in pydantic"


def test_the_readme_map_names_every_module():
    """README's "How it fits together" names each module and package of datagen/, and nothing that is not there."""
    import re

    readme = (PACKAGE.parent / "README.md").read_text()
    section = readme.split("## How it fits together", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`([a-z_]+(?:\.py|/))`", section)) - {"datagen/"}
    top = {p.name + "/" for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    top |= {p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"}
    inside = {f.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists() for f in p.glob("*.py")}
    assert top - named == set(), "modules and packages the map does not mention"
    assert named - top - inside == set(), "names in the map that are no module or package"
