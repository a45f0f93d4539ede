"""The decision's result types.  The report and every consumer import these, nothing else."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import DecisionConfig
from pipeline.core.errors import PipelineError
from pipeline.core.vocab import Metric

VERDICTS = ("go", "close", "no-go")
TIER = {"go": 2, "close": 1, "no-go": 0}


class DecideError(PipelineError, RuntimeError):
    """Nothing to decide: no such parent run, no sweep in the store."""


def num(v) -> float | None:
    """A JSON-safe float (None for missing / NaN)."""
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if not np.isfinite(f) else f


@dataclass
class Inputs:
    """Everything a decision is computed from, whoever read it (MLflow or the local records).

    ``runs``: one row per job run: ``run_id``, ``record_id``, ``run_name``, ``status``
    (ok | skipped | failed | unfinished), ``reason``, ``contended`` (why its benchmark is not
    comparable; empty when it is), the params, every metric by name, and ``label``.
    ``samples_ms``: raw per-call latency of some runs, by label.
    ``rounds``: the interleaved re-timings of the leaders at the sweep's end (one row per
    benchmark: ``record_id``, ``round``, ``contended``, metrics), possibly empty.
    """

    runs: pd.DataFrame
    samples_ms: dict[str, np.ndarray] = field(default_factory=dict)
    rounds: pd.DataFrame = field(default_factory=pd.DataFrame)
    parent_run_id: str = ""
    sweep: str = ""
    complete: bool | None = None  # the sweep's own word (tag sweep.complete), when it said


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
    tied_with: list[str] = field(default_factory=list)  # leaders it cannot be told apart from


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
    # between runs: one row per (leader, metric) from the interleaved re-timings
    between: pd.DataFrame = field(default_factory=pd.DataFrame)


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
    complete: bool | None = None
    caveats: list[str] = field(default_factory=list)  # what the verdict must be read with (see .caveats)

    @property
    def contended(self) -> pd.DataFrame:
        """The ranked configurations whose benchmark was contended, with the reason."""
        r = self.ranking
        if r.empty or "contended" not in r:
            return r.iloc[0:0]
        return r[r["contended"].astype(str) != ""]

    def headline(self) -> dict[str, Any]:
        """The numbers DVC tracks (reports/metrics.json)."""
        w = self.winner
        m = w.metrics if w else {}
        return {
            "verdict": self.verdict,
            "verdict_level": TIER[self.verdict],
            "winner": w.label if w else None,
            "winner_run_id": w.run_id if w else None,
            "score_pct": num(w.score_pct) if w else None,
            "latency_p95_ms": num(m.get(Metric.P95_MS)),
            "throughput_sentences_per_s": num(m.get(Metric.THROUGHPUT)),
            "stsb_spearman": num(m.get(Metric.STSB)),
            "winner_stability": num(self.robustness.winner_stability),
            "noise_stability": num(self.robustness.noise_stability),
            "winner_ties": len(w.tied_with) if w else 0,
            "configurations_ranked": int(len(self.ranking)),
            "configurations_contended": int(len(self.contended)),
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
            "caveats": self.caveats,
            "complete": self.complete,
            "winner": None
            if self.winner is None
            else {
                "run_id": self.winner.run_id,
                "label": self.winner.label,
                "params": self.winner.params,
                "metrics": {k: num(v) for k, v in self.winner.metrics.items()},
                "score_pct": num(self.winner.score_pct),
                "verdict": self.winner.verdict,
                "command": self.winner.command,
                "misses": self.winner.misses,
                "tied_with": self.winner.tied_with,
            },
            "ranking": [
                {
                    "rank": int(r["rank"]),
                    "label": r["label"],
                    "run_id": r["run_id"],
                    "total_pct": num(r["total_pct"]),
                    "eligible": bool(r["eligible"]),
                    "verdict": r["verdict"],
                    "tie_group": int(r["tie_group"]),
                    "contended": r.get("contended", "") or None,
                    "why": r["why"],
                }
                for _, r in self.ranking.iterrows()
            ],
            "excluded": self.excluded[[c for c in ("label", "run_id", "status", "reason") if c in self.excluded]].to_dict(orient="records"),
            "robustness": {
                "weight_change": cfg.robustness.weight_change,
                "winner_stability": num(self.robustness.winner_stability),
                "top_stability": num(self.robustness.top_stability),
                "noise_stability": num(self.robustness.noise_stability),
                "noise_draws": self.robustness.noise_draws,
            },
            "weights": {c.metric: c.weight for c in cfg.criteria},
            "config": asdict(cfg),  # every setting the decision was made with (pipeline.decision.as_decision_config reads it back)
            "headline": self.headline(),
        }
