"""A provider's traffic in parts (``decision.parts``; docs/workloads.md): each part (queries,
passages) is decided on its own runs with its own targets, then the configurations are weighed
across the parts as the profile says.  Also the latency-against-length curve of the ``lengths``
workload, with the lengths where the fastest configuration changes (crossovers).

A configuration is what one ships: model, variant, provider, pooling (its best batch size and
threads in each part are how it is called there)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core.vocab import Status
from pipeline.decision.core import decide
from pipeline.decision.types import Decision, Inputs

SHIPPED = ("model", "variant", "provider", "pooling")
TIER = {"go": 2, "close": 1, "no-go": 0}


def shipped(row) -> str:
    return "/".join(str(row.get(k)) for k in SHIPPED)


@dataclass
class PartsDecision:
    parts: dict[str, Decision]  # part label -> its own decision
    table: pd.DataFrame  # one row per configuration: score and verdict per part, the weighted total
    best: dict[str, str | None]  # part label -> the configuration that wins that part alone
    winner: str | None  # the configuration that wins the weighted mix
    recommendation: str = ""
    weights: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "weights": self.weights,
            "best_per_part": self.best,
            "winner": self.winner,
            "recommendation": self.recommendation,
            "table": json.loads(self.table.to_json(orient="records")),
        }


def only_workload(inputs: Inputs, workload: str) -> Inputs:
    """The inputs restricted to the runs of one workload (runs from before workloads: ``sentences``)."""
    runs = inputs.runs
    col = runs["workload"] if "workload" in runs else pd.Series(["sentences"] * len(runs), index=runs.index)
    return dataclasses.replace(inputs, runs=runs[col.fillna("sentences") == workload].reset_index(drop=True))


def _per_configuration(d: Decision) -> dict[str, dict]:
    """Each shipped configuration's best-ranked row of one part's decision."""
    out: dict[str, dict] = {}
    for _, row in d.ranking.iterrows():
        key = shipped(row)
        if key not in out:
            out[key] = {
                "score": float(row["total_pct"]),
                "verdict": row["verdict"],
                "eligible": bool(row["eligible"]),
                "label": row["label"],
                "contended": str(row.get("contended", "") or ""),
            }
    return out


def decide_parts(inputs: Inputs, cfg) -> PartsDecision:
    """Each part decided on its own runs (its graded gates, else the profile's), then each
    configuration's total is the weighted mean of its part scores; it can win only if it is
    eligible in every part, and its verdict is its worst part's."""
    parts, per = {}, {}
    base = dataclasses.replace(cfg, parts=[], workload="")
    for part in cfg.parts:
        pcfg = dataclasses.replace(base, graded_gates=list(part.graded_gates) or list(cfg.graded_gates))
        parts[part.label] = decide(only_workload(inputs, part.workload), pcfg)
        per[part.label] = _per_configuration(parts[part.label])
    weights = {p.label: float(p.weight) for p in cfg.parts}
    total_w = sum(weights.values())
    rows = []
    for key in sorted(set().union(*[set(v) for v in per.values()]) if per else set()):
        row = {"configuration": key}
        have = all(key in per[p] for p in weights)
        for p in weights:
            got = per[p].get(key, {})
            row[f"score.{p}"] = got.get("score", np.nan)
            row[f"verdict.{p}"] = got.get("verdict", "missing")
        row["eligible"] = have and all(per[p][key]["eligible"] and not per[p][key]["contended"] for p in weights)
        row["total_pct"] = sum(weights[p] * per[p][key]["score"] for p in weights) / total_w if have else np.nan
        row["verdict"] = min((per[p][key]["verdict"] for p in weights), key=TIER.get) if have else "no-go"
        rows.append(row)
    table = pd.DataFrame(rows)
    if len(table):
        table = table.assign(_t=table["verdict"].map(TIER) * table["eligible"], _s=table["total_pct"].fillna(-1))
        table = table.sort_values(["eligible", "_t", "_s", "configuration"], ascending=[False, False, False, True])
        table = table.drop(columns=["_t", "_s"]).reset_index(drop=True)
    winner = table["configuration"].iloc[0] if len(table) and bool(table["eligible"].iloc[0]) else None
    best = {p: (shipped(d.ranking.iloc[0]) if d.winner is not None else None) for p, d in parts.items()}
    out = PartsDecision(parts, table, best, winner, weights=weights)
    out.recommendation = _words(out)
    return out


def _words(d: PartsDecision) -> str:
    shares = ", ".join(f"{p} {w / sum(d.weights.values()):.0%}" for p, w in d.weights.items())
    picks = [f"for {p}: {c or 'none passes the hard gates'}" for p, c in d.best.items()]
    named = {c for c in d.best.values() if c}
    if len(named) > 1:
        text = "The parts want different configurations: " + "; ".join(picks) + "."
    elif named:
        text = f"One configuration serves every part best: {next(iter(named))}."
    else:
        text = "No configuration passes the hard gates in any part."
    if d.winner is not None:
        row = d.table.iloc[0]
        text += f" For the traffic as weighted ({shares}): {d.winner} ({row['total_pct']:.1f}%, {row['verdict']})."
    else:
        text += f" No configuration is eligible in every part ({shares}): nothing serves the whole traffic."
    return text


def length_curve(runs: pd.DataFrame) -> pd.DataFrame:
    """The ``lengths`` workload's ok runs: one row per (configuration, batch size, length) with p50,
    throughput (texts and tokens per second) and the padding share."""
    if "workload" not in runs or "workload.length" not in runs:
        return pd.DataFrame()
    r = runs[(runs["workload"] == "lengths") & (runs["status"] == Status.OK) & runs["workload.length"].notna()].copy()
    if r.empty:
        return pd.DataFrame()
    r["configuration"] = [shipped(row) for row in r.to_dict(orient="records")]
    cols = [c for c in ("latency.p50_ms", "throughput.sentences_per_s", "throughput.tokens_per_s", "bench.padding_share") if c in r]
    return r[["configuration", "batch_size", "workload.length", *cols]].sort_values(["batch_size", "configuration", "workload.length"])


def crossovers(curve: pd.DataFrame, metric: str = "latency.p50_ms") -> list[dict]:
    """Per batch size, the lengths where the configuration with the lowest ``metric`` changes."""
    out = []
    if curve.empty or metric not in curve:
        return out
    for bs, g in curve.groupby("batch_size"):
        prev = None
        for length, at in g.groupby("workload.length"):
            best = at.loc[at[metric].idxmin(), "configuration"]
            if prev is not None and best != prev[1]:
                out.append({"batch_size": bs, "from_length": prev[0], "to_length": length, "before": prev[1], "after": best})
            prev = (length, best)
    return out


def write(inputs: Inputs, cfg, folder: Path) -> list[Path]:
    """``workloads.json`` / ``workloads.md`` (the parts' decision, where the profile has parts) and
    ``length_curve.png`` with its crossovers (where the sweep ran the ``lengths`` workload)."""
    written = []
    curve = length_curve(inputs.runs)
    doc: dict = {}
    lines = ["# Workloads", ""]
    if cfg.parts:
        d = decide_parts(inputs, cfg)
        doc["parts"] = d.to_dict()
        lines += [d.recommendation, "", d.table.to_markdown(index=False), ""]
    if not curve.empty:
        doc["length_curve"] = json.loads(curve.to_json(orient="records"))
        doc["crossovers"] = crossovers(curve)
        lines += ["## Latency against length", "", curve.to_markdown(index=False), ""]
        lines += [
            f"- batch {c['batch_size']}: from {c['before']} to {c['after']} between {c['from_length']:g} and {c['to_length']:g} tokens"
            for c in doc["crossovers"]
        ] or ["- no crossover: one configuration is fastest at every length"]
        written.append(_figure(curve, doc["crossovers"], folder / "length_curve.png"))
    if not doc:
        return written
    (folder / "workloads.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    (folder / "workloads.md").write_text("\n".join(lines) + "\n")
    return [folder / "workloads.json", folder / "workloads.md", *written]


def _figure(curve: pd.DataFrame, cross: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for (conf, bs), g in curve.groupby(["configuration", "batch_size"]):
        axes[0].plot(g["workload.length"], g["latency.p50_ms"], marker="o", label=f"{conf} b{bs}")
        axes[1].plot(g["workload.length"], g["throughput.sentences_per_s"], marker="o", label=f"{conf} b{bs}")
    for c in cross:
        axes[0].axvspan(c["from_length"], c["to_length"], color="#dddddd", alpha=0.5)
    for ax, ylabel in zip(axes, ("p50 latency per call (ms)", "throughput (texts/s)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("tokens per text")
        ax.set_ylabel(ylabel)
    axes[1].legend(fontsize=7)
    axes[0].set_title("latency (grey: the fastest configuration changes)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
