"""Write the analysis notebooks (without outputs) from their cell sources below.

    python notebooks/make_notebooks.py     # regenerates notebooks/*.ipynb

Keeping the source here makes the notebooks easy to review; tests execute the .ipynb files.
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

SWEEP_ANALYSIS = [
    new_markdown_cell(
        """# Comparing the configurations of a sweep

This notebook loads one sweep's runs from MLflow into pandas and compares them: what ran and
what was skipped, the latency distributions, quality against speed, and the decision table.

It reads the tracking store named by `MLFLOW_TRACKING_URI` (default: the project's
`sqlite:///mlruns/mlflow.db`) and the sweep named by `PARENT_RUN_ID` (default: the latest
sweep). Run a sweep first, for example `python -m pipeline +sweep=smoke`."""
    ),
    new_code_cell(
        """import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from pipeline import decide

ROOT = Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()
TRACKING_URI = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{ROOT / 'mlruns' / 'mlflow.db'}"
client = MlflowClient(TRACKING_URI)
PARENT_RUN_ID = os.environ.get("PARENT_RUN_ID") or decide.latest_parent(client)
parent = client.get_run(PARENT_RUN_ID)
print("tracking store:", TRACKING_URI)
print("sweep:", parent.data.tags.get("sweep", parent.info.run_name), "parent run", PARENT_RUN_ID)"""
    ),
    new_markdown_cell(
        """## The runs

One row per job of the sweep. `status` is `ok`, `skipped` (the configuration cannot run on
this machine, for example an execution provider this onnxruntime lacks) or `failed`; the
`reason` says why. Only `ok` runs are compared below."""
    ),
    new_code_cell(
        """runs = decide.load_children(client, PARENT_RUN_ID)
print(runs["status"].value_counts().to_string())
cols = ["label", "status", "latency.p50_ms", "latency.p95_ms", "throughput.sentences_per_s",
        "quality.stsb_spearman", "parity.min_cosine", "model.size_mb", "memory.peak_rss_mb"]
ok = runs[runs["status"] == "ok"].copy()
ok[[c for c in cols if c in ok]].round(3)"""
    ),
    new_code_cell(
        """not_ok = runs[runs["status"] != "ok"]
not_ok[["label", "status", "reason"]] if len(not_ok) else "every job ran"""
    ),
    new_markdown_cell(
        """## Latency distributions

Each job keeps its raw per-call samples (`latency_samples_ns.csv`). Percentiles hide the
shape: the empirical CDFs below show the spread and the tail of every configuration that ran."""
    ),
    new_code_cell(
        """fig, ax = plt.subplots(figsize=(8, 4))
for _, row in ok.iterrows():
    ms = decide.load_samples_ms(client, row["run_id"], "latency_samples_ns.csv")
    if ms is None:
        continue
    ms = np.sort(ms)
    ax.plot(ms, np.arange(1, len(ms) + 1) / len(ms), label=row["label"])
ax.set_xscale("log")
ax.set_xlabel("latency per call (ms, log scale)")
ax.set_ylabel("fraction of calls")
ax.axvline(20, color="grey", ls="--", lw=1)
ax.legend(fontsize=7, loc="lower right")
plt.show()"""
    ),
    new_markdown_cell(
        """## Quality against speed

Each point is a configuration: p95 latency per call against STS Benchmark Spearman. The best
trade-offs lie on the lower-right edge (fast and good); the decision matrix below weighs them."""
    ),
    new_code_cell(
        """fig, ax = plt.subplots(figsize=(7, 4))
if len(ok) and "quality.stsb_spearman" in ok:
    ax.scatter(ok["latency.p95_ms"], ok["quality.stsb_spearman"])
    for _, row in ok.iterrows():
        ax.annotate(row["label"], (row["latency.p95_ms"], row["quality.stsb_spearman"]), fontsize=7)
ax.set_xlabel("p95 latency (ms)")
ax.set_ylabel("STS Benchmark Spearman x100")
plt.show()"""
    ),
    new_markdown_cell(
        """## The decision table

The weighted decision matrix (profile `default`, `conf/decision/default.yaml`) ranks the
configurations that pass the hard gates; the verdict is `go` when every target is met,
`close` when the acceptable levels are met. This recomputes it from the runs above, without
writing or logging anything, so it also shows what another profile would choose."""
    ),
    new_code_cell(
        """cfg = decide.compose_decision("default").decision
decision = decide.decide(runs, cfg, parent_run_id=PARENT_RUN_ID)
table = decision.ranking[["label", "eligible", "verdict", "total_pct"]]
print(decision.recommendation)
table"""
    ),
]


def main() -> None:
    nb = new_notebook(cells=SWEEP_ANALYSIS, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nbformat.write(nb, HERE / "sweep_analysis.ipynb")


if __name__ == "__main__":
    main()
