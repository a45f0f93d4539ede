"""Can noise fool the decision?  One sweep, twice on a quiet machine, then under four kinds of interference.

    python benchmarks/stability.py                 # +sweep=stability (12 jobs, all-MiniLM-L6-v2): ~25 min on 2 cores
    python benchmarks/stability.py --quick         # 4 jobs, shorter: shows that it works (~8 min), proves nothing
    python benchmarks/stability.py --cache /work/main/.cache/pipeline --out /tmp/stability
    python benchmarks/stability.py --sweep models --kinds ""   # +sweep=models twice on a quiet machine: no flag, same winner

1. Quiet: the sweep runs twice (``rerun=true``, a fresh store each time, one shared export
   cache).  Before each run the machine is checked quiet by the detector's own direct signals
   (other processes' cores, PSI CPU pressure, over ``--check-seconds``).  The runs must flag no
   job (false alarms), name the same winner, and agree on every ok job's p50 within 5% and p95
   within 10%.
2. Interference: four kinds, each started by the script before a run of the sweep, bounded in
   time (``--kind-seconds``, then killed at the run's end):
   ``always_on`` one busy loop per core; ``burst_one_core`` 200 ms of every second on core 0;
   ``pinned_core`` a busy loop pinned to core 0 (one of the cores the benchmark runs on);
   ``memory_thrasher`` a 256 MiB streaming copy looping on the last core.
   Each run uses ``bench.contention.retries=0`` (a job is judged on its one attempt, and the run
   stays short).  At least 95% of its ok jobs must be flagged, over at least 10 jobs.
3. No run may draw a GO from a configuration that stayed contended (not quiet when re-timed).

The last line is JSON (``quiet.same_winner``, ``quiet.false_alarms``, ``quiet.p50_max_rel_diff``,
``quiet.p95_max_rel_diff``, ``kinds.<name>.jobs_ok``, ``kinds.<name>.contended_share``,
``go_from_contended``, ``ok``).  A full run writes everything (jobs, conditions, CPU model,
load averages, versions) to ``benchmarks/results/<cpu-slug>/stability.json``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
import harness  # noqa: E402  (benchmarks/harness.py: what the benchmark scripts share)
from peerstats import cpu_slug  # noqa: E402  (one slug for every benchmark's results folder)

_LOOP = "end = time.time() + {s}\n"
KINDS = {
    "always_on": ("import time\n" + _LOOP + "while time.time() < end: pass\n", "per_core"),
    "burst_one_core": (
        "import os, time\nos.sched_setaffinity(0, {{0}})\n"
        + _LOOP
        + "while time.time() < end:\n    t = time.time()\n    while time.time() - t < 0.2: pass\n    time.sleep(0.8)\n",
        "one",
    ),
    "pinned_core": ("import os, time\nos.sched_setaffinity(0, {{0}})\n" + _LOOP + "while time.time() < end: pass\n", "one"),
    "memory_thrasher": (
        "import os, time\nimport numpy as np\nos.sched_setaffinity(0, {{os.cpu_count() - 1}})\n"
        "a = np.ones(32 << 20); b = np.empty_like(a)\n" + _LOOP + "while time.time() < end: np.copyto(b, a)\n",
        "one",
    ),
}
QUICK = [
    "+candidate=minilm-fp32,minilm-o2-cpu",
    "bench.batch_size=1,8",
    "provider.threads=1",
    "bench.max_seconds=1.0",
    "decision.retime.max_seconds=1.0",
    "decision.retime.rounds=1",
    "bench.contention.retries=0",
]


@contextmanager
def interference(kind: str, seconds: float):
    """Start one kind of interference, bounded by ``seconds``; killed on the way out."""
    code, how = KINDS[kind]
    n = (os.cpu_count() or 1) if how == "per_core" else 1
    procs = [
        subprocess.Popen([sys.executable, "-c", code.format(s=seconds)], cwd=tempfile.gettempdir(), stdin=subprocess.DEVNULL)
        for _ in range(n)
    ]
    try:
        time.sleep(1.0)
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.wait()


def machine_check(seconds: float) -> dict:
    """The machine over ``seconds``, by the detector's direct signals: quiet or not, and why."""
    from pipeline.measure.conditions import Thresholds, window_reasons
    from pipeline.measure.signals import Mark, Window

    a = Mark.now()
    time.sleep(seconds)
    w = Window.between(a, Mark.now())
    why = [r.replace("during the timed calls", f"over {seconds:g} s") for r in window_reasons(w, Thresholds(), judge_cs=False)]
    return {"quiet": not why, "why": "; ".join(why), "other_cores": w.other_cores, "cpu_pressure": w.cpu_pressure, "load": w.load_after}


def _job(rec) -> dict:
    p = rec.params
    name = " ".join(f"{k}={p.get(k)}" for k in ("model", "variant", "bench.batch_size", "provider.threads") if p.get(k) is not None)
    m = rec.metrics
    return {
        "name": name or rec.run_name,
        "record_id": rec.record_id,
        "run_id": rec.mlflow_run_id,
        "status": rec.status,
        "p50_ms": m.get("latency.p50_ms"),
        "p95_ms": m.get("latency.p95_ms"),
        "contended": rec.tags.get("bench.contended", "false"),
        "conditions": {k: v for k, v in m.items() if k.startswith("conditions.")},
    }


def sweep(name: str, folder: Path, cache: Path, extra: list[str]) -> dict:
    """One sweep in its own store; returns its jobs (from the local records), its decision and its re-timing."""
    folder.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            f"+sweep={name}",
            "rerun=true",
            f"tracking.uri=sqlite:///{folder}/mlflow.db",
            f"tracking.artifact_location={folder}/artifacts",
            f"cache_dir={cache}",
            f"records_dir={folder}/records",
            f"reports_dir={folder}/reports",
            *extra,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - t0
    (folder / "sweep.log").write_text(proc.stdout + "\n" + proc.stderr)
    return {
        "exit": proc.returncode,
        "seconds": round(seconds, 1),
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
        **collect(folder),
    }


def collect(folder: Path) -> dict:
    """A finished sweep's jobs (its local records), decision and quiet re-timings, from its store."""
    from pipeline.tracking import records

    jobs, retimed_quiet = [], set()
    for f, rec in records.iter_records(folder / "records"):
        if rec.is_parent:
            if (f / "retime.json").is_file():
                rounds = json.loads((f / "retime.json").read_text()).get("rounds", [])
                retimed_quiet |= {r["record_id"] for r in rounds if not r.get("contended")}
            continue
        jobs.append(_job(rec))
    decision_file = folder / "reports" / "latest" / "decision.json"
    decision = json.loads(decision_file.read_text()) if decision_file.is_file() else {}
    winner = decision.get("winner") or {}
    return {
        "jobs": jobs,
        "winner": winner.get("label"),
        "winner_run_id": winner.get("run_id"),
        "verdict": decision.get("verdict"),
        "recommendation": decision.get("recommendation"),
        "retimed_quiet": sorted(retimed_quiet),
    }


def _flagged(job: dict) -> bool:
    return str(job.get("contended") or "false").lower() not in ("false", "", "none")


def _rel(a: dict, b: dict, key: str) -> dict[str, float]:
    out = {}
    for n in sorted(set(a) & set(b)):
        x, y = a[n].get(key), b[n].get(key)
        if x and y:
            out[n] = abs(x - y) / min(x, y)
    return out


def go_from_contended(run: dict) -> bool:
    """The run's decision is a GO whose winner was contended in the sweep and never quiet when re-timed."""
    if run.get("verdict") != "go" or not run.get("winner_run_id"):
        return False
    win = run["winner_run_id"]
    for j in run["jobs"]:
        if win in (j.get("record_id"), j.get("run_id")) and _flagged(j):
            return j.get("record_id") not in set(run.get("retimed_quiet") or ())
    return False


def verdict(
    quiet: list[dict],
    kinds: dict[str, dict],
    checks: list[dict],
    p50_tol: float = 0.05,
    p95_tol: float = 0.10,
    min_share: float = 0.95,
    min_jobs: int = 10,
) -> dict:
    """The figures and the pass/fail of a stability run, from its sweeps (pure: unit-tested on hand-made runs)."""
    ok_jobs = [{j["name"]: j for j in q["jobs"] if j["status"] == "ok"} for q in quiet]
    p50 = _rel(ok_jobs[0], ok_jobs[1], "p50_ms") if len(ok_jobs) == 2 else {}
    p95 = _rel(ok_jobs[0], ok_jobs[1], "p95_ms") if len(ok_jobs) == 2 else {}
    false_alarms = [[j["name"] for j in q["jobs"] if j["status"] == "ok" and _flagged(j)] for q in quiet]
    winners = [q.get("winner") for q in quiet]
    out = {
        "quiet": {
            "checked_quiet": [c["quiet"] for c in checks],
            "winners": winners,
            "verdicts": [q.get("verdict") for q in quiet],
            "same_winner": len(winners) == 2 and winners[0] is not None and winners[0] == winners[1],
            "false_alarms": false_alarms,
            "jobs_ok": [len(o) for o in ok_jobs],
            "p50_max_rel_diff": round(max(p50.values()), 4) if p50 else None,
            "p95_max_rel_diff": round(max(p95.values()), 4) if p95 else None,
            "p50_rel_diff": {n: round(v, 4) for n, v in p50.items()},
            "p95_rel_diff": {n: round(v, 4) for n, v in p95.items()},
        },
        "kinds": {},
    }
    for name, run in kinds.items():
        ran = [j for j in run["jobs"] if j["status"] == "ok"]
        flagged = [j for j in ran if _flagged(j)]
        out["kinds"][name] = {
            "jobs_ok": len(ran),
            "contended": len(flagged),
            "contended_share": round(len(flagged) / len(ran), 3) if ran else 0.0,
            "missed": [j["name"] for j in ran if not _flagged(j)],
            "verdict": run.get("verdict"),
            "winner": run.get("winner"),
        }
    out["go_from_contended"] = any(go_from_contended(r) for r in [*quiet, *kinds.values()])
    q = out["quiet"]
    failures = []
    if not all(q["checked_quiet"]) or len(q["checked_quiet"]) < 2:
        failures.append("a quiet run did not start on a quiet machine")
    if any(false_alarms):
        failures.append(f"false alarms: {false_alarms}")
    if not q["same_winner"]:
        failures.append(f"different winners: {winners}")
    if q["p50_max_rel_diff"] is None or q["p50_max_rel_diff"] > p50_tol:
        failures.append(f"p50 differs by {q['p50_max_rel_diff']} (limit {p50_tol})")
    if q["p95_max_rel_diff"] is None or q["p95_max_rel_diff"] > p95_tol:
        failures.append(f"p95 differs by {q['p95_max_rel_diff']} (limit {p95_tol})")
    for name, k in out["kinds"].items():
        if k["jobs_ok"] < min_jobs or k["contended_share"] < min_share:
            failures.append(f"{name}: {k['contended']} of {k['jobs_ok']} ok jobs flagged (at least {min_share:.0%} of >= {min_jobs})")
    if out["go_from_contended"]:
        failures.append("a GO from a configuration that stayed contended")
    out["failures"], out["ok"] = failures, not failures
    return out


def environment() -> dict:
    from pipeline.core.machine import fingerprint, governor

    vers = harness.versions(("onnxruntime", "numpy", "optimum", "transformers"), keep_missing=True)
    return {
        "machine": fingerprint(),
        "governor": governor(),
        "python": platform.python_version(),
        "versions": vers,
        "when": harness.utc_now(),
    }


def _args(argv):
    ap = harness.parser(__doc__, threads=None)
    ap.add_argument("--sweep", default="stability")
    ap.add_argument("--quick", action="store_true", help="4 jobs, shorter benchmarks: shows the script works, proves nothing")
    ap.add_argument("--out", default="", help="keep the stores and logs here (default: a temporary folder)")
    ap.add_argument("--cache", default="", help="the export cache (default: <out>/cache)")
    ap.add_argument("--kind-seconds", type=float, default=600.0, help="each interference stops by itself after this long")
    ap.add_argument("--check-seconds", type=float, default=5.0, help="the quiet check before each quiet run")
    ap.add_argument("--kinds", default=",".join(KINDS), help="which kinds of interference (comma-separated)")
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "results"), help="where a full run writes <cpu-slug>/stability.json")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides for every sweep")
    return ap.parse_args(argv)


def _partial(root: Path, warm: dict, quiet: list, checks: list, busy: dict) -> None:
    """What has run so far, after each sweep (a run cut short still leaves its sweeps' figures)."""
    (root / "stability-partial.json").write_text(json.dumps({"warm": warm, "quiet": quiet, "checks": checks, "kinds": busy}, default=str))


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    root = Path(args.out or tempfile.mkdtemp(prefix="stability-"))
    cache = Path(args.cache) if args.cache else root / "cache"
    extra = [*(QUICK if args.quick else []), *args.overrides]
    kinds = harness.names(args.kinds)
    t0 = time.perf_counter()
    print(f"[stability] warming the export cache and timing one sweep ({args.sweep}{', quick' if args.quick else ''})", flush=True)
    warm = sweep(args.sweep, root / "warm", cache, [*extra, "decision.retime.rounds=0", "bench.contention.retries=0"])
    estimate = warm["seconds"] * (2 + len(kinds)) * 1.3  # quiet runs re-time their leaders; busy ones run slower
    print(
        f"[stability] one sweep took {warm['seconds']:.0f} s ({len(warm['jobs'])} jobs); the rest will take about {estimate / 60:.0f} min",
        flush=True,
    )
    quiet, checks = [], []
    for i in (1, 2):
        checks.append(machine_check(args.check_seconds))
        print(f"[stability] quiet run {i}: machine {'quiet' if checks[-1]['quiet'] else 'NOT quiet: ' + checks[-1]['why']}", flush=True)
        quiet.append(sweep(args.sweep, root / f"quiet{i}", cache, extra))
        _partial(root, warm, quiet, checks, {})
    busy = {}
    for kind in kinds:
        print(f"[stability] interference: {kind} (at most {args.kind_seconds:g} s)", flush=True)
        with interference(kind, args.kind_seconds) as pids:
            busy[kind] = {**sweep(args.sweep, root / kind, cache, [*extra, "bench.contention.retries=0"]), "pids": pids}
        _partial(root, warm, quiet, checks, busy)
    result = verdict(quiet, busy, checks, min_jobs=1 if args.quick else 10)
    result.update(
        {
            "sweep": args.sweep,
            "quick": args.quick,
            "seconds": round(time.perf_counter() - t0, 1),
            "folder": str(root),
            "environment": environment(),
        }
    )
    full = {**result, "runs": {"warm": warm, "quiet": quiet, "checks": checks, "kinds": busy}}
    harness.write_result(root / "stability.json", full)
    if not args.quick:
        file = (
            "stability.json" if args.sweep == "stability" and len(kinds) == len(KINDS) else f"stability-{args.sweep}-{len(kinds)}kinds.json"
        )
        dest = harness.write_result(Path(args.results) / cpu_slug(result["environment"]["machine"]["cpu_model"]) / file, full)
        print(f"[stability] full result: {dest}", flush=True)
    print(
        json.dumps({k: v for k, v in result.items() if k != "environment"} | {"cpu_model": result["environment"]["machine"]["cpu_model"]})
    )
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
