"""What ONNX Runtime's spinning settings do to our server under load: one model, several session configs, interleaved.

    python benchmarks/serving_session.py            # ~5 min on 2 cores

``pipeline serve`` gives its session ``pipeline.serving.app.SESSION_CONFIG``.  This measures that
choice: our int8 variant (``--variant``) behind the batched front (``--max-batch``, no wait), over
HTTP, as benchmarks/serving.py serves it (the same server process, load generator and ladder),
once per session config of ``CONFIGS``, started afresh for each, in an order reversed every
other round.  Per config: the p95 at each rate in each round, max QPS within p95 20/30/50 ms (the
median over rounds), and its ratio to ONNX Runtime's defaults at each target; the server's CPU
time per request.  The machine lock is held; the results (rows, per-round points, conditions,
CPU model, load average, versions) go to benchmarks/results/<cpu-slug>/serving_session.json.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
import serving  # noqa: E402  (its server process, load generator and ladder)
import serving_stats as ss  # noqa: E402
from peerstats import cpu_slug, results_path  # noqa: E402

CONFIGS = {  # name -> ONNX Runtime session config entries
    "ort-default": {},
    "force_spinning_stop": {"session.force_spinning_stop": "1"},
    "no-spinning": {"session.intra_op.allow_spinning": "0"},
}
BASE = "ort-default"
RATES = (100, 150, 200, 250, 300, 350, 400, 500, 600, 800)


def order(names: list[str], rnd: int) -> list[str]:
    """Round ``rnd``'s order (from 1, as serving.py's): as given in odd rounds, reversed in even ones."""
    return list(names) if rnd % 2 else list(names)[::-1]


def summarize(measured: dict[str, list[dict]], base: str = BASE) -> list[dict]:
    """One row per config from its rounds (each ``{"points", "cpu_ms_per_request"}``): max QPS at each
    target (median over rounds) and its ratio to ``base``'s, the median p95 at each rate."""
    rows, at = [], {}
    for name, rounds in measured.items():
        at[name] = {t: ss.median_over_rounds([ss.max_qps_at(r["points"], t) for r in rounds]) for t in ss.TARGETS_MS}
    for name, rounds in measured.items():
        row = {"config": name, "entries": ", ".join(f"{k}={v}" for k, v in CONFIGS.get(name, {}).items()) or "(none)"}
        for t in ss.TARGETS_MS:
            row[f"max_qps_p95_{t:g}ms"] = at[name][t]
            row[f"vs_{base}_{t:g}ms"] = ss.ratio(at[name][t], at[base][t]) if base in at else None
        rates = sorted({p["offered_qps"] for r in rounds for p in r["points"]})
        row["p95_ms_by_rate"] = {
            f"{q:g}": float(np.median([p["p95_ms"] for r in rounds for p in r["points"] if p["offered_qps"] == q])) for q in rates
        }
        cpu = [r["cpu_ms_per_request"] for r in rounds if r.get("cpu_ms_per_request") is not None]
        row["server_cpu_ms_per_request"] = float(np.median(cpu)) if cpu else None
        rows.append(row)
    return rows


def run(args) -> dict:
    from pipeline.core.machine import cpu_model
    from pipeline.core.machine_lock import MachineLock

    started = time.time()
    cfg, _, _ = harness.load_artifact("fp32")
    art = harness.load_artifact(args.variant)[2]
    work = Path(tempfile.mkdtemp(prefix="serving-session-"))
    sentences = serving.sentences_file(work)
    spec = {
        "kind": "ours",
        "folder": str(art.folder),
        "onnx_file": art.onnx_path.name,
        "threads": args.threads,
        "max_length": cfg.model.max_length,
    }
    front = {"max_batch": args.max_batch, "max_wait_ms": 0.0, "loop": "auto"}  # uvloop where installed, as pipeline serve runs
    measured: dict[str, list[dict]] = {n: [] for n in CONFIGS}
    with MachineLock(args.lock_wait_s, "benchmarks/serving_session.py") as lock:
        gen = serving.Generator(sentences)
        try:
            for rnd in range(1, args.rounds + 1):
                for name in order(list(CONFIGS), rnd):
                    print(f"round {rnd}: {name}", file=sys.stderr, flush=True)
                    srv = serving.Server(
                        f"{name}-r{rnd}", Path(sys.executable), {**spec, "session_config": CONFIGS[name]}, front, work, sentences
                    )
                    srv.start()
                    try:
                        gen.ask({"op": "target", "transport": "http", "port": srv.http_port, "path": "/v1/embeddings", "model": name})
                        a = harness.mark((srv.proc.pid, gen.proc.pid))
                        cpu0 = harness.proc_cpu_s(srv.proc.pid)
                        points = serving.ladder(gen, args, seed=1000 * rnd)
                        cpu = harness.proc_cpu_s(srv.proc.pid) - cpu0
                        cond = harness.window(a, harness.mark((srv.proc.pid, gen.proc.pid)))
                    finally:
                        srv.stop()
                    sent = sum(int(p["requests"]) for p in points)
                    measured[name].append({"points": points, "cpu_ms_per_request": 1e3 * cpu / sent if sent else None, "conditions": cond})
        finally:
            gen.close()
        cond = serving.conditions_of(started, lock, harness.versions(serving.VERSIONS))
    cond["load_average"] = cond["loadavg_end"]
    return {
        "benchmark": "serving_session",
        "command": "python benchmarks/serving_session.py " + " ".join(sys.argv[1:]),
        "cpu_slug": cpu_slug(cpu_model()),
        "variant": args.variant,
        "threads": args.threads,
        "front": front,
        "transport": "http",
        "rates": list(args.rates),
        "rounds": args.rounds,
        "base": BASE,
        "configs": CONFIGS,
        "rows": summarize(measured),
        "measured": measured,
        "conditions": cond,
    }


def parse(argv=None):
    p = harness.parser(__doc__, threads=2, rounds=3, lock_wait_s=1800)
    p.add_argument("--rates", default=",".join(map(str, RATES)), help="offered rates (/s), ascending")
    p.add_argument("--requests", type=int, default=1000, help="requests per point")
    p.add_argument("--max-point-s", type=float, default=4, help="cap a point at this many scheduled seconds (0: no cap)")
    p.add_argument("--timeout-s", type=float, default=2.0)
    p.add_argument("--max-batch", type=int, default=16)
    p.add_argument("--variant", default="int8_dynamic")
    p.add_argument("--out", default=None, help="default: benchmarks/results/<cpu-slug>/serving_session.json")
    args = p.parse_args(argv)
    args.rates = [float(x) for x in args.rates.split(",")]
    return args


def main(argv=None) -> int:
    args = parse(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    summary = run(args)
    out = Path(args.out) if args.out else results_path(summary["conditions"]["cpu_model"], "serving_session.json")
    harness.write_result(out, summary, indent=1, default=float, newline=True)
    for r in summary["rows"]:
        qps = ", ".join(f"{t:g} ms: {r[f'max_qps_p95_{t:g}ms']['qps']:.0f}/s" for t in ss.TARGETS_MS)
        print(f"{r['config']:<22} max QPS within p95 {qps}; server CPU {r['server_cpu_ms_per_request']:.2f} ms/request")
    print(json.dumps({"out": str(out)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
