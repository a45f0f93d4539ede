"""Gates: hard requirements (a configuration that fails one cannot win) and graded levels
(target: go, acceptable: close) with the size of every miss."""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

OPS: dict[str, Callable[[float, float], bool]] = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt}
NOT_COMPARABLE = "n/c"


def values(frame: pd.DataFrame, metric: str) -> np.ndarray:
    if metric not in frame:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[metric], errors="coerce").to_numpy(dtype=np.float64)


def failed_measurement(frame: pd.DataFrame, metric: str) -> np.ndarray:
    """Per row: whether the run logged ``metric`` as NaN/inf (a failed measurement: never "missing")."""
    if "failed_metrics" not in frame:
        return np.zeros(len(frame), dtype=bool)
    return np.array([metric in str(f or "").split() for f in frame["failed_metrics"]], dtype=bool)


def is_sensitive(metric: str, prefixes) -> bool:
    """A metric a busy machine makes meaningless (``decision.contention_sensitive``)."""
    return any(metric.startswith(p) for p in prefixes)


@dataclass
class HardResult:
    eligible: np.ndarray  # bool per row
    columns: dict[str, list[str]]  # gate.<name> -> pass | fail | n/a
    why: list[list[str]]


def hard(frame: pd.DataFrame, gates) -> HardResult:
    n = len(frame)
    eligible = np.ones(n, dtype=bool)
    cols: dict[str, list[str]] = {}
    why: list[list[str]] = [[] for _ in range(n)]
    for gate in gates:
        v = values(frame, gate.metric)
        exempt = np.zeros(n, dtype=bool)
        for param, allowed in (gate.exempt or {}).items():
            if param in frame:
                exempt |= frame[param].astype(str).isin([str(x) for x in allowed]).to_numpy()
        verdicts = []
        bad = failed_measurement(frame, gate.metric)
        for i, x in enumerate(v):
            if exempt[i]:
                verdicts.append("n/a")
            elif bad[i]:
                verdicts.append("fail")
                why[i].append(f"{gate.name}: the measurement failed ({x})")
            elif not np.isfinite(x):
                verdicts.append("pass" if gate.if_missing == "pass" else "fail")
                if gate.if_missing != "pass":
                    why[i].append(f"{gate.name}: metric missing")
            elif OPS[gate.op](x, gate.value):
                verdicts.append("pass")
            else:
                verdicts.append("fail")
                why[i].append(f"{gate.name}: got {x:.4g}")
        cols[f"gate.{gate.name}"] = verdicts
        eligible &= np.array([s in ("pass", "n/a") for s in verdicts], dtype=bool)
    return HardResult(eligible, cols, why)


@dataclass
class GradedResult:
    tier: np.ndarray  # 2 go, 1 close, 0 no-go
    columns: dict[str, list[str]]  # gate.<name> -> target | acceptable | fail | n/c
    misses: list[list[str]]  # in words
    failed: np.ndarray  # gates whose acceptable level is missed (or metric missing)
    missed: np.ndarray  # gates whose target only is missed
    shortfall: np.ndarray  # summed relative distance to the targets missed


def _shortfall(x: float, target: float) -> float:
    """How far a value misses its target, relative to the target (a missing value: 1)."""
    if not np.isfinite(x):
        return 1.0
    return abs(x - target) / max(abs(target), 1e-12)


def graded(frame: pd.DataFrame, gates, not_comparable: np.ndarray, sensitive: tuple[str, ...]) -> GradedResult:
    """The verdict levels.  A contended run (``not_comparable``) is not judged on the metrics a
    busy machine distorts: those gates read ``n/c`` and count neither as met nor missed; such a
    run is never a go (see :func:`pipeline.decision.matrix.evaluate`)."""
    n = len(frame)
    tier = np.full(n, 2)
    cols: dict[str, list[str]] = {}
    misses: list[list[str]] = [[] for _ in range(n)]
    failed = np.zeros(n, dtype=int)
    missed = np.zeros(n, dtype=int)
    shortfall = np.zeros(n)
    for gate in gates:
        v = values(frame, gate.metric)
        nc = not_comparable & is_sensitive(gate.metric, sensitive)
        verdicts = []
        bad = failed_measurement(frame, gate.metric)
        for i, x in enumerate(v):
            if nc[i]:
                verdicts.append(NOT_COMPARABLE)
            elif not np.isfinite(x) and gate.if_missing == "skip" and not bad[i]:
                verdicts.append("n/a")
            elif not np.isfinite(x):
                verdicts.append("fail")
                tier[i] = 0
                failed[i] += 1
                shortfall[i] += 1.0
                misses[i].append(f"{gate.name}: metric missing")
            elif OPS[gate.op](x, gate.target):
                verdicts.append("target")
            elif OPS[gate.op](x, gate.acceptable):
                verdicts.append("acceptable")
                tier[i] = min(tier[i], 1)
                missed[i] += 1
                shortfall[i] += _shortfall(x, gate.target)
                misses[i].append(
                    f"{gate.metric} {x:.4g} misses the target {gate.op} {gate.target:g} (acceptable {gate.op} {gate.acceptable:g})"
                )
            else:
                verdicts.append("fail")
                tier[i] = 0
                failed[i] += 1
                shortfall[i] += _shortfall(x, gate.target)
                misses[i].append(f"{gate.metric} {x:.4g} misses the acceptable level {gate.op} {gate.acceptable:g}")
        cols[f"gate.{gate.name}"] = verdicts
    return GradedResult(tier, cols, misses, failed, missed, shortfall)
