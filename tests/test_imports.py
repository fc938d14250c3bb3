"""Imports run one way: backend -> functional -> layers -> model -> checkpoint's registry, with no
cycle inside the backend package (imports for type checking only do not count)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "anyml"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(path: Path) -> set[str]:
    """The anyml modules ``path`` imports when it runs (at import time or inside functions)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("anyml"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("anyml"):
            found.add(node.module)
            for alias in node.names:  # ``from anyml.backend import _standin``: a submodule
                candidate = f"{node.module}.{alias.name}"
                if (ROOT.parent / candidate.replace(".", "/")).with_suffix(".py").exists():
                    found.add(candidate)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


GRAPH = {_module_name(p): _imports(p) for p in ROOT.rglob("*.py")}


@pytest.mark.parametrize(("importer", "imported"), [
    ("anyml.checkpoint", "anyml.model"),
    ("anyml.backend._base", "anyml.backend._random"),
    ("anyml.backend._fastpath", "anyml.backend._selector"),
    ("anyml.backend._arrays", "anyml.backend._base"),
    ("anyml.backend._torch", "anyml.backend._torch_fast"),
    ("anyml.backend._cupy", "anyml.backend._cupy_fast"),
])
def test_no_import_back(importer, imported):
    assert imported not in GRAPH[importer]


def test_the_backend_package_has_no_import_cycle():
    nodes = {m for m in GRAPH if m.startswith("anyml.backend.")}
    edges = {m: {d for d in GRAPH[m] if d in nodes} for m in nodes}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in sorted(edges[m]):
            if state.get(d) == 1:
                pytest.fail(f"import cycle: {' -> '.join([*path[path.index(d):], d])}")
            if d not in state:
                visit(d, [*path, d])
        state[m] = 2

    for m in sorted(nodes):
        if m not in state:
            visit(m, [m])


def test_the_backend_imports_no_floor_above_it():
    above = ("anyml.functional", "anyml.layers", "anyml.model", "anyml.checkpoint", "anyml.optimizers",
             "anyml.losses", "anyml.activations")
    # the native fast paths reach the pure functions' helpers (their own modules say why)
    natives = {"anyml.backend._torch_fast", "anyml.backend._cupy_fast", "anyml.backend._numpy_fast_conv"}
    bad = {m: sorted(d for d in deps if d.startswith(above))
           for m, deps in GRAPH.items() if m.startswith("anyml.backend") and m not in natives}
    assert not {m: d for m, d in bad.items() if d}
