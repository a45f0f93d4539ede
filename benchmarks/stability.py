"""Can noise fool the decision?  The same sweep twice on a quiet machine, then once under a CPU burner.

    python benchmarks/stability.py                      # +sweep=smoke on the real all-MiniLM-L6-v2
    python benchmarks/stability.py --sweep smoke --burn-seconds 900 --out /tmp/stability

1. Quiet: the sweep runs twice (``rerun=true``, a fresh store each time, one shared export
   cache).  The two runs must name the same winner, and every ok job's p50 must agree within
   ``--p50-tolerance`` (5%).
2. Busy: the script starts one busy-looping process per core (bounded by ``--burn-seconds``,
   killed at the end) and runs the sweep again.  At least ``--min-contended`` (95%) of the
   jobs that ran must be flagged contended (tag ``bench.contended``), and no GO may be drawn
   from them.

Each phase records the load average before and after.  The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BURN = "import time\nt = time.time()\nwhile time.time() - t < {s}: pass\n"


@contextmanager
def burners(seconds: float):
    procs = [subprocess.Popen([sys.executable, "-c", BURN.format(s=seconds)]) for _ in range(os.cpu_count() or 1)]
    try:
        time.sleep(1.0)
        yield len(procs)
    finally:
        for p in procs:
            p.kill()
            p.wait()


def sweep(name: str, folder: Path, cache: Path, extra: list[str]) -> dict:
    """One sweep in its own store; returns its jobs (from the local records) and its decision."""
    from pipeline import records

    folder.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", f"+sweep={name}", "rerun=true",
         f"tracking.uri=sqlite:///{folder}/mlflow.db", f"tracking.artifact_location={folder}/artifacts",
         f"cache_dir={cache}", f"records_dir={folder}/records", f"reports_dir={folder}/reports", *extra],
        cwd=ROOT, capture_output=True, text=True,
    )
    seconds = time.perf_counter() - t0
    (folder / "sweep.log").write_text(proc.stdout + "\n" + proc.stderr)
    jobs = []
    for _, rec in records.iter_records(folder / "records"):
        if rec.is_parent:
            continue
        jobs.append({
            "name": rec.run_name, "status": rec.status, "p50_ms": rec.metrics.get("latency.p50_ms"),
            "p95_ms": rec.metrics.get("latency.p95_ms"), "contended": rec.tags.get("bench.contended", "false"),
            "attempts": rec.metrics.get("bench.attempts"), "other_cpu_share": rec.metrics.get("conditions.other_cpu_share"),
        })
    decision_file = folder / "reports" / "latest" / "decision.json"
    decision = json.loads(decision_file.read_text()) if decision_file.is_file() else {}
    return {
        "exit": proc.returncode, "seconds": round(seconds, 1), "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2), "jobs": jobs,
        "winner": (decision.get("winner") or {}).get("label"), "verdict": decision.get("verdict"),
        "recommendation": decision.get("recommendation"),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sweep", default="smoke")
    ap.add_argument("--out", default="", help="keep the stores and logs here (default: a temporary folder)")
    ap.add_argument("--burn-seconds", type=float, default=900.0, help="the burners stop by themselves after this long")
    ap.add_argument("--p50-tolerance", type=float, default=0.05)
    ap.add_argument("--min-contended", type=float, default=0.95)
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides for every sweep")
    args = ap.parse_args(argv)
    root = Path(args.out or tempfile.mkdtemp(prefix="stability-"))
    cache = root / "cache"

    print(f"[stability] warming the export cache ({args.sweep})", flush=True)
    sweep(args.sweep, root / "warm", cache, [*args.overrides, "decision.retime.rounds=0"])
    quiet = []
    for i in (1, 2):
        print(f"[stability] quiet run {i} (load {os.getloadavg()[0]:.2f})", flush=True)
        quiet.append(sweep(args.sweep, root / f"quiet{i}", cache, args.overrides))
    print(f"[stability] busy run: {os.cpu_count()} burners for at most {args.burn_seconds:g} s", flush=True)
    with burners(args.burn_seconds):
        busy = sweep(args.sweep, root / "busy", cache, args.overrides)

    a = {j["name"]: j for j in quiet[0]["jobs"] if j["status"] == "ok"}
    b = {j["name"]: j for j in quiet[1]["jobs"] if j["status"] == "ok"}
    rel = {n: abs(a[n]["p50_ms"] - b[n]["p50_ms"]) / min(a[n]["p50_ms"], b[n]["p50_ms"]) for n in sorted(set(a) & set(b))}
    ran = [j for j in busy["jobs"] if j["status"] == "ok"]
    contended = [j for j in ran if j["contended"] not in ("false", "", None)]
    share = len(contended) / len(ran) if ran else 0.0
    go_from_contended = busy["verdict"] == "go" and busy["winner"] is not None and bool(contended)
    result = {
        "sweep": args.sweep,
        "cores": os.cpu_count(),
        "quiet": {
            "winners": [q["winner"] for q in quiet],
            "verdicts": [q["verdict"] for q in quiet],
            "same_winner": quiet[0]["winner"] == quiet[1]["winner"] and quiet[0]["winner"] is not None,
            "p50_rel_diff": {n: round(v, 4) for n, v in rel.items()},
            "p50_max_rel_diff": round(max(rel.values()), 4) if rel else None,
            "p50_within_tolerance": bool(rel) and max(rel.values()) <= args.p50_tolerance,
            "contended_jobs": [sum(j["contended"] not in ("false", "", None) for j in q["jobs"]) for q in quiet],
            "load": [[q["load_before"], q["load_after"]] for q in quiet],
            "seconds": [q["seconds"] for q in quiet],
        },
        "busy": {
            "jobs_ok": len(ran),
            "contended": len(contended),
            "contended_share": round(share, 3),
            "verdict": busy["verdict"],
            "winner": busy["winner"],
            "go_from_contended": go_from_contended,
            "load": [busy["load_before"], busy["load_after"]],
            "seconds": busy["seconds"],
        },
        "folder": str(root),
    }
    result["ok"] = bool(result["quiet"]["same_winner"] and result["quiet"]["p50_within_tolerance"]
                        and share >= args.min_contended and not go_from_contended)
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
