"""The decision for a provider's traffic in parts (pipeline/decision/parts.py), on made-up runs
(test data, not results): each part judged on its own runs, then weighed as configured."""

from __future__ import annotations

import dataclasses

import pytest

from pipeline.config import CriterionConfig
from pipeline.decision import compose_decision, run_row, runs_frame
from pipeline.decision.parts import crossovers, decide_parts, length_curve, write
from pipeline.decision.types import Inputs

GOOD = {
    "latency.p95_ms": 5.0,
    "latency.p50_ms": 4.0,
    "quality.separation": 0.6,
    "quality.l2_norm_max_dev": 1e-6,
    "parity.min_cosine": 0.9999,
    "quality.stsb_spearman": 80.0,
    "model.size_mb": 90.0,
    "memory.peak_rss_mb": 400.0,
}


def _run(i: int, variant: str, workload: str, throughput: float, length: int | None = None, **metrics) -> dict:
    params = {"model": "m", "variant": variant, "provider": "cpu", "pooling": "mean", "bench.batch_size": "32", "workload": workload}
    if length is not None:
        params["workload.lengths"] = f"[{length}]"
    return run_row(
        run_id=f"r{i}", status="ok", start_time=i, params=params, metrics={**GOOD, "throughput.sentences_per_s": throughput, **metrics}
    )


def _profile(queries_weight: float, passages_weight: float):
    """The traffic profile, scored on throughput alone (a score of throughput / 1000, linear)."""
    cfg = compose_decision("traffic", ["decision.robustness.bootstrap=50", "decision.robustness.noise_draws=5"]).decision
    parts = [dataclasses.replace(cfg.parts[0], weight=queries_weight), dataclasses.replace(cfg.parts[1], weight=passages_weight)]
    crit = [CriterionConfig(metric="throughput.sentences_per_s", direction="max", weight=1.0, normalize="levels", best=1000, worst=0)]
    return dataclasses.replace(cfg, criteria=crit, parts=parts)


RUNS = [  # fp32 is fast on queries, int8 on passages; a run of another workload must not count
    _run(1, "fp32", "queries", 900),
    _run(2, "fp32", "passages", 100),
    _run(3, "int8", "queries", 500),
    _run(4, "int8", "passages", 600),
    _run(5, "fp32", "sentences", 10),
]


def test_the_mixed_profile_weighs_the_two_parts_as_configured():
    inputs = Inputs(runs=runs_frame(RUNS))
    d = decide_parts(inputs, _profile(0.7, 0.3))
    rows = d.table.set_index("configuration")
    # each part judged on its own runs: the sentences run (10/s) is in neither
    assert rows.loc["m/fp32/cpu/mean", "score.queries"] == pytest.approx(90) and rows.loc[
        "m/fp32/cpu/mean", "score.indexing"
    ] == pytest.approx(10)
    assert rows.loc["m/fp32/cpu/mean", "total_pct"] == pytest.approx(0.7 * 90 + 0.3 * 10)
    assert rows.loc["m/int8/cpu/mean", "total_pct"] == pytest.approx(0.7 * 50 + 0.3 * 60)
    assert d.winner == "m/fp32/cpu/mean"
    assert d.best == {"queries": "m/fp32/cpu/mean", "indexing": "m/int8/cpu/mean"}
    assert "different configurations" in d.recommendation
    # the same runs, the weights turned around: the other configuration serves the traffic
    flipped = decide_parts(inputs, _profile(0.2, 0.8))
    assert flipped.winner == "m/int8/cpu/mean"
    assert flipped.table.set_index("configuration").loc["m/int8/cpu/mean", "total_pct"] == pytest.approx(0.2 * 50 + 0.8 * 60)


def test_a_configuration_missing_a_part_or_failing_its_gates_cannot_serve_the_mix():
    runs = [*RUNS[:2], _run(3, "int8", "queries", 990), _run(4, "int8", "passages", 990, **{"latency.p95_ms": 500.0})]
    d = decide_parts(Inputs(runs=runs_frame(runs[:3])), _profile(0.5, 0.5))
    assert d.winner == "m/fp32/cpu/mean"  # int8 has no passages run
    # a part's own gates: queries need p95 <= 30 ms, passages do not; int8's slow passages still pass theirs
    d2 = decide_parts(Inputs(runs=runs_frame(runs)), _profile(0.5, 0.5))
    assert d2.winner == "m/int8/cpu/mean"


def test_the_length_curve_marks_where_the_fastest_configuration_changes(tmp_path):
    runs = []
    for i, (length, fp32_ms, int8_ms) in enumerate([(16, 1.0, 1.5), (64, 2.0, 2.2), (256, 9.0, 6.0), (512, 20.0, 12.0)]):
        runs.append(_run(10 + 2 * i, "fp32", "lengths", 1000 / fp32_ms, length, **{"latency.p50_ms": fp32_ms}))
        runs.append(_run(11 + 2 * i, "int8", "lengths", 1000 / int8_ms, length, **{"latency.p50_ms": int8_ms}))
    curve = length_curve(runs_frame(runs))
    assert len(curve) == 8
    assert crossovers(curve) == [
        {"batch_size": "32", "from_length": 64.0, "to_length": 256.0, "before": "m/fp32/cpu/mean", "after": "m/int8/cpu/mean"}
    ]
    files = write(Inputs(runs=runs_frame(runs)), _profile(0.5, 0.5), tmp_path)
    assert {p.name for p in files} >= {"workloads.json", "workloads.md", "length_curve.png"}
    assert "between 64 and 256 tokens" in (tmp_path / "workloads.md").read_text()
