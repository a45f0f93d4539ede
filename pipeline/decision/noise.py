"""How much of the ranking is noise: between runs (interleaved re-timings of the leaders),
within a run (a bootstrap of the raw samples), and under moved weights."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.config import DecisionConfig
from pipeline.core.vocab import Metric
from pipeline.decision.matrix import evaluate, winner_of

# the benchmark metrics a re-timing measures again
RETIMED = (Metric.P50_MS, Metric.P95_MS, Metric.P99_MS, Metric.THROUGHPUT)


def between_runs(candidates: pd.DataFrame, rounds: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, np.ndarray], pd.DataFrame]:
    """Fold the leaders' re-timings into the candidates.

    For each re-timed configuration and metric, the values are its sweep measurement and every
    quiet re-timing round.  The candidate's value becomes their median (its sweep value stays
    in ``measured.<metric>``) and its noise band their range (max - min).  Contended rounds are
    left out.  A configuration contended in the sweep that has quiet rounds is ranked with its
    quiet figures alone: its contended sweep value is left out, its ``contended`` reason is
    cleared and kept in ``retimed_from_contended``; one with no quiet round stays contended.
    Returns (candidates, bands per metric aligned with the candidates, a table with one row per
    (configuration, metric)).
    """
    cand = candidates.reset_index(drop=True).copy()
    bands: dict[str, np.ndarray] = {m: np.full(len(cand), np.nan) for m in RETIMED}
    cols = ["label", "run_id", "metric", "n", "sweep", "median", "low", "high", "rounds", "was_contended"]
    if rounds is None or rounds.empty or cand.empty or "record_id" not in cand:
        return cand, bands, pd.DataFrame(columns=cols)
    quiet = rounds[rounds["contended"].fillna("").astype(str) == ""] if "contended" in rounds else rounds
    rows = []
    for i, row in cand.iterrows():
        mine = quiet[quiet["record_id"] == row["record_id"]]
        if mine.empty:
            continue
        was = str(row.get("contended") or "")
        for m in RETIMED:
            if m not in cand or m not in mine:
                continue
            retimed = pd.to_numeric(mine[m], errors="coerce").tolist()
            vals = retimed if was else [row[m], *retimed]  # a busy machine's figure is never folded in
            vals = np.asarray([v for v in vals if v is not None and np.isfinite(v)], dtype=np.float64)
            if vals.size < (1 if was else 2):
                continue
            med, lo, hi = float(np.median(vals)), float(vals.min()), float(vals.max())
            cand.at[i, f"measured.{m}"] = row[m]
            cand.at[i, m] = med
            bands[m][i] = hi - lo
            rows.append(
                {
                    "label": row["label"],
                    "run_id": row["run_id"],
                    "metric": m,
                    "n": int(vals.size),
                    "sweep": float(row[m]),
                    "median": med,
                    "low": lo,
                    "high": hi,
                    "rounds": ", ".join(f"{v:.4g}" for v in (vals if was else vals[1:])),
                    "was_contended": was,
                }
            )
        if was and any(r["run_id"] == row["run_id"] for r in rows):
            cand.at[i, "retimed_from_contended"] = was
            cand.at[i, "contended"] = ""
    return cand, bands, pd.DataFrame(rows, columns=cols)


def differences(table: pd.DataFrame, ranked: pd.DataFrame) -> pd.DataFrame:
    """Each re-timed leader against the winner: the median difference and its interval (the
    conservative one: [its low - winner's high, its high - winner's low]); a difference whose
    interval holds 0 is inside the noise."""
    cols = ["label", "metric", "diff", "diff_low", "diff_high", "distinguishable"]
    if table.empty or ranked.empty:
        return pd.DataFrame(columns=cols)
    win = ranked["label"].iloc[0]
    w = table[table["label"] == win].set_index("metric")
    rows = []
    for _, r in table[table["label"] != win].iterrows():
        if r["metric"] not in w.index:
            continue
        wr = w.loc[r["metric"]]
        lo, hi = r["low"] - wr["high"], r["high"] - wr["low"]
        rows.append(
            {
                "label": r["label"],
                "metric": r["metric"],
                "diff": r["median"] - wr["median"],
                "diff_low": lo,
                "diff_high": hi,
                "distinguishable": bool(lo > 0 or hi < 0),
            }
        )
    return pd.DataFrame(rows, columns=cols)


def weight_sensitivity(
    candidates: pd.DataFrame, cfg: DecisionConfig, winner: str | None, bands: dict[str, np.ndarray] | None = None
) -> tuple[pd.DataFrame, float | None, float | None]:
    """Each weight moved by -x and +x: the winner and the top-k order each time."""
    k = cfg.robustness.top_k
    base = evaluate(candidates, cfg, bands=bands)
    base_top = base.loc[base["eligible"], "label"].head(k).tolist()
    rows = []
    for crit in cfg.criteria:
        if crit.weight <= 0:
            continue
        for sign in (-1, 1):
            change = sign * cfg.robustness.weight_change
            ranked = evaluate(candidates, cfg, {crit.metric: crit.weight * (1 + change)}, bands=bands)
            top = ranked.loc[ranked["eligible"], "label"].head(k).tolist()
            w = winner_of(ranked)
            rows.append(
                {
                    "criterion": crit.metric,
                    "change": f"{change:+.0%}",
                    "weight": crit.weight * (1 + change),
                    "winner": ranked["label"].iloc[0] if w else None,
                    "winner_run_id": w,
                    "same_winner": w == winner,
                    "top": " > ".join(top),
                    "same_top": top == base_top,
                }
            )
    table = pd.DataFrame(rows, columns=["criterion", "change", "weight", "winner", "winner_run_id", "same_winner", "top", "same_top"])
    if table.empty:
        return table, None, None
    return table, float(table["same_winner"].mean()), float(table["same_top"].mean())


def _bootstrap_percentile(samples: np.ndarray, q: float, draws: int, rng: np.random.Generator) -> np.ndarray:
    out = np.empty(draws)
    chunk = max(1, int(4_000_000 // max(1, samples.size)))
    for start in range(0, draws, chunk):
        m = min(chunk, draws - start)
        idx = rng.integers(0, samples.size, size=(m, samples.size))
        out[start : start + m] = np.percentile(samples[idx], q, axis=1)
    return out


# the within-run table: per leading configuration, its p95 interval and its difference from the winner
WITHIN_RUN_COLUMNS = tuple(
    "rank label run_id n_samples p95_ms ci_low_ms ci_high_ms diff_vs_winner_ms diff_ci_low_ms diff_ci_high_ms distinguishable".split()
)


def within_run(
    candidates: pd.DataFrame,
    ranked: pd.DataFrame,
    cfg: DecisionConfig,
    samples_ms: dict[str, np.ndarray],
    bands: dict[str, np.ndarray] | None = None,
) -> tuple[pd.DataFrame, float | None, int]:
    """Bootstrap the noise metric (p95) of the leading configurations from their raw samples.

    This resamples the calls of one run, so it is a lower bound on the noise: it cannot see a
    slow spell that covered a whole run.  The between-run noise (:func:`between_runs`) is what
    decides ties.  Returns a table (interval per configuration and of its difference from the
    winner), the fraction of redraws in which the winner stays the winner, and the number of
    redraws.
    """
    r = cfg.robustness
    cols = list(WITHIN_RUN_COLUMNS)
    leaders = ranked[ranked["eligible"]].head(r.top_k)
    if leaders.empty or r.bootstrap == 0:
        return pd.DataFrame(columns=cols), None, 0
    draws = max(r.bootstrap, r.noise_draws)
    alpha = (1 - r.confidence) / 2
    rng = np.random.default_rng(r.seed)
    boot: dict[str, np.ndarray] = {}
    for _, row in leaders.iterrows():
        s = samples_ms.get(row["label"])
        if s is not None and s.size > 1:
            boot[row["run_id"]] = _bootstrap_percentile(s, cfg.noise_percentile, draws, rng)
    win_id = winner_of(ranked)
    win_samples = samples_ms.get(ranked["label"].iloc[0]) if len(ranked) else None
    rows = []
    for _, row in leaders.iterrows():
        s = samples_ms.get(row["label"])
        b = boot.get(row["run_id"])
        rec = {"rank": int(row["rank"]), "label": row["label"], "run_id": row["run_id"], "n_samples": 0 if s is None else int(s.size)}
        if b is not None:
            rec.update(
                p95_ms=float(np.percentile(s, cfg.noise_percentile)),
                ci_low_ms=float(np.quantile(b, alpha)),
                ci_high_ms=float(np.quantile(b, 1 - alpha)),
            )
            if row["run_id"] != win_id and win_id in boot and win_samples is not None:
                d = b - boot[win_id]
                lo, hi = float(np.quantile(d, alpha)), float(np.quantile(d, 1 - alpha))
                rec.update(
                    diff_vs_winner_ms=float(np.percentile(s, cfg.noise_percentile) - np.percentile(win_samples, cfg.noise_percentile)),
                    diff_ci_low_ms=lo,
                    diff_ci_high_ms=hi,
                    distinguishable=bool(lo > 0 or hi < 0),
                )
        rows.append(rec)
    table = pd.DataFrame(rows, columns=cols)

    n_draws = min(r.noise_draws, draws)
    stability = _winner_stability(candidates, cfg, boot, win_id, n_draws, bands) if boot and n_draws and win_id is not None else None
    return table, stability, n_draws


def _winner_stability(
    candidates: pd.DataFrame,
    cfg: DecisionConfig,
    boot: dict[str, np.ndarray],
    win_id: str,
    n_draws: int,
    bands: dict[str, np.ndarray] | None,
) -> float:
    """The share of redraws (each leader's noise metric replaced by a bootstrap draw) in which the
    winner stays the winner."""
    metric = cfg.noise_metric
    same = 0
    base = candidates.copy().reset_index(drop=True)
    if metric not in base:
        base[metric] = np.nan
    where = {rid: np.flatnonzero(base["run_id"].to_numpy() == rid)[0] for rid in boot}
    for j in range(n_draws):
        redraw = base.copy()
        for rid, b in boot.items():
            redraw.loc[where[rid], metric] = b[j]
        same += winner_of(evaluate(redraw, cfg, bands=bands)) == win_id
    return same / n_draws
