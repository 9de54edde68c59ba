"""The package's shape: no import circles among glassgem's modules, no oversized files, a pure model layer.

Imports are read with `ast` (nothing is imported), at module level and inside functions alike, relative
ones resolved; `from pkg import name` counts as importing `pkg.name` when that is a module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "glassgem"
MAX_LINES = 400
MAX_GEM_LINES = 250


def _modules() -> dict[str, tuple[Path, bool]]:
    """Module name -> (file, is a package __init__)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return found


def _absolute(module: str | None, level: int, here: str, is_pkg: bool) -> str:
    if level == 0:
        return module or ""
    base = here.split(".") if is_pkg else here.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def import_graph() -> dict[str, set[str]]:
    """Module -> the glassgem modules it imports (anywhere in the file)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, (path, is_pkg) in modules.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                deps.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(node.module, node.level, name, is_pkg)
                deps.add(base)
                deps.update(f"{base}.{alias.name}" for alias in node.names)
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return path[path.index(dep) :] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_graph_sees_imports_inside_functions_and_relative_ones():
    graph = import_graph()
    assert "glassgem.hub.pretrained" in graph["glassgem"]  # `from .hub.pretrained import GEM` inside __getattr__
    assert "glassgem.model.gem" in graph["glassgem.model"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_model_layer_imports_nothing_above_it():
    allowed = ("glassgem.model", "glassgem.config", "glassgem.errors")
    bad = {
        m: sorted(d for d in deps if not d.startswith(allowed))
        for m, deps in import_graph().items()
        if m.startswith("glassgem.model")
    }
    assert not {m: d for m, d in bad.items() if d}, bad


def test_config_and_the_model_never_import_data():
    graph = import_graph()
    for module, deps in graph.items():
        if module == "glassgem.config" or module.startswith(("glassgem.model", "glassgem.hub")):
            assert not [d for d in deps if d.startswith("glassgem.data")], module


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_source_files_stay_small(path: Path):
    lines = len(path.read_text().splitlines())
    limit = MAX_GEM_LINES if path == PACKAGE / "model" / "gem.py" else MAX_LINES
    assert lines <= limit, f"{path.relative_to(SRC)}: {lines} lines (at most {limit})"


def test_one_cli_module_per_command_each_with_register():
    """cli/: every command module has a public register(subparsers) and is assembled by cli/__init__."""
    import glassgem.cli as cli

    helpers = {"__init__", "__main__", "common"}
    names = sorted(p.stem for p in (PACKAGE / "cli").glob("*.py") if p.stem not in helpers)
    assert sorted(m.__name__.rsplit(".", 1)[1] for m in cli.COMMANDS) == names
    assert all(callable(getattr(m, "register", None)) for m in cli.COMMANDS)
