"""The decision for one sweep, from its :class:`Inputs`: rank, pick, say it in words."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import DecisionConfig
from pipeline.core.vocab import Metric, Status
from pipeline.decision import noise
from pipeline.decision.caveats import caveats as caveats_of
from pipeline.decision.inputs import PARAM_KEYS, PARAMS, SERVING_PARAMS, runs_frame
from pipeline.decision.machines import one_machine
from pipeline.decision.matrix import evaluate, pareto_front, winner_of
from pipeline.decision.types import Decision, Inputs, Robustness, Winner
from pipeline.tracking.names import HEADLINE_METRICS


def reproduce_command(params: dict[str, Any]) -> str:
    """The command that reruns one configuration as a single job."""
    parts = ["python -m pipeline"]

    def given(v) -> bool:
        return v is not None and str(v) not in ("", "nan", "None")

    for column in ("model", "variant", "provider", "pooling", "batch_size", "threads", "max_length"):
        if given(params.get(column)):
            parts.append(f"{PARAM_KEYS[column]}={params[column]}")
    if params.get("scenario") == "load":
        parts.append(f"{PARAM_KEYS['scenario']}=load")
        parts += [f"{PARAM_KEYS[c]}={params[c]}" for c in SERVING_PARAMS if c != "scenario" and given(params.get(c))]
    return " ".join(parts)


def _winner(ranked: pd.DataFrame, cfg: DecisionConfig) -> Winner | None:
    win_id = winner_of(ranked)
    if win_id is None:
        return None
    row = ranked.iloc[0]
    names = [
        *HEADLINE_METRICS,
        *(c.metric for c in cfg.criteria),
        *(g.metric for g in cfg.hard_gates),
        *(g.metric for g in cfg.graded_gates),
    ]
    params = {p: str(row[p]) for p in (*PARAMS, *SERVING_PARAMS) if p in row and row[p] is not None and str(row[p]) != "nan"}
    tied = ranked[(ranked["tie_group"] == row["tie_group"]) & (ranked["run_id"] != win_id)]["label"].tolist()
    return Winner(
        run_id=win_id,
        label=row["label"],
        params=params,
        metrics={k: float(row[k]) for k in dict.fromkeys(names) if k in row and pd.notna(row[k]) and np.isfinite(float(row[k]))},
        score_pct=float(row["total_pct"]),
        verdict=row["verdict"],
        command=reproduce_command(params),
        misses=row["misses"].split("; ") if row["misses"] else [],
        tied_with=tied,
    )


# what the recommendation says of the winner, where it has the figure
_FACTS = (
    (Metric.P95_MS, "p95 {:.2f} ms"),
    (Metric.THROUGHPUT, "{:.0f} sentences/s"),
    (Metric.STSB, "STS {:.1f}"),
    (Metric.LOAD_MAX_QPS, "sustains {:.0f} requests/s within its p95 target"),
    (Metric.LOAD_P95_AT_100, "p95 {:.1f} ms at 100 requests/s"),
)


def recommendation(
    ranked: pd.DataFrame,
    winner: Winner | None,
    cfg: DecisionConfig,
    complete: bool | None = None,
    unfinished: int = 0,
    caveats: list[str] | None = None,
) -> str:
    """The verdict in words a person can act on, with its caveats (:mod:`.caveats`) before the command."""
    incomplete = ""
    if complete is False or unfinished:
        incomplete = (
            f" The sweep is incomplete ({unfinished} run(s) never finished)" if unfinished else " The sweep is incomplete"
        ) + ": a configuration that did not finish was not considered; rerun the sweep to complete it."
    if ranked.empty:
        return "NO-GO: no configuration of this sweep finished (status=ok); nothing to ship. See the excluded runs." + incomplete
    if winner is None:
        first = ranked.iloc[0]
        return (
            f"NO-GO: none of the {len(ranked)} configurations passes the hard gates "
            f"({', '.join(g.name for g in cfg.hard_gates)}); nothing to ship. "
            f"Closest by score: {first['label']} ({first['total_pct']:.1f}%), which fails: {first['why']}." + incomplete
        )
    facts = [fmt.format(winner.metrics[k]) for k, fmt in _FACTS if np.isfinite(winner.metrics.get(k, np.nan))]
    head = f"{winner.label} (run {winner.run_id}, score {winner.score_pct:.1f}%: {', '.join(facts)})"
    row = ranked.iloc[0]
    contended = str(row.get("contended", "") or "")
    if contended:
        text = (
            f"NO-GO: the best configuration, {head}, was measured on a busy machine ({contended}); its latencies "
            f"are not comparable and cannot support a go. Measure it again on a quiet machine."
        )
        others = int((ranked["contended"].astype(str) != "").sum()) if "contended" in ranked else 0
        if others > 1:
            text += f" {others} of the {len(ranked)} ranked configurations were contended."
    elif winner.verdict == "go" and winner.tied_with:
        text = (
            f"GO: ship {head}, or any of {', '.join(winner.tied_with)}: they meet every target and cannot be told apart "
            f"(every difference lies inside the measured noise; the tie is broken by name)."
        )
    elif winner.verdict == "go":
        text = f"GO: ship {head}. It meets every target."
    elif winner.verdict == "close":
        text = f"CLOSE: {head} is the best configuration and meets every acceptable level, but misses targets: {'; '.join(winner.misses)}. Ship it if the acceptable levels will do; otherwise keep looking."
    else:
        text = f"NO-GO: the best configuration, {head}, passes the hard gates but misses acceptable levels: {'; '.join(winner.misses)}. Do not ship it as is."
    if winner.tied_with and not (winner.verdict == "go" and not contended):
        text += f" It cannot be told apart from {', '.join(winner.tied_with)}: every difference lies inside the measured noise."
    if caveats:
        text += " Caveats: " + " ".join(caveats)
    return f"{text}{incomplete} Reproduce: {winner.command}"


def decide(
    inputs: Inputs | pd.DataFrame,
    cfg: DecisionConfig,
    samples_ms: dict[str, np.ndarray] | None = None,
    parent_run_id: str = "",
    sweep: str = "",
) -> Decision:
    """The decision for a sweep's :class:`Inputs` (or a runs frame, with its samples)."""
    if isinstance(inputs, pd.DataFrame):
        frame = inputs if "label" in inputs else runs_frame(inputs.to_dict(orient="records"))
        inputs = Inputs(runs=frame, samples_ms=samples_ms or {}, parent_run_id=parent_run_id, sweep=sweep)
    runs = inputs.runs
    if "label" not in runs:
        runs = runs_frame(runs.to_dict(orient="records"))
    if "contended" not in runs:
        runs = runs.assign(contended="")
    runs, _ = one_machine(runs)  # never two machines' timings in one ranking
    ok = runs["status"] == Status.OK if len(runs) else pd.Series([], dtype=bool)
    candidates = runs[ok].reset_index(drop=True)
    excluded = runs[~ok].reset_index(drop=True)
    candidates, bands, between = noise.between_runs(candidates, inputs.rounds)
    ranked = evaluate(candidates, cfg, bands=bands)
    ranked["pareto"] = pareto_front(ranked, cfg.pareto_x, cfg.pareto_y)
    winner = _winner(ranked, cfg)
    verdict = winner.verdict if winner else "no-go"
    samples = inputs.samples_ms or {}
    if len(candidates):
        weights_table, w_stab, top_stab = noise.weight_sensitivity(candidates, cfg, winner.run_id if winner else None, bands)
    else:
        weights_table, w_stab, top_stab = pd.DataFrame(), None, None
    noise_table, n_stab, n_draws = noise.within_run(candidates, ranked, cfg, samples, bands)
    unfinished = int((excluded["status"] == Status.UNFINISHED).sum()) if len(excluded) else 0
    robustness = Robustness(weights_table, w_stab, top_stab, noise_table, n_stab, n_draws, between)
    notes = caveats_of(ranked, winner, robustness)
    return Decision(
        parent_run_id=inputs.parent_run_id,
        sweep=inputs.sweep,
        profile=cfg.name,
        ranking=ranked,
        excluded=excluded,
        winner=winner,
        verdict=verdict,
        recommendation=recommendation(ranked, winner, cfg, inputs.complete, unfinished, notes),
        robustness=robustness,
        caveats=notes,
        config=cfg,
        samples_ms=samples,
        complete=inputs.complete,
    )
