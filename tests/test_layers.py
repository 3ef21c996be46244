"""Imports in gridsim run one way, and in no circle (DESIGN.md, "Layers (v0.2)").

Every import is read with ``ast``: at module level and inside functions, ``import x`` and
``from x import y``, relative ones, and ``importlib.import_module("gridsim...")`` with a literal
name. Importing ``a.b.c`` also runs the package ``a.b``'s ``__init__``, so that package counts
as imported too (except the importer's own packages, which always load first).

Imports under ``if TYPE_CHECKING:`` obey both rules like any other: a type named is still a
dependency (the policy registry naming ``Grid`` for an annotation was how the scenario came to
depend on the grid), and type-only circles are how run-time circles come back. The one module
left out is the package root, ``gridsim/__init__.py``: it is the public facade, which imports
``run``, ``scenario`` and ``sweep`` lazily, on first attribute access, for the analyst. Modules
may read its ``__version__``; any other name taken from it counts as an import of the module
the facade gets it from.
"""

from __future__ import annotations

import ast
import fnmatch
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gridsim"

# Module name pattern -> layer, lowest first; the first pattern that matches a module wins.
# Every module must match one, so a new module has to be placed before its imports are checked.
LAYERS: tuple[tuple[str, int], ...] = (
    # 0: units and errors (they import nothing of gridsim)
    ("gridsim.scenario.units", 0),
    ("gridsim.scenario.errors", 0),
    ("gridsim.numbers", 0),  # formatting numbers for people
    ("gridsim.erlang", 0),  # Erlang C, for the engines' laws and pooling's sizing
    ("gridsim.kpis", 0),  # the KPI registry (imports numbers lazily)
    # 1: catalogue and metrics primitives, and the policy names the scenario layer checks
    ("gridsim.catalog", 1),
    ("gridsim.catalog.*", 1),
    ("gridsim.fleet", 1),  # the fleet inventory: package data, read like the catalogue
    ("gridsim.metrics", 1),
    ("gridsim.metrics.*", 1),
    ("gridsim.policies", 1),  # the package's __init__ holds only the registry's names
    ("gridsim.policies.registry", 1),
    ("gridsim.power", 1),  # hourly profiles and tariffs per province: package data
    ("gridsim.power.profiles", 1),
    ("gridsim.power.tariffs", 1),
    # 2: the scenario language (trace files are read while a scenario is validated)
    ("gridsim.scenario", 2),
    ("gridsim.scenario.*", 2),
    # 3: what a scenario describes
    ("gridsim.topology", 3),
    ("gridsim.latency_targets", 3),  # the 1 / 5 / 20 ms policy targets on the topology
    ("gridsim.serving", 3),
    ("gridsim.service", 3),  # serving modes as stations and stages, over the serving model
    ("gridsim.demand", 3),
    ("gridsim.demand.*", 3),
    ("gridsim.pooling", 3),  # several models on shared cards: memory, switches, Erlang C sizing
    ("gridsim.power.sites", 3),  # each node's hourly carbon, price and green share
    ("gridsim.market.outputs", 7),  # a run's tables per plan, model and tier (as economics)
    ("gridsim.market", 3),  # token plans and model mixes, expanded into the engines' classes
    ("gridsim.market.*", 3),
    # 4
    ("gridsim.grid", 4),
    ("gridsim.capacity_timeline", 4),  # replicas, cards and power over time, from the events
    ("gridsim.calibration", 4),  # the serving model against published figures
    # 5: policies over a grid
    ("gridsim.policies.*", 5),
    # 6: engines, and the estimate of a run by the engines' own rules (fidelity_of)
    ("gridsim.engine", 6),
    ("gridsim.engine.*", 6),
    ("gridsim.estimate", 6),
    ("gridsim.training.outcome", 7),  # the training block, from a run's tables (as economics)
    ("gridsim.training", 6),  # training on the cards the engines' pools lend, as engine actions
    ("gridsim.training.*", 6),
    # 7: economics works on a run's tables
    ("gridsim.economics", 7),
    ("gridsim.power.summary", 7),  # green share by site, from economics' intervals
    # 8
    ("gridsim.run", 8),
    # 9: writing and reporting one run (all run plotting lives in the report; `gridsim
    # serving --curve` draws the serving model, not a run)
    ("gridsim.output", 9),
    ("gridsim.report", 9),
    ("gridsim.report.*", 9),
    # 10: what works over runs
    ("gridsim.compare", 10),
    ("gridsim.sweep", 10),
    ("gridsim.regress", 10),
    ("gridsim.export", 10),
    ("gridsim.montecarlo", 10),  # draws of a scenario's uncertain inputs, on the sweep
    ("gridsim.fit", 10),
    # capacity expansion: a program over the grid and economics, checked by simulated runs
    ("gridsim.planner", 10),
    ("gridsim.planner.*", 10),
    # 11: the command line
    ("gridsim.console", 11),
    ("gridsim.cli", 11),
    ("gridsim.sweep_cli", 11),
    ("gridsim.fit_cli", 11),
    ("gridsim.serving_cli", 11),
    ("gridsim.montecarlo_cli", 11),
    ("gridsim.plan_cli", 11),
    ("gridsim._entry", 11),
)
ROOT = "gridsim"  # the facade: exempt (see the module docstring)
ROOT_OWN = frozenset({"__version__"})  # what the facade defines itself


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported module
    line: int
    implied: bool = False  # a package run because one of its modules was imported


def modules(package: Path) -> dict[str, Path]:
    """Module name -> file, for every .py file of the package (packages by their __init__)."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def layer_of(module: str, layers: tuple[tuple[str, int], ...] = LAYERS) -> int | None:
    return next((n for pattern, n in layers if fnmatch.fnmatchcase(module, pattern)), None)


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _targets(node: ast.AST, module: str, is_package: bool, known: dict[str, Path]) -> list[str]:
    """The gridsim modules one import statement or call names."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:  # relative: from the importer's package, up level - 1 more
            package = module if is_package else module.rpartition(".")[0]
            parts = package.split(".")
            parts = parts[: len(parts) - node.level + 1]
            base = ".".join([*parts, *([node.module] if node.module else [])])
        out = []
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            if sub in known:
                out.append(sub)
            elif base == ROOT:
                if alias.name not in ROOT_OWN:
                    out.append(_facade(alias.name))
            else:
                out.append(base)
        return out
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute | ast.Name)
        and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ):
        return [node.args[0].value]
    return []


def _facade(name: str) -> str:
    """The module the package root gets a public name from (``gridsim._PUBLIC``)."""
    import gridsim

    public: dict[str, str] = vars(gridsim)["_PUBLIC"]
    return public.get(name, f"{ROOT}.{name}")


def imports(known: dict[str, Path]) -> Iterator[Import]:
    """Every import of a gridsim module by a gridsim module, with the packages it runs."""
    for module, path in known.items():
        if module == ROOT:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        # The importer's own packages (and itself, if a package) have run before it.
        own = {module.rsplit(".", k)[0] for k in range(module.count(".") + 1)}
        for node in ast.walk(tree):
            for target in _targets(node, module, is_package, known):
                if target != ROOT and not target.startswith(f"{ROOT}."):
                    continue
                yield Import(module, target, getattr(node, "lineno", 0))
                parent = target.rpartition(".")[0]
                while parent and parent != ROOT:
                    if parent not in own:
                        yield Import(module, parent, getattr(node, "lineno", 0), implied=True)
                    parent = parent.rpartition(".")[0]


def layer_problems(
    known: dict[str, Path], layers: tuple[tuple[str, int], ...] = LAYERS
) -> list[str]:
    problems = []
    for module in known:
        if module != ROOT and layer_of(module, layers) is None:
            problems.append(f"{module}: no layer; place it in LAYERS in {Path(__file__).name}")
    for imp in imports(known):
        if imp.target not in known:
            problems.append(f"{imp.source}:{imp.line} imports {imp.target}, which does not exist")
            continue
        if imp.target == ROOT:
            problems.append(f"{imp.source}:{imp.line} imports the whole gridsim facade")
            continue
        low, high = layer_of(imp.target, layers), layer_of(imp.source, layers)
        if low is not None and high is not None and low > high:
            how = " (its package __init__ runs)" if imp.implied else ""
            problems.append(
                f"{imp.source}:{imp.line} (layer {high}) imports {imp.target}{how} "
                f"(layer {low}): imports must run to the same or a lower layer"
            )
    return problems


def cycles(known: dict[str, Path]) -> list[list[str]]:
    """One circle of imports (first module repeated at the end) per strongly connected group of
    more than one module, or a module importing itself."""
    graph: dict[str, set[str]] = {m: set() for m in known if m != ROOT}
    for imp in imports(known):
        if imp.target in graph:
            graph[imp.source].add(imp.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's algorithm; the package is far too small to recurse deep
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1 or v in graph[v]:
                found.append(_circle(graph, set(group)))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _circle(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """The shortest way round from the group's first module back to itself (breadth first)."""
    start = min(group)
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & group):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [start, *reversed(path[:-1]), start] if v != start else [start, start]
                if w not in came_from:
                    came_from[w] = v
                    nxt.append(w)
        frontier = nxt
    return sorted(group)


def test_every_module_has_a_layer_and_imports_run_down() -> None:
    problems = layer_problems(modules(PACKAGE))
    assert not problems, "\n".join(problems)


def test_no_import_cycles() -> None:
    found = cycles(modules(PACKAGE))
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_every_layer_pattern_places_a_module() -> None:
    """A pattern left behind by a moved or deleted module would hide the next one's place."""
    known = [m for m in modules(PACKAGE) if m != ROOT]
    stale = [p for p, _ in LAYERS if not any(fnmatch.fnmatchcase(m, p) for m in known)]
    assert not stale, f"patterns that match no module: {stale}"


@pytest.fixture
def toy(tmp_path: Path) -> Path:
    """A package ``gridsim`` with two layers, a circle and an upward type-only import."""
    pkg = tmp_path / "gridsim"
    (pkg / "low").mkdir(parents=True)
    files = {
        "__init__.py": "",
        "low/__init__.py": "from gridsim.low import a\n",
        "low/a.py": "from . import b\n",
        "low/b.py": "from gridsim.low.a import x\n",
        "high.py": "import gridsim.low.b\n",
        "low/c.py": (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from gridsim import high\n"
        ),
        "low/d.py": "def f():\n    import importlib\n    importlib.import_module('gridsim.high')\n",
        "stray.py": "",
    }
    for name, text in files.items():
        (pkg / name).write_text(text)
    return pkg


def test_the_checks_catch_what_they_claim(toy: Path) -> None:
    layers = (("gridsim.low", 0), ("gridsim.low.*", 0), ("gridsim.high", 1))
    known = modules(toy)
    problems = layer_problems(known, layers)
    assert "gridsim.stray: no layer" in problems[0]
    assert any(p.startswith("gridsim.low.c:3 (layer 0) imports gridsim.high") for p in problems)
    assert any(p.startswith("gridsim.low.d:3 (layer 0) imports gridsim.high") for p in problems)
    assert len(problems) == 3
    assert cycles(known) == [["gridsim.low.a", "gridsim.low.b", "gridsim.low.a"]]
