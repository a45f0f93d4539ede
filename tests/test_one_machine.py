"""One machine per decision, and a contended job measured again when the machine is quiet (no model: fast)."""

from __future__ import annotations

import pandas as pd

from pipeline.decide import compose_decision
from pipeline.decision import decide
from pipeline.decision.inputs import rounds_frame, run_row, runs_frame
from pipeline.decision.types import Inputs


def _cfg():
    return compose_decision("default", ["decision.robustness.bootstrap=0", "decision.robustness.noise_draws=0"]).decision


def _metrics(p95: float) -> dict[str, float]:
    return {"latency.p50_ms": p95 * 0.8, "latency.p95_ms": p95, "latency.p99_ms": p95 * 1.2, "throughput.sentences_per_s": 1000.0 / p95,
            "quality.stsb_spearman": 80.0, "quality.sim_high": 0.8, "quality.sim_low": 0.2, "quality.separation": 0.6,
            "quality.l2_norm_max_dev": 1e-6, "parity.min_cosine": 0.9999, "model.size_mb": 90.0, "memory.peak_rss_mb": 400.0}


def _row(rid: str, variant: str, p95: float, machine: str, cpu: str, start: int, contended: str = "false") -> dict:
    return run_row(run_id=rid, status="ok", start_time=start, params={"model": "m", "variant": variant, "provider": "cpu",
                   "pooling": "mean", "bench.batch_size": "1"}, metrics=_metrics(p95),
                   tags={"machine.fingerprint": machine, "conditions.cpu_model": cpu, "bench.contended": contended})


def test_the_decision_never_ranks_two_machines_timings_together():
    # a shared store: the Xeon's int8 looks fastest, but it was timed on another machine
    rows = [_row("a", "fp32", 4.0, "epyc01", "AMD EPYC 9R14", 1000), _row("b", "o2", 3.8, "epyc01", "AMD EPYC 9R14", 2000),
            _row("c", "int8", 2.0, "xeon01", "Intel Xeon 8488C", 500)]
    d = decide(Inputs(runs=runs_frame(rows)), _cfg())
    assert set(d.ranking["run_id"]) == {"a", "b"}
    (other,) = d.excluded.to_dict(orient="records")
    assert other["run_id"] == "c" and other["status"] == "other-machine"
    assert "Intel Xeon 8488C" in other["reason"] and "AMD EPYC 9R14" in other["reason"]
    # one machine: all ranked
    same = decide(Inputs(runs=runs_frame([r for r in rows if r["machine"] == "epyc01"])), _cfg())
    assert len(same.ranking) == 2 and same.excluded.empty
