"""The decision matrix: rank every configuration of a sweep, apply the gates, name the one to ship.

Usage::

    python -m pipeline.decide                                  # the latest sweep, profile `default`
    python -m pipeline.decide --parent RUN_ID                  # any earlier sweep (its parent run id)
    python -m pipeline.decide --profile latency_first --tracking-uri sqlite:///mlruns/mlflow.db
    python -m pipeline.decide --out reports decision.robustness.bootstrap=2000   # Hydra overrides

From code, at the end of a sweep::

    from pipeline.decide import decide_sweep
    decision = decide_sweep(parent_run_id, cfg.decision, cfg.tracking.resolved_uri(), out_dir="reports")
    print(decision.recommendation)

The profile is the Hydra config group ``decision`` (``conf/decision/*.yaml``, schema
:class:`pipeline.config.DecisionConfig`). Everything comes from MLflow: the children of the
parent run (tag ``mlflow.parentRunId``) with their params, ``status`` tag, metrics and the raw
latency samples artifact. Runs not tagged ``status=ok`` (skipped, failed, unfinished) are listed
with their reason but not ranked.

Method, per configuration (one ``ok`` child run):

1. Hard gates (e.g. ``parity.min_cosine >= 0.99``): fail one, or lack its metric, and the
   configuration cannot win.
2. Graded gates (e.g. p95 <= 20 ms target, <= 30 ms acceptable) give the verdict:
   ``go`` when every target is met, ``close`` when every acceptable level is met, else ``no-go``.
3. Each criterion is scored in [0, 1]: ``minmax`` puts the best candidate passing the hard gates
   at 1 and the worst at 0 (a single candidate or a tie: 1; values outside the range are clipped;
   a missing metric scores 0); ``levels`` uses a fixed scale from ``worst`` (0) to ``best`` (1).
   The total is the weighted mean of the scores, as a percentage.
4. Ranking: configurations passing the hard gates first, then (``prefer_verdict``) go before
   close before no-go, then by total score; ties by label and run id, so the ranking is
   reproducible. The first one passing the hard gates is the winner.
5. Robustness: each weight moved by -20% and +20% (how often the winner stays the winner), and a
   bootstrap over the raw latency samples of the leading configurations: an interval on each p95,
   on its difference from the winner's, and how often the winner stays the winner when the p95
   values are redrawn.

Outputs: ``<out_dir>/<parent_run_id>/`` (ranking.csv, ranking.md, report.md, decision.json,
robustness_weights.csv, robustness_noise.csv, excluded.csv, pareto.png, latency_cdf.png,
scores.png), a copy in ``<out_dir>/latest/``, ``<out_dir>/metrics.json`` (headline, for DVC);
the same files are logged on the parent run under ``decision/``, with the winner's metrics as
``best.<metric>`` and tags ``decision.winner``, ``decision.verdict``.
"""

from __future__ import annotations

import argparse
import json
import logging
import operator
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from .config import ConfigError, DecisionConfig

log = logging.getLogger(__name__)

PARAMS = ("model", "variant", "provider", "pooling", "batch_size", "max_length", "threads")
VERDICTS = ("go", "close", "no-go")
_TIER = {"go": 2, "close": 1, "no-go": 0}
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    "<": operator.lt,
    ">=": operator.ge,
    ">": operator.gt,
}
# headline metrics copied onto the parent run as best.<name>, besides the criteria and gates
HEADLINE_METRICS = (
    "latency.p50_ms",
    "latency.p95_ms",
    "latency.p99_ms",
    "throughput.sentences_per_s",
    "quality.stsb_spearman",
    "model.size_mb",
    "memory.peak_rss_mb",
    "parity.min_cosine",
)


class DecideError(RuntimeError):
    """Nothing to decide: no such parent run, no sweep in the store."""


# ---------------------------------------------------------------------------------------------
# typed results


@dataclass
class Winner:
    run_id: str
    label: str
    params: dict[str, str]
    metrics: dict[str, float]
    score_pct: float
    verdict: str
    command: str
    misses: list[str]  # graded gates whose target it misses (why it is close / no-go)


@dataclass
class Robustness:
    # one row per (criterion, change): the winner and the top of the ranking with that weight moved
    weights: pd.DataFrame
    winner_stability: float | None  # fraction of weight moves that keep the winner
    top_stability: float | None  # fraction of weight moves that keep the top-k in the same order
    # one row per leading configuration: bootstrap interval of p95 and of its difference from the winner
    noise: pd.DataFrame
    noise_stability: float | None  # fraction of bootstrap redraws of p95 that keep the winner
    noise_draws: int = 0


@dataclass
class Decision:
    parent_run_id: str
    sweep: str
    profile: str
    ranking: pd.DataFrame  # every ok configuration, ranked (column `rank`)
    excluded: pd.DataFrame  # skipped / failed / unfinished runs: listed, not ranked
    winner: Winner | None
    verdict: str  # go | close | no-go
    recommendation: str  # in words a person can act on
    robustness: Robustness
    config: DecisionConfig
    samples_ms: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # label -> raw latency
    out_dir: Path | None = None
    files: list[str] = field(default_factory=list)

    def headline(self) -> dict[str, Any]:
        """The numbers DVC tracks (reports/metrics.json)."""
        w = self.winner
        m = w.metrics if w else {}
        return {
            "verdict": self.verdict,
            "verdict_level": _TIER[self.verdict],
            "winner": w.label if w else None,
            "winner_run_id": w.run_id if w else None,
            "score_pct": _num(w.score_pct) if w else None,
            "latency_p95_ms": _num(m.get("latency.p95_ms")),
            "throughput_sentences_per_s": _num(m.get("throughput.sentences_per_s")),
            "stsb_spearman": _num(m.get("quality.stsb_spearman")),
            "winner_stability": _num(self.robustness.winner_stability),
            "noise_stability": _num(self.robustness.noise_stability),
            "configurations_ranked": int(len(self.ranking)),
            "configurations_excluded": int(len(self.excluded)),
        }

    def to_dict(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "parent_run_id": self.parent_run_id,
            "sweep": self.sweep,
            "profile": self.profile,
            "verdict": self.verdict,
            "recommendation": self.recommendation,
            "winner": None
            if self.winner is None
            else {
                "run_id": self.winner.run_id,
                "label": self.winner.label,
                "params": self.winner.params,
                "metrics": {k: _num(v) for k, v in self.winner.metrics.items()},
                "score_pct": _num(self.winner.score_pct),
                "verdict": self.winner.verdict,
                "command": self.winner.command,
                "misses": self.winner.misses,
            },
            "ranking": [
                {"rank": int(r["rank"]), "label": r["label"], "run_id": r["run_id"], "total_pct": _num(r["total_pct"]),
                 "eligible": bool(r["eligible"]), "verdict": r["verdict"], "why": r["why"]}
                for _, r in self.ranking.iterrows()
            ],
            "excluded": self.excluded[["label", "run_id", "status", "reason"]].to_dict(orient="records"),
            "robustness": {
                "weight_change": cfg.robustness.weight_change,
                "winner_stability": _num(self.robustness.winner_stability),
                "top_stability": _num(self.robustness.top_stability),
                "noise_stability": _num(self.robustness.noise_stability),
                "noise_draws": self.robustness.noise_draws,
            },
            "weights": {c.metric: c.weight for c in cfg.criteria},
            "headline": self.headline(),
        }


def _num(v) -> float | None:
    """A JSON-safe float (None for missing / NaN)."""
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if not np.isfinite(f) else f


# ---------------------------------------------------------------------------------------------
# config


def as_decision_config(node) -> DecisionConfig:
    """A DecisionConfig from a DictConfig / dict (the `decision` group) or a DecisionConfig."""
    if isinstance(node, DecisionConfig):
        return node
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        merged = OmegaConf.merge(OmegaConf.structured(DecisionConfig), node)
        obj = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, ConfigError):
            raise cause from None
        raise ConfigError(f"decision.{getattr(exc, 'full_key', '') or ''}".rstrip("."), str(exc).splitlines()[0]) from None
    assert isinstance(obj, DecisionConfig)
    return obj


def compose_decision(profile: str = "default", overrides: list[str] | None = None):
    """Compose the project's Hydra config with ``decision=<profile>``; returns the typed Config.

    For the command line and tests. Inside a running Hydra app (the sweep end) pass the app's
    ``cfg.decision`` to :func:`decide_sweep` instead.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from .config import register_configs, to_config

    if GlobalHydra.instance().is_initialized():
        raise RuntimeError("compose_decision() inside a running Hydra app: pass cfg.decision to decide_sweep()")
    register_configs()
    conf_dir = Path(__file__).resolve().parent.parent / "conf"
    with initialize_config_dir(config_dir=str(conf_dir), version_base=None):
        dcfg = compose(config_name="config", overrides=[f"decision={profile}", *(overrides or [])])
    return to_config(dcfg)


# ---------------------------------------------------------------------------------------------
# reading MLflow


def _client(tracking_uri: str):
    from mlflow.tracking import MlflowClient

    import os

    from . import track

    track.quiet()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return MlflowClient(tracking_uri=tracking_uri)


def _experiment_ids(client) -> list[str]:
    return [e.experiment_id for e in client.search_experiments()]


def _search_all(client, filter_string: str, order_by: list[str] | None = None, max_results: int = 1000) -> list:
    runs, token = [], None
    ids = _experiment_ids(client)
    if not ids:
        return runs
    while True:
        page = client.search_runs(ids, filter_string=filter_string, max_results=max_results, order_by=order_by, page_token=token)
        runs.extend(page)
        token = page.token
        if not token or len(page) < max_results:
            return runs


def latest_parent(client) -> str:
    """The parent run of the most recent sweep: a run tagged sweep.role=parent or one with children."""
    candidates = []
    ids = _experiment_ids(client)
    if ids:
        for flt in ("tags.`sweep.role` = 'parent'", "tags.`mlflow.parentRunId` IS NOT NULL"):
            page = client.search_runs(ids, filter_string=flt, max_results=1, order_by=["attributes.start_time DESC"])
            if page:
                run = page[0]
                pid = run.info.run_id if "role" in flt else run.data.tags["mlflow.parentRunId"]
                candidates.append(pid)
    if not candidates:
        raise DecideError("no sweep in this tracking store: no run has children or the tag sweep.role=parent")
    parents = [client.get_run(pid) for pid in dict.fromkeys(candidates)]
    return max(parents, key=lambda r: (r.info.start_time or 0, r.info.run_id)).info.run_id


def load_children(client, parent_run_id: str) -> pd.DataFrame:
    """One row per child run: run_id, run_name, status, reason, params, every metric (by name)."""
    rows = []
    runs = _search_all(client, f"tags.`mlflow.parentRunId` = '{parent_run_id}'")
    # jobs of the sweep found already done elsewhere (resume) keep their runs under another
    # parent; the parent's jobs.json lists every job's run id
    seen = {r.info.run_id for r in runs}
    for run_id in _listed_job_runs(client, parent_run_id):
        if run_id not in seen:
            try:
                runs.append(client.get_run(run_id))
                seen.add(run_id)
            except Exception as exc:  # deleted since: the sweep's own children still count
                log.warning("job run %s listed in jobs.json is gone (%s)", run_id, type(exc).__name__)
    for run in runs:
        tags = run.data.tags
        status = tags.get("status")
        reason = tags.get("reason", "")
        if status is None:
            status = "unfinished"
            reason = reason or f"no status tag (MLflow run status {run.info.status})"
        row: dict[str, Any] = {
            "run_id": run.info.run_id,
            "run_name": run.info.run_name or "",
            "status": status,
            "reason": reason,
            "start_time": run.info.start_time or 0,
        }
        for p in PARAMS:
            row[p] = run.data.params.get(p)
        row.update({k: float(v) for k, v in run.data.metrics.items()})
        rows.append(row)
    frame = pd.DataFrame(rows, columns=None if rows else ["run_id", "run_name", "status", "reason", "start_time", *PARAMS])
    if len(frame):
        frame = frame.sort_values(["start_time", "run_id"], kind="mergesort").reset_index(drop=True)
    frame["label"] = _labels(frame)
    return frame


def _listed_job_runs(client, parent_run_id: str) -> list[str]:
    """Run ids in the parent's ``jobs.json`` (written by the sweep), or none."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(parent_run_id, "jobs.json", tmp)
            jobs = json.loads(Path(path).read_text()).get("jobs", [])
        except Exception:
            return []
    return [j["run_id"] for j in jobs if j.get("run_id")]


def _labels(frame: pd.DataFrame) -> list[str]:
    """model/variant/provider/pooling/b<batch> (+ t<threads>, L<max_length> where they vary); unique."""
    if frame.empty:
        return []

    def col(name):
        return frame[name].astype(str) if name in frame else pd.Series(["?"] * len(frame))

    labels = col("model") + "/" + col("variant") + "/" + col("provider") + "/" + col("pooling") + "/b" + col("batch_size")
    for name, prefix in (("threads", "/t"), ("max_length", "/L")):
        if name in frame and frame[name].nunique(dropna=False) > 1:
            labels = labels + prefix + col(name)
    labels = labels.tolist()
    counts = pd.Series(labels).value_counts()
    return [f"{lab}#{rid[:6]}" if counts[lab] > 1 else lab for lab, rid in zip(labels, frame["run_id"])]


def load_samples_ms(client, run_id: str, artifact: str) -> np.ndarray | None:
    """The raw per-call latency samples of a run, in ms (None when the run has no such artifact)."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(run_id, artifact, tmp)
        except Exception as exc:  # the artifact is optional: the noise check reports what it lacks
            log.info("run %s: no %s (%s)", run_id, artifact, type(exc).__name__)
            return None
        data = pd.read_csv(path)
    if "latency_ns" not in data or data["latency_ns"].dropna().empty:
        return None
    return data["latency_ns"].dropna().to_numpy(dtype=np.float64) / 1e6


# ---------------------------------------------------------------------------------------------
# scoring


def _values(frame: pd.DataFrame, metric: str) -> np.ndarray:
    if metric not in frame:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[metric], errors="coerce").to_numpy(dtype=np.float64)


def _scale(values: np.ndarray, reference: np.ndarray, crit) -> np.ndarray:
    """Scores in [0, 1] (1 = best); NaN values score 0."""
    if crit.normalize == "levels":
        best, worst = float(crit.best), float(crit.worst)
    else:
        ref = reference[np.isfinite(reference)]
        if ref.size == 0:
            ref = values[np.isfinite(values)]
        if ref.size == 0:
            return np.zeros(len(values))
        lo, hi = float(ref.min()), float(ref.max())
        best, worst = (lo, hi) if crit.direction == "min" else (hi, lo)
    out = np.zeros(len(values))
    ok = np.isfinite(values)
    if best == worst:  # a single candidate, or a tie: as good as the best scores 1
        better = values <= best if crit.direction == "min" else values >= best
        out[ok & better] = 1.0
        return out
    out[ok] = np.clip((values[ok] - worst) / (best - worst), 0.0, 1.0) + 0.0  # + 0.0: no -0.0
    return out


def evaluate(candidates: pd.DataFrame, cfg: DecisionConfig, weights: dict[str, float] | None = None) -> pd.DataFrame:
    """Gates, scores, total and rank for the ``ok`` configurations; returns the ranked frame.

    Adds ``gate.<name>`` (pass|fail; target|acceptable|fail), ``eligible`` (every hard gate
    passed), ``verdict`` (go|close|no-go), ``why`` (the failed gates and missed targets),
    ``score.<metric>`` in [0, 1], ``total_pct`` and ``rank`` (1 = best).
    """
    if not cfg.criteria:
        raise ConfigError("decision.criteria", "no criterion configured")
    frame = candidates.reset_index(drop=True)
    n = len(frame)
    cols: dict[str, Any] = {}  # the new columns, joined once (fast: evaluate runs per robustness draw)
    why: list[list[str]] = [[] for _ in range(n)]

    eligible = np.ones(n, dtype=bool)
    for gate in cfg.hard_gates:
        v = _values(frame, gate.metric)
        verdicts = []
        exempt = np.zeros(n, dtype=bool)
        for param, values in (gate.exempt or {}).items():
            if param in frame:
                exempt |= frame[param].astype(str).isin([str(x) for x in values]).to_numpy()
        for i, x in enumerate(v):
            if exempt[i]:
                verdicts.append("n/a")
            elif not np.isfinite(x):
                verdicts.append("pass" if gate.if_missing == "pass" else "fail")
                if gate.if_missing != "pass":
                    why[i].append(f"{gate.name}: metric missing")
            elif _OPS[gate.op](x, gate.value):
                verdicts.append("pass")
            else:
                verdicts.append("fail")
                why[i].append(f"{gate.name}: got {x:.4g}")
        cols[f"gate.{gate.name}"] = verdicts
        eligible &= np.array([s in ("pass", "n/a") for s in verdicts], dtype=bool)

    tier = np.full(n, 2)  # go until a graded gate says otherwise
    misses: list[list[str]] = [[] for _ in range(n)]
    for gate in cfg.graded_gates:
        v = _values(frame, gate.metric)
        verdicts = []
        for i, x in enumerate(v):
            if not np.isfinite(x):
                verdicts.append("fail")
                tier[i] = 0
                misses[i].append(f"{gate.name}: metric missing")
            elif _OPS[gate.op](x, gate.target):
                verdicts.append("target")
            elif _OPS[gate.op](x, gate.acceptable):
                verdicts.append("acceptable")
                tier[i] = min(tier[i], 1)
                misses[i].append(f"{gate.metric} {x:.4g} misses the target {gate.op} {gate.target:g} (acceptable {gate.op} {gate.acceptable:g})")
            else:
                verdicts.append("fail")
                tier[i] = 0
                misses[i].append(f"{gate.metric} {x:.4g} misses the acceptable level {gate.op} {gate.acceptable:g}")
        cols[f"gate.{gate.name}"] = verdicts
    for i in range(n):
        why[i].extend(misses[i])
    tier = np.where(eligible, tier, 0)
    cols["eligible"] = eligible
    cols["verdict"] = [VERDICTS[2 - t] for t in tier]

    w = {c.metric: float(c.weight) for c in cfg.criteria}
    if weights:
        w.update(weights)
    wsum = sum(w[c.metric] for c in cfg.criteria)
    if wsum <= 0:
        raise ConfigError("decision.criteria", "the weights sum to 0")
    total = np.zeros(n)
    for crit in cfg.criteria:
        v = _values(frame, crit.metric)
        ref = v[eligible] if eligible.any() else v
        s = _scale(v, ref, crit)
        for i in np.flatnonzero(~np.isfinite(v)):
            why[i].append(f"{crit.metric} missing: scored 0")
        cols[f"score.{crit.metric}"] = s
        total += w[crit.metric] * s
    total_pct = 100.0 * total / wsum
    cols["total_pct"] = total_pct
    cols["why"] = ["; ".join(r) for r in why]
    cols["misses"] = ["; ".join(r) for r in misses]

    # order: eligible first, then (prefer_verdict) go > close > no-go, then total, then the names;
    # totals are rounded so that float noise never decides a tie
    t = tier if cfg.prefer_verdict else np.zeros(n, dtype=int)
    labels = frame["label"].astype(str).to_numpy() if n else np.array([], dtype=str)
    run_ids = frame["run_id"].astype(str).to_numpy() if n else np.array([], dtype=str)
    order = sorted(range(n), key=lambda i: (-int(eligible[i]), -int(t[i]), -round(float(total_pct[i]), 9), labels[i], run_ids[i]))
    new = pd.DataFrame(cols, index=frame.index)
    base = frame.drop(columns=[c for c in new.columns if c in frame] + (["rank"] if "rank" in frame else []))
    out = pd.concat([pd.DataFrame({"rank": np.zeros(n, dtype=int)}, index=frame.index), base, new], axis=1)
    out = out.iloc[order].reset_index(drop=True)
    out["rank"] = np.arange(1, n + 1)
    return out


def pareto_front(frame: pd.DataFrame, x: str, y: str) -> np.ndarray:
    """True for eligible configurations no other eligible one beats on both x (lower) and y (higher)."""
    xs, ys = _values(frame, x), _values(frame, y)
    elig = frame["eligible"].to_numpy(dtype=bool) if "eligible" in frame else np.ones(len(frame), bool)
    ok = elig & np.isfinite(xs) & np.isfinite(ys)
    front = np.zeros(len(frame), dtype=bool)
    for i in np.flatnonzero(ok):
        dominated = ok & (xs <= xs[i]) & (ys >= ys[i]) & ((xs < xs[i]) | (ys > ys[i]))
        front[i] = not dominated.any()
    return front


def _winner_of(ranked: pd.DataFrame) -> str | None:
    if ranked.empty or not bool(ranked["eligible"].iloc[0]):
        return None
    return ranked["run_id"].iloc[0]


# ---------------------------------------------------------------------------------------------
# robustness


def weight_sensitivity(candidates: pd.DataFrame, cfg: DecisionConfig, winner: str | None) -> tuple[pd.DataFrame, float | None, float | None]:
    """Each weight moved by -x and +x: the winner and the top-k order each time."""
    k = cfg.robustness.top_k
    base = evaluate(candidates, cfg)
    base_top = base.loc[base["eligible"], "label"].head(k).tolist()
    rows = []
    for crit in cfg.criteria:
        if crit.weight <= 0:
            continue
        for sign in (-1, 1):
            change = sign * cfg.robustness.weight_change
            ranked = evaluate(candidates, cfg, {crit.metric: crit.weight * (1 + change)})
            top = ranked.loc[ranked["eligible"], "label"].head(k).tolist()
            w = _winner_of(ranked)
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


def noise_check(
    candidates: pd.DataFrame, ranked: pd.DataFrame, cfg: DecisionConfig, samples_ms: dict[str, np.ndarray]
) -> tuple[pd.DataFrame, float | None, int]:
    """Bootstrap the noise metric (p95) of the leading configurations from their raw samples.

    Returns a table (interval per configuration and of its difference from the winner), the
    fraction of redraws in which the winner stays the winner, and the number of redraws.
    """
    r = cfg.robustness
    cols = ["rank", "label", "run_id", "n_samples", "p95_ms", "ci_low_ms", "ci_high_ms",
            "diff_vs_winner_ms", "diff_ci_low_ms", "diff_ci_high_ms", "distinguishable"]
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
    win_id = _winner_of(ranked)
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
            if row["run_id"] != win_id and win_id in boot:
                d = b - boot[win_id]
                lo, hi = float(np.quantile(d, alpha)), float(np.quantile(d, 1 - alpha))
                rec.update(
                    diff_vs_winner_ms=float(np.percentile(s, cfg.noise_percentile) - np.percentile(samples_ms[ranked["label"].iloc[0]], cfg.noise_percentile)),
                    diff_ci_low_ms=lo,
                    diff_ci_high_ms=hi,
                    distinguishable=bool(lo > 0 or hi < 0),
                )
        rows.append(rec)
    table = pd.DataFrame(rows, columns=cols)

    stability = None
    n_draws = min(r.noise_draws, draws)
    if boot and n_draws and win_id is not None:
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
            same += _winner_of(evaluate(redraw, cfg)) == win_id
        stability = same / n_draws
    return table, stability, n_draws


# ---------------------------------------------------------------------------------------------
# the decision


def reproduce_command(params: dict[str, Any]) -> str:
    """The command that reruns one configuration as a single job."""
    parts = ["python -m pipeline"]
    for key, override in (
        ("model", "model"),
        ("variant", "variant"),
        ("provider", "provider"),
        ("pooling", "pooling"),
        ("batch_size", "bench.batch_size"),
        ("threads", "provider.threads"),
        ("max_length", "model.max_length"),
    ):
        v = params.get(key)
        if v is not None and str(v) not in ("", "nan", "None"):
            parts.append(f"{override}={v}")
    return " ".join(parts)


def _recommendation(ranked: pd.DataFrame, winner: Winner | None, cfg: DecisionConfig) -> str:
    if ranked.empty:
        return "NO-GO: no configuration of this sweep finished (status=ok); nothing to ship. See the excluded runs."
    if winner is None:
        first = ranked.iloc[0]
        return (
            f"NO-GO: none of the {len(ranked)} configurations passes the hard gates "
            f"({', '.join(g.name for g in cfg.hard_gates)}); nothing to ship. "
            f"Closest by score: {first['label']} ({first['total_pct']:.1f}%), which fails: {first['why']}."
        )
    m = winner.metrics
    facts = []
    for metric, fmt in (("latency.p95_ms", "p95 {:.2f} ms"), ("throughput.sentences_per_s", "{:.0f} sentences/s"), ("quality.stsb_spearman", "STS {:.1f}")):
        if np.isfinite(m.get(metric, np.nan)):
            facts.append(fmt.format(m[metric]))
    head = f"{winner.label} (run {winner.run_id}, score {winner.score_pct:.1f}%: {', '.join(facts)})"
    if winner.verdict == "go":
        text = f"GO: ship {head}. It meets every target."
    elif winner.verdict == "close":
        text = f"CLOSE: {head} is the best configuration and meets every acceptable level, but misses targets: {'; '.join(winner.misses)}. Ship it if the acceptable levels will do; otherwise keep looking."
    else:
        text = f"NO-GO: the best configuration, {head}, passes the hard gates but misses acceptable levels: {'; '.join(winner.misses)}. Do not ship it as is."
    return f"{text} Reproduce: {winner.command}"


def decide(children: pd.DataFrame, cfg: DecisionConfig, samples_ms: dict[str, np.ndarray] | None = None,
           parent_run_id: str = "", sweep: str = "") -> Decision:
    """The decision for a frame of child runs (as :func:`load_children` returns it)."""
    if "label" not in children:
        children = children.assign(label=_labels(children))
    ok = children["status"] == "ok" if len(children) else pd.Series([], dtype=bool)
    candidates = children[ok].reset_index(drop=True)
    excluded = children[~ok].reset_index(drop=True)
    ranked = evaluate(candidates, cfg)
    ranked["pareto"] = pareto_front(ranked, cfg.pareto_x, cfg.pareto_y)
    win_id = _winner_of(ranked)
    winner = None
    if win_id is not None:
        row = ranked.iloc[0]
        metric_names = [*HEADLINE_METRICS, *(c.metric for c in cfg.criteria), *(g.metric for g in cfg.hard_gates), *(g.metric for g in cfg.graded_gates)]
        params = {p: str(row[p]) for p in PARAMS if p in row and row[p] is not None and str(row[p]) != "nan"}
        winner = Winner(
            run_id=win_id,
            label=row["label"],
            params=params,
            metrics={k: float(row[k]) for k in dict.fromkeys(metric_names) if k in row and np.isfinite(row[k])},
            score_pct=float(row["total_pct"]),
            verdict=row["verdict"],
            command=reproduce_command(params),
            misses=row["misses"].split("; ") if row["misses"] else [],
        )
    verdict = winner.verdict if winner else "no-go"
    samples_ms = samples_ms or {}
    weights_table, w_stab, top_stab = weight_sensitivity(candidates, cfg, win_id) if len(candidates) else (pd.DataFrame(), None, None)
    noise_table, n_stab, n_draws = noise_check(candidates, ranked, cfg, samples_ms)
    return Decision(
        parent_run_id=parent_run_id,
        sweep=sweep,
        profile=cfg.name,
        ranking=ranked,
        excluded=excluded,
        winner=winner,
        verdict=verdict,
        recommendation=_recommendation(ranked, winner, cfg),
        robustness=Robustness(weights_table, w_stab, top_stab, noise_table, n_stab, n_draws),
        config=cfg,
        samples_ms=samples_ms,
    )


def decide_sweep(parent_run_id: str, decision_cfg, tracking_uri: str, out_dir: str | Path = "reports", log_to_parent: bool = True) -> Decision:
    """Decide one sweep: read its children from MLflow, rank, write ``out_dir``, log on the parent.

    ``decision_cfg``: the composed ``decision`` group (DictConfig, dict or DecisionConfig).
    """
    from . import report

    cfg = as_decision_config(decision_cfg)
    client = _client(tracking_uri)
    try:
        parent = client.get_run(parent_run_id)
    except Exception as exc:
        raise DecideError(f"no run {parent_run_id!r} in {tracking_uri}: {type(exc).__name__}") from None
    sweep = parent.data.tags.get("sweep.name") or parent.data.tags.get("sweep") or parent.info.run_name or parent_run_id
    children = load_children(client, parent_run_id)
    if children.empty:
        raise DecideError(f"run {parent_run_id} ({sweep}) has no child runs: it is not a sweep parent")

    # the raw samples of the leading configurations (the first pass ranks without them)
    ok = children[children["status"] == "ok"]
    ranked = evaluate(ok, cfg)
    leaders = ranked[ranked["eligible"]].head(cfg.robustness.top_k)
    samples = {}
    for _, row in leaders.iterrows():
        s = load_samples_ms(client, row["run_id"], cfg.samples_artifact)
        if s is not None:
            samples[row["label"]] = s
    decision = decide(children, cfg, samples, parent_run_id=parent_run_id, sweep=sweep)

    out_root = Path(out_dir)
    folder = out_root / parent_run_id
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    decision.files = [p.name for p in report.write(decision, folder)]
    decision.out_dir = folder
    latest = out_root / "latest"
    if latest.exists():
        shutil.rmtree(latest)
    shutil.copytree(folder, latest)
    (out_root / "metrics.json").write_text(json.dumps(decision.headline(), indent=2) + "\n")

    if log_to_parent:
        _log_on_parent(client, decision, folder)
    return decision


def _log_on_parent(client, decision: Decision, folder: Path) -> None:
    import time

    from mlflow.entities import Metric, RunTag

    run_id = decision.parent_run_id
    client.log_artifacts(run_id, str(folder), artifact_path="decision")
    now = int(time.time() * 1000)
    metrics = []
    w = decision.winner
    if w is not None:
        metrics += [Metric(f"best.{k}", float(v), now, 0) for k, v in w.metrics.items()]
        metrics.append(Metric("best.score_pct", w.score_pct, now, 0))
    for key, value in (("decision.winner_stability", decision.robustness.winner_stability),
                       ("decision.noise_stability", decision.robustness.noise_stability)):
        if value is not None:
            metrics.append(Metric(key, float(value), now, 0))
    tags = [
        RunTag("decision.winner", w.label if w else "none"),
        RunTag("decision.winner_run_id", w.run_id if w else ""),
        RunTag("decision.verdict", decision.verdict),
        RunTag("decision.profile", decision.profile),
        RunTag("decision.recommendation", decision.recommendation[:4000]),
    ]
    if w is not None:
        tags.append(RunTag("decision.command", w.command))
    client.log_batch(run_id, metrics=metrics, tags=tags)


# ---------------------------------------------------------------------------------------------
# command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.decide",
        description="Rank the configurations of a sweep, apply the gates, name the one to ship.",
    )
    parser.add_argument("--parent", help="the sweep's parent run id (default: the latest sweep)")
    parser.add_argument("--profile", default="default", help="decision profile: conf/decision/<profile>.yaml")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: the tracking config)")
    parser.add_argument("--out", default="reports", help="output folder (default: reports)")
    parser.add_argument("--no-log", action="store_true", help="do not log the decision on the parent run")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. decision.robustness.bootstrap=2000")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = compose_decision(args.profile, args.overrides)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except Exception as exc:  # Hydra: unknown profile or override
        print(f"config error: {type(exc).__name__}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    uri = args.tracking_uri or cfg.tracking.resolved_uri()
    try:
        parent = args.parent or latest_parent(_client(uri))
        decision = decide_sweep(parent, cfg.decision, uri, out_dir=args.out, log_to_parent=not args.no_log)
    except (DecideError, ConfigError) as exc:
        print(f"decide: {exc}", file=sys.stderr)
        return 1
    print(decision.recommendation)
    print(f"ranked {len(decision.ranking)} configurations, excluded {len(decision.excluded)}; "
          f"winner stays the winner in {_pct(decision.robustness.winner_stability)} of the weight moves, "
          f"{_pct(decision.robustness.noise_stability)} of the p95 redraws")
    print(f"report: {decision.out_dir / 'report.md'}")
    return 0


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.0%}"


if __name__ == "__main__":
    sys.exit(main())
