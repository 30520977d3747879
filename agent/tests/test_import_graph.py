"""The agent's import graph: the core knows no protocol, and nothing imports in a circle.

Read from the source with ``ast`` (nothing is imported): every ``import`` and ``from ...
import`` that runs, at module level or inside a function, but not the ones under ``if
TYPE_CHECKING:`` (they never run). Importing ``a.b.c`` also imports the packages ``a`` and
``a.b``, so those count as edges too, except a module's own enclosing packages (a
package's ``__init__`` re-exporting its modules is how Python packages work, not a cycle).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

SRC = Path(__file__).resolve().parents[1] / "src"
#: the one registration point may name subsystems (it does so by reference, even)
REGISTRATION_POINT = "vigil.subsystems"
#: the protocol subsystems (their own packages may import themselves)
SUBSYSTEMS = ("vigil.bfd", "vigil.vrrp", "vigil.ipvs")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(SRC.glob("vigil/**/*.py"))}


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _type_checking(node):
            yield from (n for child in node.orelse for n in _runtime_imports(child))
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        yield from _runtime_imports(node)


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The vigil modules ``name`` imports when it runs."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _runtime_imports(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names]
            targets = [t if t in known else base for t in targets]
        for target in targets:
            if not target.startswith("vigil"):
                continue
            parts = target.split(".")
            for i in range(1, len(parts) + 1):  # the packages on the way are imported too
                prefix = ".".join(parts[:i])
                if prefix in known and prefix != name and not _inside(name, prefix):
                    found.add(prefix)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def _inside(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_the_graph_sees_the_imports_we_know_of() -> None:
    g = graph()
    assert "vigil.config.loader" in g["vigil.config"]
    assert "vigil.vrrp.machine" in g["vigil.vrrp.runtime"]
    assert "vigil.subsystem" in g["vigil.vrrp"]


def test_only_a_subsystem_and_the_registration_point_import_it() -> None:
    offenders = []
    for name, targets in graph().items():
        for sub in SUBSYSTEMS:
            if _inside(name, sub) or name == REGISTRATION_POINT:
                continue
            bad = sorted(t for t in targets if _inside(t, sub))
            if bad:
                offenders.append(f"{name} imports {', '.join(bad)}")
    assert not offenders, "the core must not import a subsystem:\n" + "\n".join(offenders)


def test_there_are_no_import_cycles() -> None:
    g = graph()
    # Tarjan's strongly connected components; any component of more than one module
    # (or a module importing itself) is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(g):
        if v not in index:
            visit(v)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)
