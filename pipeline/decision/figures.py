"""The decision's figures: the Pareto front, latency CDFs, criterion scores, and the differences
between the leaders with their noise intervals (PNG files beside the report)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core.plots import ecdf, palette, pyplot, save
from pipeline.core.vocab import Metric
from pipeline.decision.types import Decision

COLORS = ("#4477aa", "#ee6677", "#228833", "#ccbb44", "#66ccee", "#aa3377", "#bbbbbb")


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _gate_lines(ax, cfg, metric: str, data_max: float, prefix: str) -> None:
    """Vertical lines at a graded gate's target / acceptable level, when they are near the data
    (far-away levels would squash the points: they are named in the legend instead)."""
    for g in cfg.graded_gates:
        if g.metric != metric:
            continue
        levels = [("target", g.target, "--", COLORS[2])]
        if g.acceptable != g.target:
            levels.append(("acceptable", g.acceptable, ":", COLORS[3]))
        for name, value, ls, color in levels:
            if value <= 2 * data_max:
                ax.axvline(value, color=color, ls=ls, lw=1, label=f"{prefix}{name} {g.op} {value:g}")
            else:
                ax.plot([], [], color=color, ls=ls, lw=1, label=f"{prefix}{name} {g.op} {value:g} (off scale)")


def _log_if_wide(ax, values, axis: str = "x") -> bool:
    """A log axis where the positive values span more than a decade (else linear)."""
    v = np.asarray([x for x in values if np.isfinite(x) and x > 0], dtype=float)
    wide = v.size > 1 and v.max() / v.min() > 10
    if wide:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    return wide


def _panels(r: pd.DataFrame) -> list[tuple[str, pd.Index]]:
    """One panel per batch size (a call at batch 8 is not comparable with one at batch 1)."""
    if "batch_size" not in r or r["batch_size"].nunique(dropna=True) < 2:
        return [("", r.index)]
    sizes = sorted(r["batch_size"].dropna().unique(), key=lambda b: float(b) if str(b).replace(".", "", 1).isdigit() else 0.0)
    return [(f"batch {b}", r.index[r["batch_size"] == b]) for b in sizes]


def _pareto_panel(ax, decision: Decision, x: pd.Series, y: pd.Series, idx: pd.Index, title: str) -> None:
    cfg, r = decision.config, decision.ranking
    ok = (x.notna() & y.notna()).loc[idx]
    ok = ok[ok].index
    if not len(ok):
        _empty(ax, f"no configuration has both {cfg.pareto_x} and {cfg.pareto_y}")
        return
    elig = r["eligible"].astype(bool)
    bad, good = ok[~elig.loc[ok]], ok[elig.loc[ok]]
    ax.scatter(x[bad], y[bad], marker="x", color="#999999", label="fails a hard gate")
    ax.scatter(x[good], y[good], color=COLORS[0], s=22, label="candidate")
    front = ok[r["pareto"].astype(bool).loc[ok]]
    if len(front):
        order = np.argsort(x[front].to_numpy())
        ax.step(x[front].to_numpy()[order], y[front].to_numpy()[order], where="post", color=COLORS[1], lw=1.5, label="Pareto front")
        for n, i in enumerate(front[order]):  # labels on the front only, alternating sides to keep them apart
            ax.annotate(
                f"#{int(r.at[i, 'rank'])} {r.at[i, 'label']}",
                (x[i], y[i]),
                textcoords="offset points",
                xytext=(6, 6 if n % 2 == 0 else -10),
                fontsize=6.5,
            )
    if decision.winner is not None and r.index[0] in ok:
        ax.scatter(x.iloc[:1], y.iloc[:1], marker="*", s=260, color=COLORS[1], zorder=5, label="winner")
    _gate_lines(ax, cfg, cfg.pareto_x, float(x[ok].max()), "")
    log = _log_if_wide(ax, x[ok])
    ax.set_xlabel(f"{cfg.pareto_x} (lower is better{', log scale' if log else ''})")
    ax.set_ylabel(f"{cfg.pareto_y} (higher is better)")
    ax.legend(fontsize=6.5, loc="lower right")
    ax.grid(alpha=0.3, which="both")
    if title:
        ax.set_title(title, fontsize=9)


def pareto_figure(decision: Decision, path: Path) -> Path:
    plt = pyplot()
    cfg = decision.config
    r = decision.ranking
    x = pd.to_numeric(r[cfg.pareto_x], errors="coerce") if cfg.pareto_x in r else pd.Series(np.nan, index=r.index)
    y = pd.to_numeric(r[cfg.pareto_y], errors="coerce") if cfg.pareto_y in r else pd.Series(np.nan, index=r.index)
    panels = _panels(r)
    fig, axes = plt.subplots(len(panels), 1, figsize=(8.5, 4.2 * len(panels)), squeeze=False)
    for ax, (title, idx) in zip(axes[:, 0], panels):
        _pareto_panel(ax, decision, x, y, idx, title)
    fig.suptitle(f"sweep {decision.sweep}: Pareto front", fontsize=10)
    return save(fig, path)


def cdf_figure(decision: Decision, path: Path, every: bool = False) -> Path:
    """The latency CDFs of the leading configurations, or of ``every`` configuration that has
    samples (the DVC study's plot)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.8) if every else (7, 4.2))
    if every:
        lines = [(label, s) for label, s in sorted(decision.samples_ms.items()) if s is not None and s.size]
    else:
        leaders = decision.ranking[decision.ranking["eligible"].astype(bool)].head(decision.config.robustness.top_k)
        lines = [(f"#{int(row['rank'])} {row['label']}", decision.samples_ms.get(row["label"])) for _, row in leaders.iterrows()]
        lines = [(label, s) for label, s in lines if s is not None and s.size]
    colours = palette(len(lines)) if every else [COLORS[i % len(COLORS)] for i in range(len(lines))]
    for (label, s), colour in zip(lines, colours):
        x, y = ecdf(s)
        ax.step(x, y, where="post", color=colour, lw=1.4, label=f"{label} (p95 {np.percentile(x, 95):.2f} ms, n={x.size})")
    if not lines:
        _empty(ax, "no latency samples" if every else "no raw latency samples for the leading configurations")
    else:
        ax.axhline(0.95, color="#999999", ls=":", lw=1)
        data_max = max(float(np.max(s)) for _, s in lines)
        _gate_lines(ax, decision.config, Metric.P95_MS, data_max, "p95 ")
        log = _log_if_wide(ax, [v for _, s in lines for v in (np.min(s), np.max(s))])
        ax.set_xlabel(f"latency per call (ms{', log scale' if log else ''})")
        ax.set_ylabel("fraction of calls")
        ax.legend(fontsize=7, loc="lower right")
        ax.grid(alpha=0.3, which="both")
    ax.set_title("Latency per call (CDF), one line per configuration" if every else "latency CDF of the leading configurations")
    return save(fig, path)


def differences_figure(decision: Decision, path: Path) -> Path:
    """The raw values of the leaders (not scores) with their noise intervals, per metric."""
    plt = pyplot()
    cfg = decision.config
    top = decision.ranking[decision.ranking["eligible"].astype(bool)].head(cfg.robustness.top_k)
    metrics = [(Metric.P95_MS, "p95 latency (ms), lower is better"), (Metric.THROUGHPUT, "throughput (sentences/s), higher is better")]
    fig, axes = plt.subplots(1, 2, figsize=(10, 2.2 + 0.7 * max(1, len(top))), layout="constrained")
    between = decision.robustness.between
    noise = decision.robustness.noise.set_index("label") if not decision.robustness.noise.empty else None
    for ax, (metric, title) in zip(axes, metrics):
        drawn = 0
        for i, (_, row) in enumerate(top.iterrows()):
            v = row.get(metric)
            if v is None or not np.isfinite(v):
                continue
            lo = hi = v
            src = "single run"
            b = (
                between[(between["label"] == row["label"]) & (between["metric"] == metric)]
                if between is not None and not between.empty
                else None
            )
            if b is not None and len(b):
                lo, hi, src = float(b["low"].iloc[0]), float(b["high"].iloc[0]), f"{int(b['n'].iloc[0])} runs"
            elif (
                metric == Metric.P95_MS
                and noise is not None
                and row["label"] in noise.index
                and pd.notna(noise.loc[row["label"], "ci_low_ms"])
            ):
                lo, hi, src = float(noise.loc[row["label"], "ci_low_ms"]), float(noise.loc[row["label"], "ci_high_ms"]), "bootstrap"
            y = len(top) - i
            ax.errorbar([v], [y], xerr=[[v - lo], [hi - v]], fmt="o", color=COLORS[i % len(COLORS)], capsize=4)
            ax.annotate(f"#{int(row['rank'])} ({src})", (v, y), textcoords="offset points", xytext=(0, 6), fontsize=7, ha="center")
            drawn += 1
        if drawn == 0:
            _empty(ax, f"no {metric}")
        else:
            ax.set_yticks(range(len(top), 0, -1))
            ax.set_yticklabels([f"#{int(k)}" for k in top["rank"]], fontsize=8)
            ax.margins(x=0.15, y=0.25)
            ax.grid(axis="x", alpha=0.3)
        ax.set_title(title, fontsize=9)
    fig.suptitle("the leaders' raw differences and noise intervals", fontsize=10)
    if len(top):
        fig.supxlabel("\n".join(f"#{int(k)}: {lab}" for k, lab in zip(top["rank"], top["label"])), fontsize=7.5, ha="left", x=0.02)
    fig.savefig(path, dpi=110)  # constrained layout: the labels below are never cut
    plt.close(fig)
    return path


def scores_figure(decision: Decision, path: Path) -> Path:
    plt = pyplot()
    cfg = decision.config
    top = decision.ranking.head(cfg.robustness.top_k)
    fig, ax = plt.subplots(figsize=(7.5, 4.2 + 0.25 * len(top)))
    if top.empty:
        _empty(ax, "no ranked configuration")
    else:
        names = [c.label or c.metric for c in cfg.criteria]
        width = 0.8 / len(top)
        xs = np.arange(len(cfg.criteria))
        for i, (_, row) in enumerate(top.iterrows()):
            vals = [row[f"score.{c.metric}"] for c in cfg.criteria]
            ax.bar(
                xs + i * width - 0.4 + width / 2,
                vals,
                width,
                color=COLORS[i % len(COLORS)],
                label=f"#{int(row['rank'])} {row['label']} ({row['total_pct']:.1f}%)",
            )
        ax.set_xticks(xs)
        ax.set_xticklabels([f"{n}\n(w {c.weight:g})" for n, c in zip(names, cfg.criteria)], fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("score (1 = best)")
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=1, frameon=False)
        ax.grid(axis="y", alpha=0.3)
    ax.set_title(f"criterion scores, profile {cfg.name}")
    return save(fig, path)
