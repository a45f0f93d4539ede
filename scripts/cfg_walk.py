"""Follow one parameter through a job: every call that carries the job's config (or a part of it,
``cfg.bench``, ``cfg.model``...) from ``execute`` down, on the tiny model of the tests.

    python scripts/cfg_walk.py            # on this checkout; last line: JSON
    python scripts/cfg_walk.py --tree DIR # on another checkout of the project (an older commit)

A call carries the config when one of its arguments is the config, a part of it, or a dataclass
holding it (a job's state); a method of the config itself (``cfg.precision()``) does not count.
It counts, over the calls that cross from one module of the package into another:
- ``modules``: the modules entered; ``entries``: the crossings, and the module entered most;
- ``returns``: crossings into a module the walk had entered before and left (not on the stack);
- ``climbs``: crossings from a lower layer up to a higher one (the layers of docs/design.md; a
  module of an older tree is placed by the package it moved to, :data:`MOVED`);
- ``dict_fillers``: calls handed a ``metrics`` or ``tags`` dict to fill (the hub pattern: a job
  passing its result dicts down and collecting them back), and the functions that took them.
The benchmark's own process is not traced (it gets a spec, not the config).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
from pathlib import Path

LAYERS = [
    "core",
    "config",
    "embedder|data",
    "model",
    "runtime",
    "measure",
    "tracking",
    "decision|job",
    "sweep",
    "cluster|study|serving",
    "__main__|api|decide|sync|embed",
]
# the modules of the package before it was split by role (commit 9ceeac1), by the package each moved to
MOVED = {
    "exitcodes": "core",
    "vocab": "core",
    "cache": "core",
    "redaction": "core",
    "ownership": "core",
    "machine_lock": "core",
    "quiet": "core",
    "grouping": "embedder",
    "spec": "embedder",
    "eps": "embedder",
    "serve": "embedder",
    "sources": "model",
    "export": "model",
    "variants": "model",
    "validate": "model",
    "artifact": "model",
    "providers": "runtime",
    "envs": "runtime",
    "worker": "runtime",
    "placement": "runtime",
    "bench": "measure",
    "conditions": "measure",
    "baselines": "measure",
    "calibration": "measure",
    "signals": "measure",
    "roofline": "measure",
    "load": "measure",
    "loadgen": "measure",
    "quality": "measure",
    "selfstats": "measure",
    "workload": "measure",
    "job": "job",
    "job_bench": "job",
    "job_workload": "job",
    "records": "tracking",
    "track": "tracking",
    "context": "tracking",
    "names": "tracking",
    "retime": "sweep",
    "stages": "study",
    "slurm": "cluster",
    "cluster_daemons": "cluster",
    "loopback": "cluster",
    "server": "serving",
    "server_target": "serving",
}


# where a record is kept: pipeline.tracking, and its modules in the tree before the move (by name)
RECORD_MODULES = ("pipeline.tracking", *(f"pipeline.{m}" for m in ("records", "names", "track")))


def layer(module: str) -> int:
    parts = module.split(".")
    part = parts[1] if len(parts) > 1 else module
    if len(parts) == 2 and part in MOVED:  # a module of the tree before the move (pipeline.job was a module then too)
        part = MOVED[part]
    for i, names in enumerate(LAYERS):
        if part in names.split("|"):
            return i
    return len(LAYERS)


def config_ids(cfg) -> set[int]:
    out, todo = set(), [cfg]
    while todo:
        node = todo.pop()
        if dataclasses.is_dataclass(node) and id(node) not in out:
            out.add(id(node))
            todo.extend(getattr(node, f.name) for f in dataclasses.fields(node))
    return out


def walk(execute, cfg, dcfg, out_dir: Path) -> dict:
    ids = config_ids(cfg)
    crossings: list[tuple[str, str]] = []
    stack: list[str] = []  # modules of the cfg-carrying frames now running
    left: set[str] = set()
    counts = {"returns": 0, "climbs": 0}
    filled: list[str] = []  # calls down the job handed the run's metrics or tags dicts to fill

    def carries(frame) -> bool:
        """A frame that was handed the config, a part of it, or a dataclass holding it (a job's
        state); not a method of the config itself (``cfg.precision()``: the config answering)."""
        args = frame.f_code.co_varnames[: frame.f_code.co_argcount + frame.f_code.co_kwonlyargcount]
        values = [frame.f_locals.get(a) for a in args]
        if args and args[0] == "self" and holds(values[0]):
            return False
        return any(holds(v) for v in values)

    def holds(v) -> bool:
        return id(v) in ids or (
            dataclasses.is_dataclass(v)
            and not isinstance(v, type)
            and any(id(getattr(v, f.name, None)) in ids for f in dataclasses.fields(v))
        )

    def fills_results(frame) -> bool:
        """A stage's function handed a dict to fill with the run's metrics or tags (a parameter so
        named; the record's own constructors, which keep them, do not count)."""
        if frame.f_code.co_name == "__init__" or frame.f_globals.get("__name__", "").startswith(RECORD_MODULES):
            return False
        args = frame.f_code.co_varnames[: frame.f_code.co_argcount + frame.f_code.co_kwonlyargcount]
        return any(a in ("metrics", "tags") and isinstance(frame.f_locals.get(a), dict) for a in args)

    def profile(frame, event, arg):
        mod = frame.f_globals.get("__name__", "")
        if not mod.startswith("pipeline") or event not in ("call", "return"):
            return
        if event == "call" and stack and fills_results(frame):
            filled.append(f"{mod}.{frame.f_code.co_name}")
        if event == "call" and carries(frame):
            caller = stack[-1] if stack else None
            if caller is not None and caller != mod:
                crossings.append((caller, mod))
                if mod in left and mod not in stack:
                    counts["returns"] += 1
                if layer(mod) > layer(caller):
                    counts["climbs"] += 1
            stack.append(mod)
            _open.add(id(frame))
        elif event == "return" and id(frame) in _open:
            _open.discard(id(frame))
            mod_done = stack.pop()
            if mod_done not in stack:
                left.add(mod_done)

    _open: set[int] = set()
    sys.setprofile(profile)
    try:
        result = execute(cfg, dcfg, out_dir)
    finally:
        sys.setprofile(None)
    entered = [callee for _, callee in crossings]
    most = max(set(entered), key=entered.count) if entered else None
    return {
        "status": str(result.status),
        "modules": len(set(entered)),
        "entries": len(entered),
        "most_entered": [most, entered.count(most)] if most else None,
        **counts,
        "dict_fillers": len(filled),
        "dict_filler_functions": sorted(set(filled)),
        "crossings": [f"{a} -> {b}" for a, b in crossings],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", type=Path, default=Path(__file__).resolve().parent.parent, help="the checkout to walk")
    args = ap.parse_args(argv)
    tree = args.tree.resolve()
    sys.path[:0] = [str(tree), str(tree / "tests")]
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree), os.environ.get("PYTHONPATH")]))  # its children too
    from conftest import WORDS, build_tiny_bert, tiny_overrides  # the tests' tiny model and overrides
    from hydra import compose, initialize_config_dir

    try:
        from pipeline.job.run import execute
    except ImportError:  # the tree before the move
        from pipeline.job import execute
    from pipeline.config import register_configs, to_config

    register_configs()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = build_tiny_bert(tmp / "model")
        (tmp / "data" / "stsb").mkdir(parents=True)
        for split, n in (("dev", 20), ("test", 30)):
            rows = [
                f"{' '.join(WORDS[(i + k) % len(WORDS)] for k in range(5))},{' '.join(WORDS[(i * 3 + k) % len(WORDS)] for k in range(4))},{i % 5}.0"
                for i in range(n)
            ]
            (tmp / "data" / "stsb" / f"stsb-en-{split}.csv").write_text("\n".join(rows) + "\n")
        overrides = tiny_overrides(model, tmp / "data", tmp) + ["bench.contention.enabled=false"]
        with initialize_config_dir(config_dir=str(tree / "conf"), version_base=None):
            dcfg = compose(config_name="config", overrides=overrides)
        out = walk(execute, to_config(dcfg), dcfg, tmp / "out")
    for c in out.pop("crossings"):
        print(c)
    import pipeline

    print(json.dumps({"tree": str(Path(pipeline.__file__).parent.parent), **out}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
