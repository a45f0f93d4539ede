"""The serving benchmark's logic (benchmarks/serving_stats.py) on hand-made inputs."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import serving_stats as ss  # noqa: E402


def _pts(*pairs, lost=0):
    return [{"offered_qps": r, "p95_ms": p, "requests": 1000, "lost": lost} for r, p in pairs]


def test_max_qps_is_the_last_rate_met_before_the_first_miss():
    pts = _pts((5, 3), (50, 8), (100, 19), (200, 25), (400, 18))  # 400 met again: noise after a miss does not count
    r = ss.max_qps_at(pts, 20)
    assert r["qps"] == 100 and r["first_miss"] == 200 and not r["below_lowest"] and not r["limited_by_rates"]
    assert ss.max_qps_at(pts, 30)["qps"] == 400 and ss.max_qps_at(pts, 30)["limited_by_rates"]
    low = ss.max_qps_at(pts, 2)
    assert low["qps"] == 0 and low["below_lowest"] and low["lowest"] == 5


def test_a_point_with_lost_requests_misses_whatever_its_p95():
    assert ss.max_qps_at(_pts((5, 3), (50, 4)) + _pts((100, 5), lost=3), 20)["qps"] == 50


def test_best_peer_is_the_highest_and_ties_go_to_capacity():
    rows = {"a": {"qps": 100, "saturation_qps": 300}, "b": {"qps": 100, "saturation_qps": 500}, "c": {"qps": 50, "saturation_qps": 900}}
    assert ss.best_peer(rows) == "b"
    assert ss.best_peer({}) is None


def _fig(qps, below=False, limited=False, lowest=5.0):
    return {"qps": qps, "below_lowest": below, "limited_by_rates": limited, "lowest": lowest}


def test_ratio_exact_and_its_bounds():
    assert ss.ratio(_fig(300), _fig(100)) == {"ratio": 3.0, "kind": "exact", "why": ""}
    r = ss.ratio(_fig(300), _fig(0, below=True))  # the peer missed even 5/s: its figure is below 5
    assert r["kind"] == "at_least" and r["ratio"] == 60.0
    assert ss.ratio(_fig(400, limited=True), _fig(100))["kind"] == "at_least"
    assert ss.ratio(_fig(100), _fig(400, limited=True))["kind"] == "at_most"
    assert ss.ratio(_fig(0, below=True), _fig(0, below=True))["ratio"] is None
    assert ss.ratio(_fig(400, limited=True), _fig(400, limited=True))["kind"] == "unknown"


def test_median_over_rounds():
    rounds = [ss.max_qps_at(_pts((5, 3), (50, 8), (100, 30)), 20), ss.max_qps_at(_pts((5, 3), (50, 30)), 20),
              ss.max_qps_at(_pts((5, 3), (50, 8), (100, 9)), 20)]
    m = ss.median_over_rounds(rounds)
    assert m["qps"] == 50 and m["rounds"] == [50, 5, 100] and m["limited_by_rates"] and not m["below_lowest"]


def test_pollaczek_khinchine_mean_wait():
    # M/D/1, S = 10 ms, lam = 50/s: rho 0.5, Wq = lam S^2 / (2 (1 - rho)) = 50 * 1e-4 / 1 = 5 ms
    assert ss.mg1_wait_mean_s(50, [0.01] * 10) == pytest.approx(0.005)
    assert ss.mg1_wait_mean_s(100, [0.01]) == float("inf")


def test_mg1_p95_is_exact_for_m_m_1_and_grows_with_load():
    # M/M/1: the response time is exponential with rate mu - lam: p95 = ln(20) / (mu - lam)
    rng = np.random.default_rng(0)
    s_ms = rng.exponential(10.0, 200_000)  # mu = 100/s
    lam = 50.0
    assert ss.mg1_p95_ms(lam, s_ms) == pytest.approx(1e3 * np.log(20) / (100 - lam), rel=0.03)
    light, heavy = ss.mg1_p95_ms(5, [4.0] * 50), ss.mg1_p95_ms(200, [4.0] * 50)
    assert light == pytest.approx(4.0, abs=0.05) and heavy > 2 * light  # idle: the service time; loaded: queueing
    assert ss.mg1_p95_ms(300, [4.0]) == float("inf")


def test_cpu_slug():
    assert ss.cpu_slug("Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz") == "intel-r-xeon-r-platinum-8481c-cpu-2-70ghz"
