"""One machine per decision, and a contended job measured again when the machine is quiet (no model: fast)."""

from __future__ import annotations

import pytest

from pipeline.decision import compose_decision, decide
from pipeline.decision.inputs import rounds_frame, run_row, runs_frame
from pipeline.decision.types import Inputs


def _cfg():
    return compose_decision("default", ["decision.robustness.bootstrap=0", "decision.robustness.noise_draws=0"]).decision


def _metrics(p95: float) -> dict[str, float]:
    return {
        "latency.p50_ms": p95 * 0.8,
        "latency.p95_ms": p95,
        "latency.p99_ms": p95 * 1.2,
        "throughput.sentences_per_s": 1000.0 / p95,
        "quality.stsb_spearman": 80.0,
        "quality.sim_high": 0.8,
        "quality.sim_low": 0.2,
        "quality.separation": 0.6,
        "quality.l2_norm_max_dev": 1e-6,
        "parity.min_cosine": 0.9999,
        "model.size_mb": 90.0,
        "memory.peak_rss_mb": 400.0,
    }


def _row(rid: str, variant: str, p95: float, machine: str, cpu: str, start: int, contended: str = "false") -> dict:
    return run_row(
        run_id=rid,
        status="ok",
        start_time=start,
        params={"model": "m", "variant": variant, "provider": "cpu", "pooling": "mean", "bench.batch_size": "1"},
        metrics=_metrics(p95),
        tags={"machine.kind": machine, "machine.fingerprint": machine + "-host", "conditions.cpu_model": cpu, "bench.contended": contended},
    )


def test_the_decision_never_ranks_two_machines_timings_together():
    # a shared store: the Xeon's int8 looks fastest, but it was timed on another machine
    rows = [
        _row("a", "fp32", 4.0, "epyc01", "AMD EPYC 9R14", 1000),
        _row("b", "o2", 3.8, "epyc01", "AMD EPYC 9R14", 2000),
        _row("c", "int8", 2.0, "xeon01", "Intel Xeon 8488C", 500),
    ]
    d = decide(Inputs(runs=runs_frame(rows)), _cfg())
    assert set(d.ranking["run_id"]) == {"a", "b"}
    (other,) = d.excluded.to_dict(orient="records")
    assert other["run_id"] == "c" and other["status"] == "other-machine"
    assert "Intel Xeon 8488C" in other["reason"] and "AMD EPYC 9R14" in other["reason"]
    # one machine: all ranked
    same = decide(Inputs(runs=runs_frame([r for r in rows if r["machine"] == "epyc01"])), _cfg())
    assert len(same.ranking) == 2 and same.excluded.empty


def test_a_contended_job_quiet_when_retimed_is_ranked_with_its_quiet_figures():
    # the Xeon: int8 b1 was falsely flagged and the decision shipped the slower O2
    rows = [_row("o2", "o2", 3.96, "m1", "cpu", 1000), _row("int8", "int8", 2.02, "m1", "cpu", 2000, contended="probe 1.68x")]
    runs = runs_frame(rows)
    before = decide(Inputs(runs=runs), _cfg())
    assert before.ranking["run_id"].iloc[0] == "o2"  # contended: ranked after every quiet one
    quiet_rounds = rounds_frame(
        {
            "rounds": [
                {"record_id": "int8", "round": 0, "contended": None, "metrics": {"latency.p95_ms": 2.10, "latency.p50_ms": 1.7}},
                {"record_id": "int8", "round": 1, "contended": None, "metrics": {"latency.p95_ms": 2.06, "latency.p50_ms": 1.7}},
                {"record_id": "o2", "round": 0, "contended": None, "metrics": {"latency.p95_ms": 3.9, "latency.p50_ms": 3.1}},
            ]
        }
    )
    after = decide(Inputs(runs=runs, rounds=quiet_rounds), _cfg())
    top = after.ranking.iloc[0]
    assert top["run_id"] == "int8" and top["contended"] == "" and top["retimed_from_contended"] == "probe 1.68x"
    assert top["latency.p95_ms"] == pytest.approx(2.08)  # the median of its quiet rounds: the busy 2.02 is not folded in
    assert "busy machine" not in after.recommendation


def test_a_contended_job_that_stays_contended_when_retimed_stays_out():
    rows = [_row("o2", "o2", 3.96, "m1", "cpu", 1000), _row("int8", "int8", 2.02, "m1", "cpu", 2000, contended="probe 1.68x")]
    busy_rounds = rounds_frame(
        {
            "rounds": [
                {"record_id": "int8", "round": 0, "contended": "CPU pressure 30%", "metrics": {"latency.p95_ms": 2.5}},
                {"record_id": "int8", "round": 1, "contended": "CPU pressure 40%", "metrics": {"latency.p95_ms": 2.6}},
            ]
        }
    )
    d = decide(Inputs(runs=runs_frame(rows), rounds=busy_rounds), _cfg())
    assert d.ranking["run_id"].iloc[0] == "o2" and d.ranking.set_index("run_id").loc["int8", "contended"] == "probe 1.68x"


def test_only_the_contended_jobs_that_could_reach_the_top_are_retimed(tmp_path):
    from pipeline.sweep import retime
    from pipeline.tracking.records import RunRecord

    def rec(rid: str, variant: str, p95: float, contended: str = "false", stsb: float = 80.0):
        r = RunRecord(
            rid,
            rid,
            {"model": "m", "variant": variant, "provider": "cpu", "pooling": "mean", "bench.batch_size": "1"},
            {"bench.contended": contended, "machine.fingerprint": "m1"},
            {**_metrics(p95), "quality.stsb_spearman": stsb},
            status="ok",
        )
        folder = tmp_path / rid
        folder.mkdir()
        (folder / "bench_spec.json").write_text("{}")
        return folder, r

    found = [
        rec("quiet-a", "fp32", 4.0),
        rec("quiet-b", "o2", 3.9),
        rec("fast-busy", "int8", 2.0, "PSI 40%"),
        rec("slow-busy", "int8s", 25.0, "PSI 40%", stsb=61.0),
    ]
    got = retime.contended_contenders(found, _cfg(), top_k=2)
    assert [(rid, why) for rid, why, _ in got] == [("fast-busy", "PSI 40%")]  # slow-busy could not reach the top 2


def test_identical_nodes_of_a_cluster_are_ranked_together():
    params = {"model": "m", "provider": "cpu", "pooling": "mean", "bench.batch_size": "1"}
    rows = [
        run_row(
            run_id=rid,
            status="ok",
            start_time=t,
            params={**params, "variant": v},
            metrics=_metrics(p95),
            tags={"machine.kind": "epyc", "machine.fingerprint": host, "bench.contended": "false"},
        )
        for rid, v, p95, host, t in (("a", "fp32", 4.0, "node-1", 1000), ("b", "o2", 3.8, "node-2", 2000))
    ]
    d = decide(Inputs(runs=runs_frame(rows)), _cfg())
    assert len(d.ranking) == 2 and d.excluded.empty
