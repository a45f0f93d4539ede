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

SETUP = '''import os
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import mlflow
import numpy as np
import pandas as pd

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
ROOT = Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()
sys.path.insert(0, str(ROOT))  # this checkout's pipeline package, also when it is not installed
from pipeline import decide
from pipeline.redaction import redact

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
      f"decided with profile {PROFILE}")'''

SWEEP_ANALYSIS = [
    new_markdown_cell(
        """# Comparing the configurations of a sweep

This notebook loads one sweep's runs from MLflow into pandas with MLflow's own API
(`mlflow.search_runs`, `mlflow.artifacts`) and compares them: what ran and what was skipped,
the latency distributions, quality against speed, and the decision table.

It reads the tracking store named by `MLFLOW_TRACKING_URI` (default: the project's
`sqlite:///mlruns/mlflow.db`) and the sweep named by `PARENT_RUN_ID` (default: the latest
sweep). Run a sweep first, for example `pipeline +sweep=smoke` (about a minute on
the real all-MiniLM-L6-v2), then run every cell."""
    ),
    new_code_cell(SETUP),
    new_markdown_cell(
        """## The runs

One row per job of the sweep: its child runs (`tags.mlflow.parentRunId`), plus the jobs an
earlier run had already measured, which the parent's `jobs.json` lists. Params carry their Hydra
keys (`params.bench.batch_size`, `params.provider.threads`), metrics and tags their own names.
`tags.status` is `ok`, `skipped` (the configuration cannot run on this machine, for example an
execution provider this onnxruntime lacks) or `failed`; `tags.reason` says why. Only `ok` runs are
measured, so only they are compared below."""
    ),
    new_code_cell(
        """found = mlflow.search_runs(experiment_ids=[parent.info.experiment_id],
                           filter_string=f"tags.`mlflow.parentRunId` = '{PARENT_RUN_ID}'")
jobs = mlflow.artifacts.load_dict(f"runs:/{PARENT_RUN_ID}/jobs.json")["jobs"]
elsewhere = sorted({j["run_id"] for j in jobs if j.get("run_id")} - set(found.run_id))
if elsewhere:  # reused from an earlier run of the sweep
    ids = ", ".join(f"'{r}'" for r in elsewhere)
    found = pd.concat([found, mlflow.search_runs(search_all_experiments=True, filter_string=f"attributes.run_id IN ({ids})")],
                      ignore_index=True)
print(found["tags.status"].value_counts().to_string())
runs = decide.from_search_runs(found)  # the same rows, labelled, as the decision reads them
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
        """## Latency distributions

Each job keeps its raw per-call samples (`latency_samples_ns.csv`, one timed call of the
whole embed path at the job's batch size). Percentiles hide the shape: the empirical CDFs
show the spread and the tail of every configuration that ran, against the p95 target and
acceptable level of the decision profile (dashed lines). A curve that rises steeply is a
stable configuration; a long flat tail on the right means occasional slow calls."""
    ),
    new_code_cell(
        """cfg = decide.compose_decision(PROFILE).decision
samples = {}
for _, row in ok.iterrows():
    path = mlflow.artifacts.download_artifacts(run_id=row["run_id"], artifact_path=cfg.samples_artifact)
    samples[row["label"]] = pd.read_csv(path)["latency_ns"].to_numpy() / 1e6  # one timed call a row

fig, ax = plt.subplots(figsize=(8, 4))
for label, ms in samples.items():
    ms = np.sort(ms)
    ax.step(ms, np.arange(1, len(ms) + 1) / len(ms), where="post", label=label)
for gate in cfg.graded_gates:
    if gate.metric == "latency.p95_ms":
        ax.axvline(gate.target, color="green", ls="--", lw=1, label=f"p95 target {gate.target:g} ms")
        if gate.acceptable != gate.target:
            ax.axvline(gate.acceptable, color="orange", ls="--", lw=1, label=f"p95 acceptable {gate.acceptable:g} ms")
ax.axhline(0.95, color="grey", ls=":", lw=1)
ax.set_xscale("log")
ax.set_xlabel("latency per call (ms, log scale)")
ax.set_ylabel("fraction of calls")
ax.legend(fontsize=7, loc="lower right")
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

Each point is a configuration: p95 latency per call against STS Benchmark Spearman (x100).
The upper left is best (fast and good). The configurations on the Pareto front
(no other configuration is both faster and better) are ringed: every choice worth making lies
on it, and the decision matrix below weighs the trade-offs along it. Configurations of one model
and variant share a quality score (the embeddings do not depend on the batch size), so they
line up horizontally."""
    ),
    new_code_cell(
        """fig, ax = plt.subplots(figsize=(7, 4))
if len(ok) and "quality.stsb_spearman" in ok:
    front = decide.pareto_front(ok, "latency.p95_ms", "quality.stsb_spearman")
    ax.scatter(ok["latency.p95_ms"], ok["quality.stsb_spearman"], color="#4477aa")
    ax.scatter(ok["latency.p95_ms"][front], ok["quality.stsb_spearman"][front], s=160,
               facecolors="none", edgecolors="#ee6677", label="Pareto front")
    for _, row in ok.iterrows():
        ax.annotate(row["label"], (row["latency.p95_ms"], row["quality.stsb_spearman"]), fontsize=7,
                    textcoords="offset points", xytext=(4, 4))
    ax.legend(fontsize=8)
else:
    ax.text(0.5, 0.5, "no configuration with a quality score", ha="center", transform=ax.transAxes)
ax.set_xlabel("p95 latency per call (ms)")
ax.set_ylabel("STS Benchmark Spearman x100")
plt.show()"""
    ),
    new_markdown_cell(
        """## The decision table

The weighted decision matrix (the profile the sweep was decided with, `conf/decision/<PROFILE>.yaml`) ranks the
configurations that pass the hard gates; the verdict is `go` when every target is met,
`close` when the acceptable levels are met, else `no-go`. This recomputes it from the runs
above, with the raw samples for the noise check, without writing or logging anything."""
    ),
    new_code_cell(
        """decision = decide.decide(runs, cfg, samples, parent_run_id=PARENT_RUN_ID, sweep=SWEEP)
print(decision.recommendation)
score_cols = [f"score.{c.metric}" for c in cfg.criteria]
decision.ranking[["rank", "label", "eligible", "verdict", "total_pct", *score_cols, "why"]].round(3)"""
    ),
    new_markdown_cell(
        """How firm is the choice? The winner should stay the winner when a weight moves by
±20%, and when the p95 values are redrawn from the raw samples (bootstrap). A low share
means the leading configurations are too close to call on this machine and this sample."""
    ),
    new_code_cell(
        """rob = decision.robustness
print(f"winner stays the winner in {rob.winner_stability:.0%} of the weight moves" if rob.winner_stability is not None else "no weight check")
print(f"winner stays the winner in {rob.noise_stability:.0%} of {rob.noise_draws} p95 redraws" if rob.noise_stability is not None else "no noise check (fewer than two configurations with samples)")
rob.noise.round(3) if len(rob.noise) else "no bootstrap table\""""
    ),
    new_markdown_cell(
        """## Another profile, the same runs

The profile is configuration: `latency_first` moves the weight to tail latency and throughput
(or, for a sweep decided with it, `default`).
Deciding the same runs again shows whether the choice depends on the weights."""
    ),
    new_code_cell(
        """OTHER = "latency_first" if PROFILE != "latency_first" else "default"
other = decide.decide(runs, decide.compose_decision(OTHER).decision, samples, parent_run_id=PARENT_RUN_ID, sweep=SWEEP)
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
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
        },
    )


NOTEBOOKS = {"sweep_analysis.ipynb": SWEEP_ANALYSIS}


def main() -> None:
    for name, cells in NOTEBOOKS.items():
        nb = notebook(cells)
        nbformat.validate(nb)
        nbformat.write(nb, HERE / name)


if __name__ == "__main__":
    main()
