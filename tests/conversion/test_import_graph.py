"""conversion/'s import graph, read from the source: no circles (function-level imports included, since a lazy
import is how the last one was hidden) and no module importing another's private names."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.server import REPO_ROOT

PACKAGE = REPO_ROOT / "conversion"


def imports_of(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) for every `import conversion.x` / `from conversion.x import ...`, at any depth."""
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("conversion."):
            found.append((node.module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name.startswith("conversion.")]
    return found


def graph() -> dict[str, set[str]]:
    return {f"conversion.{path.stem}": {module for module, _ in imports_of(path)} for path in PACKAGE.glob("*.py")}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every import path that comes back to where it started (depth-first, each cycle reported once per entry)."""
    found: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        for nxt in sorted(edges.get(node, ())):
            if nxt == path[0]:
                found.append([*path, nxt])
            elif nxt not in path and nxt > path[0]:  # start each cycle at its smallest module: reported once
                visit(nxt, [*path, nxt])

    for start in sorted(edges):
        visit(start, [start])
    return found


def test_the_cycle_finder_finds_a_hidden_circle() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(edges) == [["a", "b", "c", "a"]]


def test_conversion_has_no_import_circle() -> None:
    edges = graph()
    assert "conversion.architectures" in edges and "conversion.heads" in edges["conversion.reference"]
    assert cycles(edges) == []


def test_no_module_imports_another_modules_private_names() -> None:
    private = [
        f"{path.name}: {module}.{name}"
        for path in PACKAGE.glob("*.py")
        for module, names in imports_of(path)
        for name in names
        if name.startswith("_")
    ]
    assert private == []


def test_the_registry_and_the_photos_import_nothing_above_them() -> None:
    """architectures.py (the modules) and photos.py (the data) are leaves: fitting, training and the card build
    on them, never the other way round."""
    edges = graph()
    assert edges["conversion.architectures"] == set()
    assert edges["conversion.photos"] == set()
