"""The package's shape: imports run one way (the order of packages the README states), no import circles among
glassgem's modules, no oversized files, a pure model layer.

Imports are read with `ast` (nothing is imported), at module level and inside functions alike, relative
ones resolved; `from pkg import name` counts as importing `pkg.name` when that is a module.
"""

from __future__ import annotations

import ast
import re
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


# The README's order of packages (its Architecture section): a rank per top-level package or module of glassgem;
# a module may import its own rank and the ranks below, never one above.
RANKS = {
    **dict.fromkeys(("errors", "io", "config", "config_checks", "outputs", "locks", "overlay"), 0),
    **dict.fromkeys(("model", "data"), 1),
    "hub": 2,
    **dict.fromkeys(("inference", "synth"), 3),
    **dict.fromkeys(("api", "evaluation", "train", "ros2", "viz"), 4),
    **dict.fromkeys(("experiments", "demo"), 5),
    "cli": 6,
}
ROOT_RANK = 7  # glassgem/__init__.py: the user-facing names (GEM, Predictor), imported on first use


def _package(module: str) -> str:
    """glassgem.hub.pretrained -> hub; glassgem -> the root package."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "glassgem"


def _rank(module: str) -> int:
    return ROOT_RANK if module == "glassgem" else RANKS[_package(module)]


def root_imports() -> dict[str, set[str]]:
    """Module -> the names it takes from the root package `glassgem` itself (`from glassgem import x`)."""
    found: dict[str, set[str]] = {}
    for name, (path, is_pkg) in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and _absolute(node.module, node.level, name, is_pkg) == "glassgem":
                found.setdefault(name, set()).update(alias.name for alias in node.names)
    return found


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """'a -> b' for every import of a module of a higher rank (the root package only for its __version__)."""
    roots = root_imports()
    bad = []
    for module, deps in sorted(graph.items()):
        for dep in sorted(deps):
            if dep == "glassgem" and roots.get(module, set()) <= {"__version__"}:
                continue  # the version string, the one name the root defines eagerly
            if _rank(dep) > _rank(module):
                bad.append(f"{module} (rank {_rank(module)}) -> {dep} (rank {_rank(dep)})")
    return bad


def test_every_package_has_a_rank():
    assert {_package(m) for m in _modules()} - {"glassgem"} == set(RANKS)


def test_imports_run_the_way_the_readme_states():
    bad = upward_imports(import_graph())
    assert not bad, "imports against the package order:\n" + "\n".join(bad)


def readme_order() -> dict[str, int]:
    """The order the README states: `a / b → c → ...` in backticks after "Imports run one way" -> name: rank."""
    text = " ".join((SRC.parent / "README.md").read_text().split())
    m = re.search(r"Imports run one way[^`]*`([^`]+→[^`]+)`", text)
    assert m, "README: the Architecture section states the order of packages as `a / b → c → ...`"
    return {name.strip(): i for i, part in enumerate(m.group(1).split("→")) for name in part.split("/")}


def test_the_readme_states_this_order():
    assert readme_order() == RANKS


def test_the_rank_check_catches_an_upward_import():
    assert upward_imports({"glassgem.hub.pretrained": {"glassgem.inference.graphs"}}) == [
        "glassgem.hub.pretrained (rank 2) -> glassgem.inference.graphs (rank 3)"
    ]
    assert upward_imports({"glassgem.data.photos": {"glassgem.viz.tsne"}})
    assert not upward_imports({"glassgem.cli.predict": {"glassgem.inference.predictor", "glassgem.errors"}})


def test_the_graph_sees_imports_inside_functions_and_relative_ones():
    graph = import_graph()
    assert "glassgem.api" in graph["glassgem"]  # `from .api import GEM` inside __getattr__
    assert "glassgem.model.gem" in graph["glassgem.model"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    graph = import_graph()
    for module, names in root_imports().items():
        if names <= {"__version__"}:  # set by the root before it imports anything: taking it closes no circle
            graph[module].discard("glassgem")
    cycle = find_cycle(graph)
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


def test_hub_imports_only_the_model_and_the_base():
    allowed = ("glassgem.hub", "glassgem.model", "glassgem.errors", "glassgem.io", "glassgem.config")
    allowed += ("glassgem.outputs", "glassgem.locks")
    bad = {m: sorted(d for d in deps if not d.startswith(allowed)) for m, deps in import_graph().items()}
    assert not {m: d for m, d in bad.items() if m.startswith("glassgem.hub") and d}


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
