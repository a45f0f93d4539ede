"""The house rules that keep the package readable, checked on its code (docs/design.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import grimp
import pytest

from pipeline.sweep import HASH_EXCLUDED, config_hash

PKG = Path(__file__).resolve().parent.parent / "pipeline"


def _graph_with_package_edges() -> dict[str, set[str]]:
    """pipeline's import graph (every import, in a function body or not), plus the edge that
    importing ``a.b.c`` implies to the packages ``a.b`` (their ``__init__`` runs first)."""
    graph = grimp.build_graph("pipeline", cache_dir=None)
    edges: dict[str, set[str]] = {m: set() for m in graph.modules}
    for m in graph.modules:
        for imported in graph.find_modules_directly_imported_by(m):
            parts = imported.split(".")
            for i in range(2, len(parts) + 1):  # the root package's __init__ is a docstring
                target = ".".join(parts[:i])
                if target != m and not m.startswith(target + "."):  # a module reaching its own package
                    edges[m].add(target)
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_the_package_has_no_import_cycle():
    cycles = _cycles(_graph_with_package_edges())
    assert not cycles, "import cycles in pipeline/ (move the shared piece to a leaf module):\n" + "\n".join(
        " <-> ".join(c) for c in cycles
    )


def test_the_cycle_check_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


# the leaves: they import nothing from the package but other leaves (docs/design.md)
LEAVES = ("pipeline.cache", "pipeline.artifact", "pipeline.vocab", "pipeline.exitcodes", "pipeline.envs", "pipeline.machine_lock",
          "pipeline.loadgen", "pipeline.quiet", "pipeline.eps", "pipeline.grouping", "pipeline.selfstats", "pipeline.redaction",
          "pipeline.ownership", "pipeline.loopback")


@pytest.mark.parametrize("leaf", LEAVES)
def test_leaf_modules_import_nothing_from_the_package_but_leaves(leaf):
    graph = grimp.build_graph("pipeline", cache_dir=None)
    outside = graph.find_modules_directly_imported_by(leaf) - set(LEAVES)
    assert not outside, f"{leaf} must stay a leaf; it imports {sorted(outside)}"


def _function_lengths(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.name, node.lineno, node.end_lineno - node.lineno + 1


# modules and functions allowed past the limits, each with its reason (docs/design.md, "House rules")
LONG_MODULES: dict[str, str] = {}
LONG_FUNCTIONS: dict[str, str] = {}


def test_modules_and_functions_stay_short():
    long_modules = {
        str(p.relative_to(PKG.parent)): n for p in PKG.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 400 and str(p.relative_to(PKG.parent)) not in LONG_MODULES
    }
    long_functions = {
        f"{p.relative_to(PKG.parent)}:{name}": n for p in PKG.rglob("*.py") for name, _, n in _function_lengths(p)
        if n > 60 and f"{p.relative_to(PKG.parent)}:{name}" not in LONG_FUNCTIONS
    }
    assert not long_modules, f"modules over 400 lines: {long_modules}"
    assert not long_functions, f"functions over 60 lines: {long_functions}"


def test_config_hash_leaves_out_exactly_the_keys_that_do_not_change_a_measurement():
    # resume reuses a run whose hash matches: a key added here makes runs that measured
    # different things look alike; a key removed makes every earlier run look new
    assert HASH_EXCLUDED == ("hydra", "tracking", "cache_dir", "rerun", "reports_dir", "records_dir", "decision")
    base = {"model": {"name": "m"}, "bench": {"batch_size": 1}, "tracking": {"uri": "a"}, "decision": {"p": 1}}
    same = {**base, "tracking": {"uri": "b"}, "decision": {"p": 2}, "rerun": True, "cache_dir": "x", "records_dir": "r",
            "reports_dir": "q", "hydra": {"run": 1}}
    assert config_hash(base) == config_hash(same)
    assert config_hash(base) != config_hash({**base, "bench": {"batch_size": 2}})
    assert len(config_hash(base)) == 16
