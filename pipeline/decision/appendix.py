"""The report's tables and appendix: the ranking (``ranking.csv``, ``ranking.md``), the winner against
every gate, the conditions of the measurements, the noise between and within runs, moved weights,
the figures and the method."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.core.vocab import Metric
from pipeline.decision.types import Decision


def present(frame: pd.DataFrame, cols: list[str]) -> list[str]:
    return [c for c in cols if c in frame]


# ---------------------------------------------------------------------------------------------
# tables


def ranking_table(decision: Decision) -> pd.DataFrame:
    """The full ranking: scores, total, gates, reasons, params, the metrics that were judged."""
    cfg = decision.config
    r = decision.ranking
    metrics = list(
        dict.fromkeys([*(c.metric for c in cfg.criteria), *(g.metric for g in cfg.hard_gates), *(g.metric for g in cfg.graded_gates)])
    )
    cols = [
        "rank",
        "label",
        "run_id",
        "verdict",
        "eligible",
        "contended",
        "tie_group",
        "tied",
        "total_pct",
        *(f"score.{c.metric}" for c in cfg.criteria),
        *(f"gate.{g.name}" for g in cfg.hard_gates),
        *(f"gate.{g.name}" for g in cfg.graded_gates),
        "why",
        "pareto",
        "model",
        "variant",
        "provider",
        "precision",
        "provider.node_share",
        "pooling",
        "batch_size",
        "threads",
        "max_length",
        *metrics,
    ]
    out = r[present(r, cols)].copy()
    for m in metrics:  # a metric no run logged still gets its (empty) column
        if m not in out:
            out[m] = np.nan
    return out


def ranking_markdown(decision: Decision) -> str:
    cfg = decision.config
    r = decision.ranking
    if r.empty:
        return "No configuration finished with status ok: nothing is ranked.\n"
    t = pd.DataFrame({"#": r["rank"], "configuration": r["label"], "total": r["total_pct"].map(lambda v: f"{v:.1f}%")})
    for c in cfg.criteria:
        t[f"{c.label or c.metric} (w {c.weight:g})"] = r[f"score.{c.metric}"].map(lambda v: f"{v:.2f}")
    t["verdict"] = r["verdict"]
    # what really ran: the precision and the share of the graph's nodes on the named provider
    # (below 1 never reaches the ranking as ok: it is a failed run; older runs may lack it)
    if "precision" in r:
        t["precision"] = r["precision"].map(lambda v: "-" if v is None or (isinstance(v, float) and not np.isfinite(v)) else str(v))
    t["node share"] = r["provider.node_share"].map(lambda v: _fmt(v, 3)) if "provider.node_share" in r else "-"
    if "tied" in r and r["tied"].any():
        t["tie"] = [f"={int(g)}" if tied else "" for g, tied in zip(r["tie_group"], r["tied"])]
    for g in [*cfg.hard_gates, *cfg.graded_gates]:
        t[g.name] = r[f"gate.{g.name}"].map(_gate_mark)
    t["why"] = r["why"].replace("", "-")
    return t.to_markdown(index=False) + "\n"


def _gate_mark(v: str) -> str:
    return {"pass": "pass", "target": "target", "acceptable": "acceptable", "fail": "**FAIL**"}.get(v, v)


def _fmt(v, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "-"
    if isinstance(v, (float, np.floating)):
        return f"{v:.{digits}g}"
    return str(v)


def _appendix(decision: Decision) -> list[str]:
    return (
        ["---", "", "# Appendix", "", "## The winner against every gate", ""]
        if decision.winner is not None
        else ["---", "", "# Appendix", ""]
    )


def _winner_table(decision: Decision) -> list[str]:
    cfg, w, lines = decision.config, decision.winner, []
    if w is not None:
        lines += ["| metric | winner | gate | level |", "| --- | --- | --- | --- |"]
        row = decision.ranking.iloc[0]
        gates = {g.metric: g for g in cfg.graded_gates}
        hard = {g.metric: g for g in cfg.hard_gates}
        for m, v in w.metrics.items():
            if m in gates:
                g = gates[m]
                rule = f"{g.op} {g.target:g}" + (f" (acceptable {g.op} {g.acceptable:g})" if g.acceptable != g.target else "")
                level = row[f"gate.{g.name}"]
            elif m in hard:
                rule, level = f"{hard[m].op} {hard[m].value:g} (hard)", row[f"gate.{hard[m].name}"]
            else:
                rule, level = "", ""
            lines.append(f"| {m} | {_fmt(v)} | {rule} | {level} |")
        lines.append("")
    return lines


def _ranking(decision: Decision) -> list[str]:
    cfg = decision.config
    lines = [
        "Verdicts: **go** when every target is met, **close** when every acceptable level is met, **no-go** otherwise; "
        "a configuration that fails a hard gate (or lacks its metric) cannot win.",
        "",
        "## The full ranking (scores 0-1)",
        "",
        "Scores per criterion lie in [0, 1] (1 = best); the total is their weighted mean. "
        + (
            "Configurations passing the hard gates come first, then go before close before no-go, then by total."
            if cfg.prefer_verdict
            else "Configurations passing the hard gates come first, then by total."
        ),
        "",
        ranking_markdown(decision),
        "## Not ranked",
        "",
    ]
    if decision.excluded.empty:
        lines += ["Every child run finished with status ok.", ""]
    else:
        ex = decision.excluded[present(decision.excluded, ["label", "status", "reason", "run_id"])]
        lines += [ex.to_markdown(index=False), ""]
    return lines


def _conditions(decision: Decision) -> list[str]:
    lines = ["## Measurement conditions", ""]
    contended = decision.contended
    if contended.empty:
        lines += ["Every ranked configuration was measured on a quiet machine (no `bench.contended` reason).", ""]
    else:
        lines += [
            f"{len(contended)} configuration(s) were measured while other processes used the machine, even after "
            "the benchmark's retries. Their latencies and throughput are not comparable: they are ranked after every "
            "quiet one, not judged on those metrics, and never a go. Measure them again on a quiet machine.",
            "",
        ]
        lines += [pd.DataFrame({"configuration": contended["label"], "why": contended["contended"]}).to_markdown(index=False), ""]
    return lines


def _between_runs(decision: Decision) -> list[str]:
    lines = ["## Robustness", "", "### Noise between runs (the leaders re-timed in alternation)", ""]
    between = decision.robustness.between
    if between is None or between.empty:
        lines += [
            "The leaders were not re-timed (fewer than two, `decision.retime.rounds=0`, or a sweep without the "
            "re-timing): ties rest on each criterion's `tie` tolerance alone.",
            "",
        ]
    else:
        t = between[between["metric"].isin([Metric.P95_MS, Metric.THROUGHPUT])]
        lines += [
            "Each value is the median of the sweep's run and the quiet re-timing rounds; the range is the noise band "
            "a difference must clear to count.",
            "",
            pd.DataFrame(
                {
                    "configuration": t["label"],
                    "metric": t["metric"],
                    "runs": t["n"],
                    "sweep": t["sweep"].map(_fmt),
                    "median": t["median"].map(_fmt),
                    "range": [f"[{_fmt(a)}, {_fmt(b)}]" for a, b in zip(t["low"], t["high"])],
                    "rounds": t["rounds"],
                }
            ).to_markdown(index=False),
            "",
        ]
    was = between[between["was_contended"].fillna("").astype(str) != ""] if between is not None and "was_contended" in between else None
    if was is not None and not was.empty:
        lines += [
            "Measured on a busy machine in the sweep, then quiet when re-timed at its end (ranked with the quiet rounds "
            "alone; a configuration still contended in every round stays contended):",
            "",
            *[f"- {lab}: was contended ({why})" for lab, why in dict(zip(was["label"], was["was_contended"])).items()],
            "",
        ]
    ties = decision.winner.tied_with if decision.winner else []
    if ties:
        lines += [
            f"**Tie:** the winner cannot be told apart from {', '.join(ties)}: every difference between them lies "
            "inside the measured noise.",
            "",
        ]
    return lines


def _weights(decision: Decision) -> list[str]:
    cfg, rob = decision.config, decision.robustness
    lines = [f"### Weights moved by ±{cfg.robustness.weight_change:.0%}", ""]
    if rob.winner_stability is None:
        lines += ["Nothing to move: no ranked configuration.", ""]
    else:
        n = len(rob.weights)
        lines += [
            f"The winner stays the winner in {rob.winner_stability:.0%} of the {n} weight moves; "
            f"the top {cfg.robustness.top_k} keep their order in {rob.top_stability:.0%}.",
            "",
            rob.weights[["criterion", "change", "winner", "same_winner", "top"]].to_markdown(index=False),
            "",
        ]
    return lines


def _within_run(decision: Decision) -> list[str]:
    cfg, rob = decision.config, decision.robustness
    lines = [
        f"### Noise within one run (bootstrap of p{cfg.noise_percentile:g} from the raw samples)",
        "",
        "A lower bound: it resamples the calls of one run and cannot see a slow spell that lasted the whole run.",
        "",
    ]
    if rob.noise.empty or rob.noise["n_samples"].sum() == 0:
        lines += ["No raw latency samples for the leading configurations: the noise was not estimated.", ""]
    else:
        conf = f"{cfg.robustness.confidence:.0%}"
        lines += [_noise_sentence(decision), ""]
        t = rob.noise.copy()
        t = pd.DataFrame(
            {
                "#": t["rank"],
                "configuration": t["label"],
                "samples": t["n_samples"],
                f"p{cfg.noise_percentile:g} ms": t["p95_ms"].map(_fmt),
                f"{conf} interval": [f"[{_fmt(a)}, {_fmt(b)}]" for a, b in zip(t["ci_low_ms"], t["ci_high_ms"])],
                "vs winner ms": t["diff_vs_winner_ms"].map(_fmt),
                f"{conf} interval of the difference": [
                    f"[{_fmt(a)}, {_fmt(b)}]" if pd.notna(a) else "-" for a, b in zip(t["diff_ci_low_ms"], t["diff_ci_high_ms"])
                ],
                "larger than noise": t["distinguishable"].map(lambda v: "-" if pd.isna(v) else ("yes" if v else "no")),
            }
        )
        lines += [t.to_markdown(index=False), ""]
        if rob.noise_stability is not None:
            lines += [
                f"Redrawing the p{cfg.noise_percentile:g} of these configurations from their samples "
                f"{rob.noise_draws} times, the winner stays the winner in {rob.noise_stability:.0%} of the redraws.",
                "",
            ]
    return lines


def _figures(decision: Decision) -> list[str]:
    cfg = decision.config
    return [
        "## Figures",
        "",
        f"![Pareto front]({'pareto.png'})",
        "",
        f"Pareto front: {cfg.pareto_x} (lower is better) against {cfg.pareto_y} (higher is better); grey crosses fail a hard gate.",
        "",
        "![Latency CDFs](latency_cdf.png)",
        "",
        "Per-call latency of the leading configurations, from the raw samples.",
        "",
        "![Scores](scores.png)",
        "",
        "Criterion scores of the leading configurations.",
        "",
        "![Differences](differences.png)",
        "",
        "Raw p95 latency and throughput of the leading configurations with their noise intervals "
        "(re-timing range, else the bootstrap interval): overlapping intervals are ties.",
        "",
    ]


def _method(decision: Decision) -> list[str]:
    cfg = decision.config
    lines = ["## How the score is computed", "", "| criterion | direction | weight | normalization |", "| --- | --- | --- | --- |"]
    wsum = sum(c.weight for c in cfg.criteria) or 1.0
    for c in cfg.criteria:
        if c.normalize == "levels":
            norm = f"fixed {'log ' if c.scale == 'log' else ''}scale: 1 at {c.best:g}, 0 at {c.worst:g}"
            if c.tie:
                norm += f"; within {c.tie:.0%} (or the measured noise) is a tie"
        else:
            norm = "min-max over the candidates passing the hard gates (1 = best, 0 = worst)"
        lines.append(
            f"| {c.label or c.metric} (`{c.metric}`) | {'lower' if c.direction == 'min' else 'higher'} is better | "
            f"{c.weight:g} ({c.weight / wsum:.0%}) | {norm} |"
        )
    lines += ["", "Hard gates: " + (", ".join(f"`{g.name}`" for g in cfg.hard_gates) or "none") + ".", ""]
    lines += ["| graded gate | target (go) | acceptable (close) |", "| --- | --- | --- |"]
    for g in cfg.graded_gates:
        lines.append(f"| `{g.metric}` | {g.op} {g.target:g} | {g.op} {g.acceptable:g} |")
    lines += [
        "",
        "A missing metric fails the gate that needs it and scores 0 on its criterion. "
        "Among configurations that miss graded gates, fewer missed acceptable levels, then fewer missed targets, "
        "then smaller misses rank higher. Values inside the noise of a better one share its score; configurations "
        "whose totals are then equal are a tie (same `tie_group`), ordered by their unshared totals and names.",
        "",
    ]
    return lines


def _noise_sentence(decision: Decision) -> str:
    noise = decision.robustness.noise
    others = noise[noise["distinguishable"].notna()] if "distinguishable" in noise else noise.iloc[0:0]
    if others.empty:
        return "Only one leading configuration has samples: nothing to compare."
    parts = []
    for _, r in others.iterrows():
        verdict = "larger than" if r["distinguishable"] else "within"
        parts.append(
            f"#{int(r['rank'])} {r['label']} is {r['diff_vs_winner_ms']:+.3g} ms "
            f"([{r['diff_ci_low_ms']:.3g}, {r['diff_ci_high_ms']:.3g}]), {verdict} the noise"
        )
    return "p95 difference from the winner: " + "; ".join(parts) + "."


SECTIONS = (_appendix, _winner_table, _ranking, _conditions, _between_runs, _weights, _within_run, _figures, _method)
