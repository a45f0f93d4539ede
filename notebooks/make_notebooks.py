"""Write the analysis notebooks (without outputs) from their cell sources below.

    python notebooks/make_notebooks.py     # regenerates notebooks/*.ipynb

Keeping the source here makes the notebooks easy to review; cell ids are fixed, so a
regeneration changes the files only where a cell changed. tests/test_notebooks.py executes
every notebooks/*.ipynb headless on a real smoke sweep.
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

SETUP = """import os
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import mlflow
import numpy as np
import pandas as pd

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
ROOT = Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()
sys.path.insert(0, str(ROOT))  # this checkout's pipeline package, also when it is not installed
from pipeline import decision as decide  # the decision package: load_sweep, decide, compose_decision
from pipeline.core.redaction import redact

pd.set_option("display.width", 160)
TRACKING_URI = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{ROOT / 'mlruns' / 'mlflow.db'}"
mlflow.set_tracking_uri(TRACKING_URI)

# the sweep: PARENT_RUN_ID, else the latest parent run (a sweep's parent is tagged sweep.role=parent)
PARENT_RUN_ID = os.environ.get("PARENT_RUN_ID") or mlflow.search_runs(
    search_all_experiments=True, filter_string="tags.`sweep.role` = 'parent'",
    order_by=["attributes.start_time DESC"], max_results=1,
).run_id.iloc[0]
parent = mlflow.get_run(PARENT_RUN_ID)
SWEEP = parent.data.tags.get("sweep.name") or parent.data.params.get("sweep") or parent.info.run_name
PROFILE = parent.data.tags.get("decision.profile", "default")  # the profile the sweep was decided with
print("tracking store:", redact(TRACKING_URI))  # the URI may carry credentials
print(f"sweep: {SWEEP}, parent run {PARENT_RUN_ID}, started {pd.Timestamp(parent.info.start_time, unit='ms')}, "
      f"decided with profile {PROFILE}")"""

SWEEP_ANALYSIS = [
    new_markdown_cell(
        """# Comparing the configurations of a sweep

This notebook loads one sweep's runs from MLflow and compares them: what ran and what was
skipped, the decision (recomputed exactly as the sweep computed it, and checked against the
decision of record), the latency distributions, and quality against speed.

It reads the tracking store named by `MLFLOW_TRACKING_URI` (default: the project's
`sqlite:///mlruns/mlflow.db`) and the sweep named by `PARENT_RUN_ID` (default: the latest
sweep). Run a sweep first, for example `pipeline +sweep=smoke` (about a minute on
the real all-MiniLM-L6-v2), then run every cell."""
    ),
    new_code_cell(SETUP),
    new_markdown_cell(
        """## The runs

One row per job of the sweep, read by the decision's own reader (`decide.load_sweep`): the
child runs, the jobs an earlier run had already measured (the parent's `jobs.json`), the
leaders' raw latency samples and their re-timings at the sweep's end (`retime.json`). Params
carry their Hydra keys, metrics their own names. `status` is `ok`, `skipped` (the configuration
cannot run on this machine, for example an execution provider this onnxruntime lacks) or
`failed`; `reason` says why. Only `ok` runs are measured, so only they are compared below."""
    ),
    new_code_cell(
        """try:  # the decision of record: the parent run's decision/decision.json
    record = mlflow.artifacts.load_dict(f"runs:/{PARENT_RUN_ID}/decision/decision.json")
except Exception as exc:  # a sweep synced later and never decided has none
    record = None
    print(f"no decision of record on the parent run ({type(exc).__name__})")
# the settings the sweep was decided with (its overrides included), else the profile's
cfg = decide.as_decision_config(record["config"]) if record and record.get("config") else decide.compose_decision(PROFILE).decision
inputs = decide.load_sweep(PARENT_RUN_ID, cfg, TRACKING_URI)  # exactly what the sweep's decision read
runs = inputs.runs
print(runs["status"].value_counts().to_string())
cols = ["label", "latency.p50_ms", "latency.p95_ms", "latency.p99_ms", "throughput.sentences_per_s",
        "quality.stsb_spearman", "parity.min_cosine", "model.size_mb", "memory.peak_rss_mb"]
ok = runs[runs["status"] == "ok"].copy()
ok[[c for c in cols if c in ok]].round(3)"""
    ),
    new_code_cell(
        """not_ok = runs[runs["status"] != "ok"]
not_ok[["label", "status", "reason"]] if len(not_ok) else "every job ran\""""
    ),
    new_markdown_cell(
        """## The decision

The weighted decision matrix (the profile the sweep was decided with, `conf/decision/<PROFILE>.yaml`)
ranks the configurations that pass the hard gates; the verdict is `go` when every target is met,
`close` when the acceptable levels are met, else `no-go`. A re-timed leader's latency is the
median of its sweep value and its re-timings, so it can differ from the run's own metric. This
recomputes the decision from the inputs above, without writing or logging anything, and checks
it against the decision of record (the parent run's `decision/decision.json`)."""
    ),
    new_code_cell(
        """decision = decide.decide(inputs, cfg)
w, rob = decision.winner, decision.robustness
print(decision.recommendation)
print(f"winner: {w.label if w else None}; score {w.score_pct if w else float('nan'):.2f}%; "
      f"noise stability {rob.noise_stability}; weight stability {rob.winner_stability}")
if record:
    mine = (w.label if w else None, round(w.score_pct, 6) if w else None, rob.noise_stability, rob.winner_stability)
    theirs = ((record["winner"] or {}).get("label"), round(record["winner"]["score_pct"], 6) if record["winner"] else None,
              record["robustness"]["noise_stability"], record["robustness"]["winner_stability"])
    print("same winner, score and robustness as the decision of record" if mine == theirs
          else f"DIFFERS from the decision of record: {mine} here, {theirs} there")
table = decision.ranking[["rank", "label", "verdict", "total_pct", "latency.p95_ms", "throughput.sentences_per_s",
                          "quality.stsb_spearman", "why"]]
table.round(3)"""
    ),
    new_markdown_cell(
        """How firm is the choice? The winner should stay the winner when a weight moves by
±20%, and when the p95 values are redrawn from the raw samples (bootstrap). A low share
means the leading configurations are too close to call on this machine and this sample."""
    ),
    new_code_cell(
        """print(f"winner stays the winner in {rob.winner_stability:.0%} of the weight moves" if rob.winner_stability is not None else "no weight check")
print(f"winner stays the winner in {rob.noise_stability:.0%} of {rob.noise_draws} p95 redraws" if rob.noise_stability is not None else "no noise check (fewer than two configurations with samples)")
rob.noise.round(3) if len(rob.noise) else "no bootstrap table\""""
    ),
    new_markdown_cell(
        """## Latency distributions

Each job keeps its raw per-call samples (`latency_samples_ns.csv`, one timed call of the
whole embed path at the job's batch size). Percentiles hide the shape: the empirical CDFs
show the spread and the tail, against the p95 target and acceptable level of the decision
profile (dashed lines). The five best-ranked configurations are drawn in colour, the others in
grey. A curve that rises steeply is a stable configuration; a long flat tail on the right means
occasional slow calls."""
    ),
    new_code_cell(
        """samples = {}
for _, row in ok.iterrows():
    path = mlflow.artifacts.download_artifacts(run_id=row["run_id"], artifact_path=cfg.samples_artifact)
    samples[row["label"]] = pd.read_csv(path)["latency_ns"].to_numpy() / 1e6  # one timed call a row

leaders = list(decision.ranking["label"].head(5))
colours = dict(zip(leaders, ["#4477aa", "#ee6677", "#228833", "#ccbb44", "#aa3377"]))
fig, ax = plt.subplots(figsize=(10, 4.5))
for label, ms in sorted(samples.items(), key=lambda kv: kv[0] in colours):  # the leaders on top
    ms = np.sort(ms)
    lead = label in colours
    ax.step(ms, np.arange(1, len(ms) + 1) / len(ms), where="post", color=colours.get(label, "#bbbbbb"),
            lw=1.8 if lead else 0.8, label=f"#{leaders.index(label) + 1} {label}" if lead else None)
for gate in cfg.graded_gates:
    if gate.metric == "latency.p95_ms":
        ax.axvline(gate.target, color="green", ls="--", lw=1, label=f"p95 target {gate.target:g} ms")
        if gate.acceptable != gate.target:
            ax.axvline(gate.acceptable, color="orange", ls="--", lw=1, label=f"p95 acceptable {gate.acceptable:g} ms")
ax.axhline(0.95, color="grey", ls=":", lw=1)
ax.set_xscale("log")
ax.set_xlabel("latency per call (ms, log scale)")
ax.set_ylabel("fraction of calls")
if len(samples) > len(leaders):
    ax.plot([], [], color="#bbbbbb", lw=0.8, label=f"{len(samples) - len(leaders)} others")
ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
fig.tight_layout()
plt.show()

# the same samples as numbers: how wide each distribution is, and how many calls were timed
spread = pd.DataFrame({
    label: {"calls": len(ms), "min": ms.min(), "p50": np.percentile(ms, 50), "p95": np.percentile(ms, 95),
            "p99": np.percentile(ms, 99), "max": ms.max(), "p99/p50": np.percentile(ms, 99) / np.percentile(ms, 50)}
    for label, ms in samples.items()
}).T
spread.round(3)"""
    ),
    new_markdown_cell(
        """Per call is not per sentence: a call at batch size 8 embeds eight sentences. The
throughput column (sentences per second) is the fair comparison across batch sizes; the
per-sentence latency below divides the median call by the batch size."""
    ),
    new_code_cell(
        """per_sentence = ok.assign(batch=pd.to_numeric(ok["batch_size"]))
per_sentence["p50 ms per sentence"] = per_sentence["latency.p50_ms"] / per_sentence["batch"]
per_sentence[["label", "batch", "latency.p50_ms", "p50 ms per sentence", "throughput.sentences_per_s"]].round(3)"""
    ),
    new_markdown_cell(
        """## Quality against speed

Each point is a configuration: p95 latency per call (log scale) against STS Benchmark Spearman
(x100), as the decision ranked it. The upper left is best (fast and good). The configurations on
the Pareto front (no other configuration is both faster and better) are ringed and labelled: every
choice worth making lies on it, and the decision matrix weighs the trade-offs along it."""
    ),
    new_code_cell(
        """ranked = decision.ranking
fig, ax = plt.subplots(figsize=(8, 4.5))
if len(ranked) and "quality.stsb_spearman" in ranked:
    front = ranked["pareto"].astype(bool)
    ax.scatter(ranked["latency.p95_ms"], ranked["quality.stsb_spearman"], color="#4477aa", s=18)
    ax.scatter(ranked["latency.p95_ms"][front], ranked["quality.stsb_spearman"][front], s=140,
               facecolors="none", edgecolors="#ee6677", label="Pareto front")
    for _, row in ranked[front].iterrows():
        ax.annotate(f"#{row['rank']} {row['label']}", (row["latency.p95_ms"], row["quality.stsb_spearman"]), fontsize=7,
                    textcoords="offset points", xytext=(5, 4))
    ax.set_xscale("log")
    ax.legend(fontsize=8, loc="lower right")
else:
    ax.text(0.5, 0.5, "no configuration with a quality score", ha="center", transform=ax.transAxes)
ax.set_xlabel("p95 latency per call (ms, log scale)")
ax.set_ylabel("STS Benchmark Spearman x100")
fig.tight_layout()
plt.show()"""
    ),
    new_markdown_cell(
        """## Another profile, the same runs

The profile is configuration: `latency_first` moves the weight to tail latency and throughput
(or, for a sweep decided with it, `default`). Deciding the same inputs again shows whether the
choice depends on the weights (`python -m pipeline.decide --profile latency_first` writes it as a
what-if report, beside the sweep's own decision)."""
    ),
    new_code_cell(
        """OTHER = "latency_first" if PROFILE != "latency_first" else "default"
other = decide.decide(inputs, decide.compose_decision(OTHER).decision)
pd.DataFrame({
    profile: {"winner": d.winner.label if d.winner else None, "verdict": d.verdict,
              "score %": round(d.winner.score_pct, 1) if d.winner else None}
    for profile, d in ((PROFILE, decision), (OTHER, other))
}).T"""
    ),
]


def notebook(cells: list) -> nbformat.NotebookNode:
    for i, cell in enumerate(cells):
        cell.id = f"cell-{i:02d}"  # stable ids: a regeneration changes only the cells that changed
    return new_notebook(
        cells=cells,
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}, "language_info": {"name": "python"}},
    )


NOTEBOOKS = {"sweep_analysis.ipynb": SWEEP_ANALYSIS}


def main() -> None:
    for name, cells in NOTEBOOKS.items():
        nb = notebook(cells)
        nbformat.validate(nb)
        nbformat.write(nb, HERE / name)


if __name__ == "__main__":
    main()
