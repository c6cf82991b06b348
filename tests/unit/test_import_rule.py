"""The import rule of ``ml/``: imports point only downward, and nothing is a cycle.

The layers, from the top: ``cli`` → ``report`` → ``ops`` → ``analytics`` →
``feedback`` → ``action`` → ``decision`` → ``prediction`` → ``data`` →
``storage`` → ``config`` → ``contract``. A module may import its own package and
any package below it. The simulator (``ml.sim``) sits outside: only ``cli`` (the
demo) and the simulator itself import it. The Airflow plugin
(``loopline_airflow``) is imported by ``cli`` alone. Every import counts: module
level, inside functions, and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ML = ROOT / "ml"
LAYERS = (
    "contract",
    "config",
    "storage",
    "data",
    "prediction",
    "decision",
    "action",
    "feedback",
    "analytics",
    "ops",
    "report",
    "cli",
)
RANK = {name: rank for rank, name in enumerate(LAYERS)}
OUTSIDE = "sim"
PLUGIN = "loopline_airflow"

Edge = tuple[str, str]


def module_files() -> dict[str, Path]:
    """Every module of ``ml`` by dotted name (a package by its ``__init__``)."""
    out: dict[str, Path] = {}
    for path in ML.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _resolve(name: str, modules: dict[str, Path]) -> str:
    """The module a dotted import name lands in (``a.b.func`` → ``a.b``)."""
    while name not in modules and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def import_edges(modules: dict[str, Path]) -> set[Edge]:
    """(importer, imported) for every import of ``ml`` or the plugin in ``ml``."""
    edges: set[Edge] = set()
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [f"{node.module}.{alias.name}" for alias in node.names]
            for name in names:
                if name.split(".")[0] == PLUGIN:
                    edges.add((module, PLUGIN))
                elif name == "ml" or name.startswith("ml."):
                    target = _resolve(name, modules)
                    if target != module:
                        edges.add((module, target))
    return edges


def area(module: str) -> str:
    """The top-level package of ``ml`` a module belongs to (``ml`` itself: '')."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def violations(edges: Iterable[Edge]) -> list[str]:
    """Every edge that breaks the rule, as 'importer -> imported: why'."""
    found: list[str] = []
    for source, target in sorted(edges):
        here = area(source)
        if target == PLUGIN:
            if here != "cli":
                found.append(f"{source} -> {target}: only cli imports the plugin")
            continue
        there = area(target)
        if there == OUTSIDE and here not in (OUTSIDE, "cli"):
            found.append(f"{source} -> {target}: production imports the simulator")
        elif here in RANK and there in RANK and RANK[there] > RANK[here]:
            found.append(f"{source} -> {target}: {here} imports {there}, a layer above")
        elif (
            here in RANK
            and there in RANK
            and here != there
            and RANK[there] == RANK[here]
        ):
            found.append(f"{source} -> {target}: sideways")
    return found + ["cycle: " + " -> ".join(cycle) for cycle in cycles(edges)]


def cycles(edges: Iterable[Edge]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    graph: dict[str, list[str]] = {}
    for source, target in edges:
        graph.setdefault(source, []).append(target)
        graph.setdefault(target, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component: list[str] = []
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


def test_every_layer_package_exists() -> None:
    for name in (*LAYERS, OUTSIDE):
        assert (ML / name / "__init__.py").is_file(), name


def test_no_module_sits_outside_the_layers() -> None:
    loose = [m for m in module_files() if m != "ml" and area(m) not in (*RANK, OUTSIDE)]
    assert loose == []


def test_imports_point_only_downward_and_nothing_is_a_cycle() -> None:
    modules = module_files()
    edges = import_edges(modules)
    assert len(edges) > 200  # the walk found the imports (function-level too)
    assert violations(edges) == []


def test_module_names_are_unique() -> None:
    names: dict[str, list[str]] = {}
    for module in module_files():
        names.setdefault(module.rsplit(".", 1)[-1], []).append(module)
    shared = {n: ms for n, ms in names.items() if len(ms) > 1}
    assert shared == {}


# The edges that the redesign removed; each alone must break the rule.
REMOVED = [
    (
        "ml.cli.app",
        "ml.cli.decision_commands",
        "ml.cli.decision_commands",
        "ml.cli.app",
    ),
    ("ml.decision.decide_step", "ml.feedback.learning", None, None),
    (
        "ml.feedback.learning",
        "ml.decision.decide_step",
        "ml.decision.decide_step",
        "ml.feedback.learning",
    ),
    ("ml.config.settings", "ml.feedback.trigger", None, None),
    ("ml.prediction.training", "ml.ops.tasks", None, None),
    ("ml.report.build", "ml.sim.evaluate", None, None),
    ("ml.data.dbt", "ml.analytics.publish", None, None),
    (
        "ml.feedback.outcomes",
        "ml.decision.decide_step",
        "ml.decision.decide_step",
        "ml.feedback.outcomes",
    ),
    ("ml.data.validation.landing_gate", "ml.decision.decide_step", None, None),
    ("ml.decision.decide_step", "ml.action.exports", None, None),
    ("ml.storage.warehouse", PLUGIN, None, None),
]


@pytest.mark.parametrize(("a", "b", "c", "d"), REMOVED)
def test_the_rule_catches_each_removed_edge(
    a: str, b: str, c: str | None, d: str | None
) -> None:
    edges = import_edges(module_files())
    added = {(a, b)} | ({(c, d)} if c and d else set())
    assert violations(edges | added) != []
