"""The house rules that keep the package readable, checked on its code (docs/design.md)."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

from pipeline.sweep import config_hash
from pipeline.tracking.names import NOT_JOB_SETTINGS

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
    assert not cycles, "import cycles in pipeline/ (move the shared piece to a leaf module):\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_cycle_check_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


# the leaves: they import nothing from the package but other leaves (docs/design.md)
LEAVES = (
    "pipeline.core.cache",
    "pipeline.model.artifact",
    "pipeline.core.vocab",
    "pipeline.core.errors",
    "pipeline.runtime.envs",
    "pipeline.core.machine_lock",
    "pipeline.measure.loadgen",
    "pipeline.core.logs",
    "pipeline.embedder.plugin_eps",
    "pipeline.embedder.grouping",
    "pipeline.measure.process_stats",
    "pipeline.core.redaction",
    "pipeline.core.ownership",
    "pipeline.cluster.loopback",
)


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
LONG_MODULES: dict[str, str] = {
    "pipeline/embedder/batcher.py": "one class and the threads that share its one lock (workers, reaper, callbacks): "
    "a module split would split the lock's users"
}
LONG_FUNCTIONS: dict[str, str] = {}


def test_modules_and_functions_stay_short():
    long_modules = {
        str(p.relative_to(PKG.parent)): n
        for p in PKG.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 400 and str(p.relative_to(PKG.parent)) not in LONG_MODULES
    }
    long_functions = {
        f"{p.relative_to(PKG.parent)}:{name}": n
        for p in PKG.rglob("*.py")
        for name, _, n in _function_lengths(p)
        if n > 60 and f"{p.relative_to(PKG.parent)}:{name}" not in LONG_FUNCTIONS
    }
    assert not long_modules, f"modules over 400 lines: {long_modules}"
    assert not long_functions, f"functions over 60 lines: {long_functions}"


def test_config_hash_leaves_out_exactly_the_keys_that_do_not_change_a_measurement():
    # resume reuses a run whose hash matches: a key added here makes runs that measured
    # different things look alike; a key removed makes every earlier run look new
    assert NOT_JOB_SETTINGS == ("hydra", "tracking", "cache_dir", "rerun", "reports_dir", "records_dir", "decision")
    base = {"model": {"name": "m"}, "bench": {"batch_size": 1}, "tracking": {"uri": "a"}, "decision": {"p": 1}}
    same = {
        **base,
        "tracking": {"uri": "b"},
        "decision": {"p": 2},
        "rerun": True,
        "cache_dir": "x",
        "records_dir": "r",
        "reports_dir": "q",
        "hydra": {"run": 1},
    }
    assert config_hash(base) == config_hash(same)
    assert config_hash(base) != config_hash({**base, "bench": {"batch_size": 2}})
    assert len(config_hash(base)) == 16


# --- the layers (pyproject.toml [tool.importlinter]; docs/design.md "The house") ---

ROOT = PKG.parent


def _lint_imports(tree: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on ``tree`` (a checkout: its pyproject.toml and its pipeline/ come first on the path)."""
    exe = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(exe), str(tree / "pyproject.toml"), "--no-cache"], cwd=tree, env=env, capture_output=True, text=True, timeout=300
    )


def test_the_packages_keep_their_layers():
    done = _lint_imports(ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "3 kept, 0 broken" in done.stdout


@pytest.mark.parametrize(
    "module, line, contract",
    [
        # a bottom layer reaching up: core imports tracking
        ("core/vocab.py", "from pipeline.tracking import records  # planted\n", "layers"),
        # two independent siblings: the decision imports a job module
        ("decision/gates.py", "from pipeline.job import run  # planted\n", "layers"),
        # what a user ships pulls in MLflow
        ("embedder/grouping.py", "import mlflow  # planted\n", "imports no hydra, MLflow"),
        # what runs in a provider's own environment pulls in pandas
        ("runtime/worker.py", "import pandas  # planted\n", "provider's own environment"),
    ],
)
def test_a_planted_violation_breaks_the_build(tmp_path, module, line, contract):
    shutil.copytree(PKG, tmp_path / "pipeline", ignore=shutil.ignore_patterns("__pycache__", "*.csv"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "pipeline" / module
    text = target.read_text()
    cut = text.index("\nfrom __future__ import annotations\n") + 1 if "from __future__" in text else 0
    if "from __future__" in text:
        cut = text.index("\n", cut + 10) + 1
    target.write_text(text[:cut] + line + text[cut:])
    done = _lint_imports(tmp_path)
    assert done.returncode != 0, done.stdout[-2000:]
    broken = done.stdout.split("Broken contracts")[-1]
    assert "broken" in done.stdout and "0 broken" not in done.stdout and contract in broken, done.stdout[-3000:]
    assert "pipeline." + module.replace("/", ".").removesuffix(".py") in broken  # the report names the culprit


# --- module paths held in strings: `-m ...`, Hydra's `_target_`, dvc.yaml, file paths in docs and comments ---

_FILE_SUFFIXES = {"log", "yaml", "yml", "json", "db", "csv", "txt", "md", "py", "png", "html", "lock", "toml"}
_TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".ipynb", ".txt"}
_DOTTED = re.compile(r"(?<![\w./-])pipeline(?:\.[A-Za-z_]\w*)+")
_RUN_AS = re.compile(r"""(?:-m\s+|["']-m["'],\s*["'])(pipeline(?:\.\w+)*)""")
_PATH = re.compile(r"(?<![\w./-])pipeline/[\w/]+\.py\b")


def _tracked_text_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    skip = ("benchmarks/results/", "study/", "reports/", "mlruns/", "multirun/", "outputs/")
    return [
        ROOT / f
        for f in out
        if (Path(f).suffix in _TEXT_SUFFIXES or f in (".ci/run", "dvc.yaml")) and not f.startswith(skip) and (ROOT / f).is_file()
    ]


def _resolves(dotted: str) -> bool:
    """A module, or an attribute of one (``pipeline.sweep.SweepCallback``, ``pipeline.decision.decide``)."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:]:
            if not hasattr(obj, name):
                return False
            obj = getattr(obj, name)
        return True
    return False


def test_every_module_path_held_in_a_string_exists():
    missing, not_runnable = [], []
    for path in _tracked_text_files():
        if path == Path(__file__).resolve():  # its own examples of stale names
            continue
        text = path.read_text(errors="replace")
        rel = path.relative_to(ROOT)
        for m in _DOTTED.finditer(text):
            name = m.group(0).rstrip(".")
            if not _resolves(name) and name.rsplit(".", 1)[1] not in _FILE_SUFFIXES:  # a file name such as pipeline.log
                missing.append(f"{rel}: {name}")
        for m in _RUN_AS.finditer(text):
            spec = importlib.util.find_spec(m.group(1))
            target = Path(spec.origin) if spec and spec.origin else None
            if target is not None and target.name == "__init__.py":
                target = target.with_name("__main__.py")
            if target is None or not target.is_file() or "__main__" not in target.read_text():
                not_runnable.append(f"{rel}: -m {m.group(1)}")
        for m in _PATH.finditer(text):
            if not (ROOT / m.group(0)).is_file():
                missing.append(f"{rel}: {m.group(0)}")
    assert not missing, "names of modules or files that do not exist:\n" + "\n".join(sorted(set(missing)))
    assert not not_runnable, "`-m` targets that are not runnable modules:\n" + "\n".join(sorted(set(not_runnable)))


def test_the_string_check_catches_a_stale_name():
    assert _resolves("pipeline.sweep.SweepCallback") and _resolves("pipeline.measure.bench")
    assert not _resolves("pipeline.job_bench") and not _resolves("pipeline.sweep.NoSuchCallback")
    assert not _resolves("pipeline.report")  # a module of another layout
