"""The decision matrix: pure functions over the runs frame (:class:`pipeline.decision.types.Inputs`).

    ranked = evaluate(candidates, cfg)      # gates, scores, total, order; no MLflow, no files

Order: configurations passing the hard gates first; then those measured on a quiet machine
before contended ones; then (``prefer_verdict``) go before close before no-go; then fewer
missed acceptable levels, fewer missed targets and smaller misses; then the total score.
Differences inside the noise are ties: per criterion (:func:`scores.share_ties`), and in the
order (equal keys and totals share a ``tie_group``; the name breaks the tie, reproducibly).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import ConfigError, DecisionConfig
from pipeline.core.vocab import Status
from pipeline.decision import gates, scores
from pipeline.decision.types import VERDICTS


def _contended(frame: pd.DataFrame) -> np.ndarray:
    if "contended" not in frame:
        return np.zeros(len(frame), dtype=bool)
    return (frame["contended"].fillna("").astype(str) != "").to_numpy()


def leaders(runs: pd.DataFrame, cfg: DecisionConfig, top_k: int) -> pd.DataFrame:
    """The first ``top_k`` of a ranking of the ok runs that pass the hard gates: whose raw samples
    are read (the decision's figures, its noise) and who is timed again."""
    ranked = evaluate(runs[runs["status"] == Status.OK], cfg)
    return ranked[ranked["eligible"]].head(top_k)


def evaluate(
    candidates: pd.DataFrame, cfg: DecisionConfig, weights: dict[str, float] | None = None, bands: dict[str, np.ndarray] | None = None
) -> pd.DataFrame:
    """Gates, scores, total and rank for the ``ok`` configurations; returns the ranked frame.

    Adds ``gate.<name>`` (pass|fail|n/a; target|acceptable|fail|n/c), ``eligible`` (every hard
    gate passed), ``verdict`` (go|close|no-go), ``why`` (failed gates, missed targets, what was
    not comparable), ``score.<metric>`` in [0, 1], ``total_pct``, ``tie_group``, ``tied`` and
    ``rank`` (1 = best).  ``bands``: per metric, each row's measured noise (same order as
    ``candidates``), for the ties.
    """
    if not cfg.criteria:
        raise ConfigError("decision.criteria", "no criterion configured")
    frame = candidates.reset_index(drop=True)
    n = len(frame)
    sensitive = tuple(cfg.contention_sensitive)
    contended = _contended(frame)

    h = gates.hard(frame, cfg.hard_gates)
    g = gates.graded(frame, cfg.graded_gates, contended, sensitive)
    why = [list(w) for w in h.why]
    tier = np.where(h.eligible, g.tier, 0)
    tier = np.where(contended, 0, tier)  # never a go, nor a close, on a busy machine's numbers
    for i in np.flatnonzero(contended):
        why[i].insert(0, f"not comparable: measured on a busy machine ({frame.at[i, 'contended']})")
    for i in range(n):
        why[i].extend(g.misses[i])

    cols: dict[str, Any] = {**h.columns, **g.columns}
    cols["eligible"] = h.eligible
    cols["verdict"] = [VERDICTS[2 - t] for t in tier]

    total_pct, raw_pct = _totals(frame, cfg, cols, why, h.eligible, contended, weights, bands)
    cols["total_pct"] = total_pct
    cols["gates_failed"] = g.failed
    cols["gates_missed"] = g.missed
    cols["shortfall"] = g.shortfall
    cols["why"] = ["; ".join(r) for r in why]
    cols["misses"] = ["; ".join(r) for r in g.misses]

    order, cols["tie_group"], cols["tied"] = _order(frame, cfg, h.eligible, contended, tier, g, total_pct, raw_pct)
    new = pd.DataFrame(cols, index=frame.index)
    base = frame.drop(columns=[c for c in new.columns if c in frame] + (["rank"] if "rank" in frame else []))
    out = pd.concat([pd.DataFrame({"rank": np.zeros(n, dtype=int)}, index=frame.index), base, new], axis=1)
    out = out.iloc[order].reset_index(drop=True)
    out["rank"] = np.arange(1, n + 1)
    return out


def _totals(frame, cfg: DecisionConfig, cols: dict, why: list[list[str]], eligible, contended, weights, bands):
    """Each criterion's score (``score.<metric>`` into ``cols``, ties shared) and the weighted
    totals in percent: with the shared scores, and without them (the best estimate in a tie)."""
    n = len(frame)
    sensitive = tuple(cfg.contention_sensitive)
    w = {c.metric: float(c.weight) for c in cfg.criteria}
    if weights:
        w.update(weights)
    wsum = sum(w[c.metric] for c in cfg.criteria)
    if wsum <= 0:
        raise ConfigError("decision.criteria", "the weights sum to 0")
    total = np.zeros(n)
    raw = np.zeros(n)  # the same total without shared scores: the best estimate inside a tie
    for crit in cfg.criteria:
        v = gates.values(frame, crit.metric)
        if gates.is_sensitive(crit.metric, sensitive):
            v = np.where(contended, np.nan, v)
        ref = v[eligible] if eligible.any() else v
        s = scores.scale(v, ref, crit)
        raw += w[crit.metric] * s
        band = scores.bands_for(v, crit, None if bands is None else bands.get(crit.metric))
        s, _ = scores.share_ties(v, s, band, crit.direction)
        for i in np.flatnonzero(~np.isfinite(v)):
            if not (contended[i] and gates.is_sensitive(crit.metric, sensitive)):
                why[i].append(f"{crit.metric} missing: scored 0")
        cols[f"score.{crit.metric}"] = s
        total += w[crit.metric] * s
    return 100.0 * total / wsum, 100.0 * raw / wsum


def _order(frame, cfg: DecisionConfig, eligible, contended, tier, g, total_pct, raw_pct):
    """The rank order (see the module doc), each row's tie group, and whether it shares it."""
    n = len(frame)
    labels = frame["label"].astype(str).to_numpy() if n else np.array([], dtype=str)
    run_ids = frame["run_id"].astype(str).to_numpy() if n else np.array([], dtype=str)

    def primary(i: int) -> tuple:
        if cfg.prefer_verdict:
            return (
                -int(eligible[i]),
                int(contended[i]),
                -int(tier[i]),
                int(g.failed[i]),
                int(g.missed[i]),
                round(float(g.shortfall[i]), 6),
                -round(float(total_pct[i]), 9),
            )
        return (-int(eligible[i]), int(contended[i]), -round(float(total_pct[i]), 9))

    order = sorted(range(n), key=lambda i: (*primary(i), -round(float(raw_pct[i]), 9), labels[i], run_ids[i]))
    tie_group, gid, prev = np.zeros(n, dtype=int), -1, None
    for i in order:
        key = primary(i)
        if key != prev:
            gid, prev = gid + 1, key
        tie_group[i] = gid
    sizes = np.bincount(tie_group) if n else np.array([], dtype=int)
    return order, tie_group, (sizes[tie_group] > 1 if n else np.array([], dtype=bool))


def pareto_front(frame: pd.DataFrame, x: str, y: str) -> np.ndarray:
    """True for eligible configurations no other eligible one beats on both x (lower) and y (higher)."""
    xs, ys = gates.values(frame, x), gates.values(frame, y)
    elig = frame["eligible"].to_numpy(dtype=bool) if "eligible" in frame else np.ones(len(frame), bool)
    ok = elig & np.isfinite(xs) & np.isfinite(ys)
    front = np.zeros(len(frame), dtype=bool)
    for i in np.flatnonzero(ok):
        dominated = ok & (xs <= xs[i]) & (ys >= ys[i]) & ((xs < xs[i]) | (ys > ys[i]))
        front[i] = not dominated.any()
    return front


def winner_of(ranked: pd.DataFrame) -> str | None:
    if ranked.empty or not bool(ranked["eligible"].iloc[0]):
        return None
    return ranked["run_id"].iloc[0]
