"""The report's first page: the verdict with its caveats, the top five in raw units with their
gates, and why the others lost.  The 0-1 score table stays in the appendix (:mod:`.report`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.core.vocab import Metric
from pipeline.decision.types import Decision

TOP = 5
# the raw columns of the first page: (metric, header, format)
RAW = (
    (Metric.P95_MS, "p95 ms", "{:.2f}"),
    (Metric.P50_MS, "p50 ms", "{:.2f}"),
    (Metric.THROUGHPUT, "sentences/s", "{:.0f}"),
    (Metric.STSB, "STS x100", "{:.1f}"),
    (Metric.SEPARATION, "separation", "{:.2f}"),
    (Metric.MODEL_SIZE_MB, "size MB", "{:.0f}"),
)
GOOD = {"pass", "target"}


def verdict_line(decision: Decision) -> str:
    """The recommendation up to its caveats, its verdict word in bold (said once)."""
    text = decision.recommendation.split(" Reproduce: ")[0].split(" Caveats: ")[0]
    word, sep, rest = text.partition(": ")
    return f"**{word}**: {rest}" if sep and word in ("GO", "CLOSE", "NO-GO") else text


def _cell(v, fmt: str) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return "-"
    return fmt.format(f) if np.isfinite(f) else "-"


def gate_summary(row: pd.Series, decision: Decision) -> str:
    """The gates a configuration did not clear at their target, in a few words ("all met" else).
    A gate whose metric the run does not have (a load gate on a latency run) is left out."""
    cfg, out, not_judged = decision.config, [], []
    for g in cfg.hard_gates:
        if row.get(f"gate.{g.name}") not in GOOD:
            out.append(f"{g.name}: {row.get(f'gate.{g.name}')}")
    for g in cfg.graded_gates:
        level = row.get(f"gate.{g.name}")
        if level in GOOD or level in (None, "skip", "n/a") or pd.isna(pd.to_numeric(row.get(g.metric), errors="coerce")):
            continue
        if level == "n/c":
            not_judged.append(g.metric)
        else:
            out.append(f"{g.name}: {level}")
    if not_judged:
        out.append(f"not judged (busy machine): {', '.join(not_judged)}")
    return "; ".join(out) if out else "all met"


def top_table(decision: Decision, top: int = TOP) -> str:
    r = decision.ranking.head(top)
    t = pd.DataFrame({"#": r["rank"], "configuration": r["label"], "verdict": r["verdict"]})
    for metric, header, fmt in RAW:
        t[header] = [_cell(v, fmt) for v in r[metric]] if metric in r else "-"
    t["score"] = [_cell(v, "{:.1f}%") for v in r["total_pct"]]
    t["gates not met at target"] = [gate_summary(row, decision) for _, row in r.iterrows()]
    t["measured"] = ["busy machine" if str(c or "") else "quiet" for c in r.get("contended", pd.Series([""] * len(r)))]
    return t.to_markdown(index=False, disable_numparse=True)


def _names(rows: pd.DataFrame, n: int = 3) -> str:
    names = list(rows["label"])
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def why_others_lost(decision: Decision, top: int = TOP) -> list[str]:
    """One line per reason the configurations below the top ``top`` lost."""
    rest = decision.ranking.iloc[top:]
    if rest.empty:
        return []
    busy = rest["contended"].fillna("").astype(str) != "" if "contended" in rest else pd.Series(False, index=rest.index)
    failed = ~rest["eligible"].astype(bool)
    lines = []
    if failed.any():
        lines.append(
            f"- {int(failed.sum())} fail a hard gate and cannot win, whatever their score: {_names(rest[failed])} "
            f"(first: {rest[failed]['why'].iloc[0]})."
        )
    if (busy & ~failed).any():
        lines.append(
            f"- {int((busy & ~failed).sum())} were measured on a busy machine: not comparable, ranked after the quiet "
            f"ones: {_names(rest[busy & ~failed])}."
        )
    lower = rest[~failed & ~busy]
    if len(lower):
        by_verdict = lower.groupby("verdict", sort=False).size()
        parts = [f"{n} {v}" for v, n in by_verdict.items()]
        lines.append(
            f"- {len(lower)} pass the hard gates but rank lower ({', '.join(parts)}); the best of them, "
            f"{lower['label'].iloc[0]}, scores {float(lower['total_pct'].iloc[0]):.1f}%."
        )
    order = (
        "Configurations that pass the hard gates rank first, then those measured on a quiet machine, "
        + ("then go before close before no-go, then by score: " if decision.config.prefer_verdict else "then by score: ")
        + "a high score does not lift a configuration above one that clears more gates."
    )
    return [*lines, "", order]


def first_page(decision: Decision) -> list[str]:
    """The report's first page, as markdown lines."""
    lines = [f"# Decision: sweep `{decision.sweep}`", "", verdict_line(decision), ""]
    if decision.caveats:
        lines += ["**Read it with:**", "", *(f"- {c}" for c in decision.caveats), ""]
    if decision.winner is not None:
        lines += ["Reproduce the winner as a single job: `" + decision.winner.command + "`", ""]
    if not decision.ranking.empty:
        lines += [f"## The top {min(TOP, len(decision.ranking))} of {len(decision.ranking)}", "", top_table(decision), ""]
    others = why_others_lost(decision)
    if others:
        lines += ["## Why the others lost", "", *others, ""]
    lines += [
        f"Parent run `{decision.parent_run_id}`, decision profile `{decision.profile}`; "
        f"{len(decision.excluded)} job(s) not ranked (skipped, failed or unfinished: see the appendix). "
        "The appendix has the full 0-1 score table, the robustness checks, the figures and the method.",
        "",
    ]
    return lines
