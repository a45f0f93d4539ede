"""The serving benchmark's arithmetic (benchmarks/serving.py), kept apart so that it is tested on
hand-made inputs (tests/test_benchmarks_serving.py): max QPS at a p95 target, the best peer, the
ratio to it (exact or a bound), and the p95 an M/G/1 queue predicts from the measured service times.

M/G/1 prediction.  Poisson arrivals at rate ``lam`` into one FIFO server whose service times
are the measured single-call times ``S``: utilisation ``rho = lam E[S]``; the mean wait in
queue is Pollaczek-Khinchine's ``Wq = lam E[S^2] / (2 (1 - rho))``.  For the tail, the waiting
time is approximated as 0 with probability ``1 - rho`` and otherwise exponential with mean
``Wq / rho`` (the standard exponential approximation of the M/G/1 waiting time, exact for M/M/1,
close in heavy traffic), independent of the request's own service time.  The predicted p95 of
the response time ``T = W + S`` solves ``P(T > t) = 0.05`` with ``P(T > t) = mean_s P(W > t - s)``
over the measured ``S``.  A front that batches does better than this one-at-a-time model at high
load; a front with overhead (HTTP, threads) does worse: the gap is the front's cost.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

TARGETS_MS = (20.0, 30.0, 50.0)


def met(point: dict, target_ms: float, max_lost_share: float = 0.0) -> bool:
    """A point meets the target: p95 within it and no more lost/failed requests than allowed."""
    n = max(int(point.get("requests", 0)), 1)
    lost = int(point.get("lost", 0)) + int(point.get("failed", 0))
    return point["p95_ms"] <= target_ms and lost / n <= max_lost_share


def max_qps_at(points: Sequence[dict], target_ms: float) -> dict:
    """The highest offered rate met before the first rate that misses (rates ascending).

    ``qps``: that rate (0 when the lowest rate tried misses); ``below_lowest``: the lowest rate
    missed (the figure is below it); ``limited_by_rates``: the highest rate tried was met (the
    figure is at least ``qps``); ``first_miss``: the rate that missed (None if none)."""
    pts = sorted(points, key=lambda p: p["offered_qps"])
    if not pts:
        return {"qps": 0.0, "below_lowest": True, "limited_by_rates": False, "first_miss": None, "lowest": None}
    best, miss = 0.0, None
    for p in pts:
        if not met(p, target_ms):
            miss = p["offered_qps"]
            break
        best = p["offered_qps"]
    return {
        "qps": best,
        "below_lowest": miss == pts[0]["offered_qps"],
        "limited_by_rates": miss is None,
        "first_miss": miss,
        "lowest": pts[0]["offered_qps"],
    }


def median_over_rounds(per_round: Sequence[dict]) -> dict:
    """One figure from each round's :func:`max_qps_at`: the median qps; bounds if any round had one."""
    if not per_round:
        return max_qps_at([], 0.0)
    qps = float(np.median([r["qps"] for r in per_round]))
    return {
        "qps": qps,
        "rounds": [r["qps"] for r in per_round],
        "below_lowest": all(r["below_lowest"] for r in per_round),
        "limited_by_rates": any(r["limited_by_rates"] for r in per_round),
        "lowest": per_round[0].get("lowest"),
    }


def best_peer(rows: dict[str, dict]) -> str | None:
    """The peer with the highest figure; ties go to the higher saturation rate, then the name."""
    if not rows:
        return None
    return max(rows, key=lambda n: (rows[n]["qps"], rows[n].get("saturation_qps", 0.0), n))


def ratio(ours: dict, peer: dict) -> dict:
    """ours / peer at one target, with its kind: ``exact``, ``at_least`` (the peer missed even the
    lowest rate tried, or ours met the highest), ``at_most`` (the peer met the highest rate tried),
    or ``unknown`` (no figure can be said)."""
    o, p = ours["qps"], peer["qps"]
    if peer["below_lowest"]:  # the peer's figure is below its lowest rate
        if o <= 0:
            return {"ratio": None, "kind": "unknown", "why": "neither met the target at the lowest rate tried"}
        return {"ratio": o / peer["lowest"], "kind": "at_least", "why": f"the peer missed the target at {peer['lowest']:g}/s"}
    if o <= 0:  # ours missed even the lowest rate (the peer met it): below lowest / peer
        return {"ratio": ours["lowest"] / p, "kind": "at_most", "why": f"ours missed the target at {ours['lowest']:g}/s"}
    r = o / p
    if ours["limited_by_rates"] and peer["limited_by_rates"]:
        return {"ratio": None, "kind": "unknown", "why": "both met the target at the highest rate tried"}
    if ours["limited_by_rates"]:
        return {"ratio": r, "kind": "at_least", "why": "ours met the target at the highest rate tried"}
    if peer["limited_by_rates"]:
        return {"ratio": r, "kind": "at_most", "why": "the peer met the target at the highest rate tried"}
    return {"ratio": r, "kind": "exact", "why": ""}


def mg1_wait_mean_s(lam: float, service_s: Sequence[float]) -> float:
    """Pollaczek-Khinchine mean wait in queue (s); inf at or past saturation."""
    s = np.asarray(service_s, dtype=float)
    rho = lam * s.mean()
    if rho >= 1:
        return math.inf
    return lam * float(np.mean(s**2)) / (2 * (1 - rho))


def mg1_p95_ms(lam: float, service_ms: Sequence[float], q: float = 0.95) -> float:
    """The response-time quantile (ms) an M/G/1 queue predicts at ``lam``/s (module docstring)."""
    s = np.asarray(service_ms, dtype=float) / 1e3
    rho = lam * s.mean()
    if rho >= 1:
        return math.inf
    wq = mg1_wait_mean_s(lam, s)
    tail = 1 - q

    def exceed(t: float) -> float:
        x = t - s
        p = np.where(x < 0, 1.0, rho * np.exp(-rho * np.maximum(x, 0) / wq) if wq > 0 else 0.0)
        return float(p.mean())

    lo, hi = 0.0, float(s.max()) + 50 * (wq / max(rho, 1e-12)) + 1e-6
    for _ in range(100):  # bisection: exceed() falls as t grows
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if exceed(mid) > tail else (lo, mid)
    return hi * 1e3


def summary(lat_ms: Sequence[float]) -> dict:
    a = np.asarray(lat_ms, dtype=float)
    if a.size == 0:
        return {"p50_ms": math.inf, "p95_ms": math.inf, "p99_ms": math.inf}
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {"p50_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99)}
