"""How far one configuration's latency moves between fresh processes on a quiet machine.

    python benchmarks/process_spread.py            # ~2 min on 2 cores; last line: JSON

The same export, batch and texts, timed in ``--processes`` fresh processes one after another
(threads settings interleaved), each warming up and then timing ``--calls`` single calls.  What a
sweep that runs every job in a fresh process can hope for: two runs of the same job differ at least
by this spread, whatever the detector says.  The machine's conditions over the run (other
processes' CPU, steal time, load) are recorded with it, and the run holds the machine lock.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import harness

CHILD = """
import json, sys, time
import numpy as np
from pipeline.embedder import Embedder
folder, threads, batch, calls, texts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), json.loads(sys.argv[5])
emb = Embedder(folder, threads=threads, batch_size=batch)
batches = [texts[i:i + batch] for i in range(0, len(texts) - batch + 1, batch)]
for b in batches[:50]:
    emb.embed(b)
ns = []
for i in range(calls):
    b = batches[i % len(batches)]
    t = time.perf_counter_ns()
    emb.embed(b)
    ns.append(time.perf_counter_ns() - t)
ms = np.asarray(ns) / 1e6
h = len(ms) // 2
print(json.dumps({"p50_ms": float(np.median(ms)), "p95_ms": float(np.percentile(ms, 95)),
                  "first_half_p50_ms": float(np.median(ms[:h])), "second_half_p50_ms": float(np.median(ms[h:]))}))
"""


def steal_s() -> float:
    """The machine's steal time so far (seconds, all cores): what the hypervisor gave other guests."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()
    return int(fields[8]) / 100.0 if len(fields) > 8 else float("nan")


def spread(values: list[float]) -> float:
    """(slowest - fastest) / fastest: the largest relative difference between two processes."""
    return (max(values) - min(values)) / min(values)


def summarize(rows: list[dict]) -> dict:
    """Per threads setting: each process's p50 and p95, and their spreads."""
    out = {}
    for t in sorted({r["threads"] for r in rows}):
        mine = [r for r in rows if r["threads"] == t]
        out[f"t{t}"] = {
            "p50_ms": [round(r["p50_ms"], 4) for r in mine],
            "p95_ms": [round(r["p95_ms"], 4) for r in mine],
            "p50_spread": round(spread([r["p50_ms"] for r in mine]), 4),
            "p95_spread": round(spread([r["p95_ms"] for r in mine]), 4),
            "within_process_half_diff_max": round(max(abs(r["first_half_p50_ms"] / r["second_half_p50_ms"] - 1) for r in mine), 4),
        }
    return out


def main(argv=None) -> int:
    p = harness.parser(__doc__, threads=None, lock_wait_s=600)
    p.add_argument("--variant", default="O2_cpu", help="our export variant to time")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", default="1,2", help="intra-op threads, interleaved")
    p.add_argument("--processes", type=int, default=6)
    p.add_argument("--calls", type=int, default=600)
    p.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/<cpu-slug>/process_spread.json")
    a = p.parse_args(argv)
    from peerstats import cpu_slug

    from pipeline.config import QualityConfig
    from pipeline.core.machine import cpu_model
    from pipeline.core.machine_lock import MachineLock
    from pipeline.data.sts import load_sts
    from pipeline.measure.signals import Mark, Window

    _, _, art = harness.load_artifact(a.variant)
    texts = load_sts(QualityConfig(), split="test").unique_sentences[:400]
    threads = [int(t) for t in harness.names(a.threads)]
    rows = []
    with MachineLock(a.lock_wait_s, "process spread") as lock:
        before, steal0, t0 = Mark.now(children=True), steal_s(), time.time()  # the timing processes count as ours
        for i in range(a.processes):
            for t in threads:
                got = json.loads(
                    harness.run_tool(
                        Path(sys.executable),
                        CHILD,
                        [str(art.folder), str(t), str(a.batch), str(a.calls), json.dumps(texts)],
                        "timing process",
                        600,
                    ).splitlines()[-1]
                )
                rows.append({"process": i, "threads": t, **got})
                print(f"[spread] process {i + 1}/{a.processes} threads {t}: p50 {got['p50_ms']:.3f} ms", file=sys.stderr, flush=True)
        after, steal1 = Mark.now(children=True), steal_s()
    w = Window.between(before, after)
    cpu = cpu_model()
    result = {
        "benchmark": "process_spread",
        "cpu_model": cpu,
        "variant": a.variant,
        "batch": a.batch,
        "calls": a.calls,
        "processes": a.processes,
        "rows": rows,
        "summary": summarize(rows),
        "conditions": {
            "other_cpu_share": w.other_cpu_share,
            "other_cores": w.other_cores,
            "steal_s": round(steal1 - steal0, 2),
            "seconds": round(time.time() - t0, 1),
            "loadavg_start": w.load_before,
            "lock": {"held": True, "contended": lock.contention},
            "loadavg_end": harness.loadavg(),
        },
        "date": harness.utc_now(),
    }
    out = a.out or harness.ROOT / "benchmarks" / "results" / cpu_slug(cpu) / "process_spread.json"
    harness.write_result(out, result)
    print(json.dumps({"out": str(out), **result["summary"], "conditions": result["conditions"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
