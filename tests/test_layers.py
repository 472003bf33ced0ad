"""The package's import graph, computed from the source with ``ast``: layers point one way and
nothing imports in a circle, function-level imports included (``if TYPE_CHECKING:`` ones are
not imports at run time and are left out).

    errors, _version  <-  _check, _gc  <-  derive  <-  backends  <-  runtime  <-  the rest
        <-  rngstate (the package) and its command line

A module may import from its own layer or any layer below it, never from a layer above.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "rngstate"

# module -> layer; modules not listed are "the rest" (cli, data, scope, snapshot, ...).
LAYERS = {
    "rngstate.errors": 0,
    "rngstate._version": 0,
    "rngstate._check": 1,
    "rngstate._gc": 1,
    "rngstate.derive": 2,
    "rngstate.backends": 3,  # and every rngstate.backends.* module
    "rngstate.runtime": 4,
}
REST = 5
TOP = 6  # the package itself, and the command line: applications of the whole package
APPLICATIONS = {"rngstate", "rngstate.cli", "rngstate.__main__"}
NAMES = {0: "errors", 1: "_check", 2: "derive", 3: "backends", 4: "runtime", 5: "the rest", 6: "rngstate"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> int:
    if module in APPLICATIONS:
        return TOP
    if module.startswith("rngstate.backends."):
        return LAYERS["rngstate.backends"]
    return LAYERS.get(module, REST)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _targets(node: ast.Import | ast.ImportFrom, importer: str) -> set[str]:
    """The package modules an import statement loads (``from rngstate import x``: the module
    ``rngstate.x`` if there is one, else the package itself)."""
    found: set[str] = set()
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name == "rngstate" or alias.name.startswith("rngstate."):
                found.add(alias.name)
        return found
    base = node.module or ""
    if node.level:  # relative: resolved against the importing module's package
        package = importer.split(".")
        if MODULES[importer].name != "__init__.py":
            package = package[:-1]
        package = package[: len(package) - node.level + 1]
        base = ".".join([*package, *([base] if base else [])])
    if base != "rngstate" and not base.startswith("rngstate."):
        return found
    for alias in node.names:
        candidate = f"{base}.{alias.name}"
        found.add(candidate if candidate in MODULES else base)
    return found


def imports(module: str) -> set[str]:
    """Every package module ``module`` imports, at module level or inside functions."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.update(_targets(node, module))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    found.discard(module)
    return {target for target in found if target in MODULES}


GRAPH = {module: imports(module) for module in MODULES}


def test_the_graph_is_read() -> None:
    assert "rngstate.backends" in GRAPH["rngstate.runtime"]
    assert "rngstate.runtime" in GRAPH["rngstate.scope"]
    assert GRAPH["rngstate.errors"] == set()


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module: str) -> None:
    upward = sorted(target for target in GRAPH[module] if layer(target) > layer(module))
    assert not upward, (
        f"{module} ({NAMES[layer(module)]}) imports {upward} from a layer above "
        f"({', '.join(NAMES[layer(target)] for target in upward)}); pass what it needs down "
        "instead (e.g. rngstate.backends.Listener)"
    )


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path (first module repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state:
                cycle = walk(target)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = walk(node)
            if cycle:
                return cycle
    return None


def test_no_import_cycle() -> None:
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_cycles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_type_checking_imports_are_left_out() -> None:
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from rngstate import runtime\n"
    tree = ast.parse(source)
    node = tree.body[1]
    assert isinstance(node, ast.If) and _is_type_checking(node)
