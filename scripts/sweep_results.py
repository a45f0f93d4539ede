"""File a sweep's measured jobs as a committed result: ``benchmarks/results/<cpu>/sweep_<name>.json``.

    python scripts/sweep_results.py                     # the latest sweep in the local tracking store
    python scripts/sweep_results.py --parent RUN_ID     # a given sweep (its parent run)
    python scripts/sweep_results.py --tracking-uri URI  # another store (default: the project's, as pipeline.api)

The file holds one row per job the sweep lists (reused jobs included: its ``jobs.json``), with the
figures a page shows (latency, throughput, tokens per second, padding share, quality, parity on the
workload's own texts, memory, and whether the job was measured contended), the conditions (CPU
model, cores, the load and other processes' CPU share over the jobs, versions, when) and the
sweep's decision as the decide stage wrote it.  ``scripts/render_results.py`` renders it into a page
block ``<!-- results:sweep_<name> -->``.  Jobs timed on another machine than the one most jobs ran
on are refused: one file, one CPU.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

# the columns of a row, in order: (the runs frame's column, the row's key)
COLUMNS = (
    ("label", "configuration"),
    ("workload", "workload"),
    ("workload.length", "tokens"),
    ("batch_size", "batch"),
    ("status", "status"),
    ("contended", "contended"),
    ("latency.p50_ms", "p50 ms"),
    ("latency.p95_ms", "p95 ms"),
    ("throughput.sentences_per_s", "texts/s"),
    ("throughput.tokens_per_s", "tokens/s"),
    ("bench.padding_share", "padding share"),
    ("quality.stsb_spearman", "STS"),
    ("quality.stsb_delta_vs_fp32", "STS loss vs fp32"),
    ("parity.workload_min_cosine", "min cos vs torch (workload)"),
    ("workload.cosine_to_fp32_min", "min cos vs fp32 (workload)"),
    ("memory.peak_rss_mb", "peak RSS MB"),
    ("roofline_fraction", "roofline fraction"),
)


def _value(v):
    if v is None:
        return None
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if hasattr(v, "item"):  # numpy scalars
        v = v.item()
    return round(v, 4) if isinstance(v, float) else v


def rows_of(frame) -> list[dict]:
    """One row per job, ordered as the sweep ran them; ``contended`` is true or false."""
    rows = []
    for rec in frame.to_dict(orient="records"):
        row = {}
        for col, key in COLUMNS:
            if col == "contended":
                row[key] = bool(rec.get("contended"))
            elif col == "workload.length":
                v = _value(rec.get(col))
                row[key] = int(v) if v is not None else None
            else:
                row[key] = _value(rec.get(col))
        rows.append(row)
    return rows


def conditions_of(frame) -> dict:
    """The machine and the load over the jobs; refuses a frame timed on more than one machine."""
    machines = sorted({str(m) for m in frame.get("machine", []) if m})
    if len(machines) > 1:
        raise SystemExit(
            f"the sweep's jobs were timed on {len(machines)} machines ({', '.join(machines)}): one result file holds one machine's figures"
        )

    def span(col: str):
        vals = [float(v) for v in frame.get(col, []) if v is not None and math.isfinite(float(v))]
        return [round(min(vals), 3), round(max(vals), 3)] if vals else None

    cpus = sorted({str(c) for c in frame.get("cpu_model", []) if c})
    cores = frame["conditions.cores"].max() if "conditions.cores" in frame else None
    starts = [int(t) for t in frame.get("start_time", []) if t]
    return {
        "cpu_model": cpus[0] if cpus else None,
        "cores": int(cores) if cores is not None and math.isfinite(cores) else None,
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(min(starts) / 1000)) if starts else None,
        "load_average": span("conditions.load_before"),
        "other_cpu_share": span("conditions.other_cpu_share"),
        "jobs_contended": int(sum(bool(c) for c in frame["contended"])),
    }


def collect(parent: str | None, tracking_uri: str | None) -> tuple[dict, str]:
    from pipeline import api
    from pipeline.decision import mlflow_io

    uri = tracking_uri or api.tracking_uri()
    c = mlflow_io.client(uri)
    parent = parent or mlflow_io.latest_parent(c)
    frame = api.runs(parent, uri)
    run = c.get_run(parent)
    jobs = mlflow_io._artifact_json(c, parent, "jobs.json") or {}
    decision = api.decision(parent, uri) or {}
    listed = {j["run_id"] for j in jobs.get("jobs", []) if j.get("run_id")}
    if listed:  # the job's run of record: a resumed sweep's parent may also hold an earlier, replaced one
        frame = frame[frame["run_id"].isin(listed)]
    name = jobs.get("sweep") or decision.get("sweep") or "sweep"
    first = c.get_run(frame["run_id"].iloc[0]).data.tags if len(frame) else {}
    cond = conditions_of(frame)
    cond["versions"] = {
        k[len("env.") :]: v
        for k, v in first.items()
        if k.startswith("env.") and k[len("env.") :] in ("onnxruntime", "optimum", "torch", "transformers", "python")
    }
    cond["when"] = cond["when"] or time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime((run.info.start_time or 0) / 1000))
    parts = (mlflow_io._artifact_json(c, parent, "decision/workloads.json") or {}).get("parts") or {}
    out = {
        "sweep": name,
        "parent_run_id": parent,
        "command": f"python -m pipeline +sweep={name}",
        "conditions": cond,
        "rows": rows_of(frame),
        "decision": {
            **{k: decision.get(k) for k in ("profile", "verdict", "recommendation", "headline") if k in decision},
            # a traffic of several parts: the best configuration for each, and for the weighted mix
            **({"parts": {k: parts[k] for k in ("weights", "best_per_part", "winner", "recommendation") if k in parts}} if parts else {}),
        },
    }
    return out, name


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parent", default=None, help="the sweep's parent run id (default: the latest sweep)")
    p.add_argument("--tracking-uri", default=None, help="default: the project's (tracking.uri, $MLFLOW_TRACKING_URI, else the local store)")
    p.add_argument("--out", default=None, help="default: benchmarks/results/<cpu-slug>/sweep_<name>.json")
    args = p.parse_args(argv)
    data, name = collect(args.parent, args.tracking_uri)
    if not data["rows"]:
        raise SystemExit(f"sweep {data['parent_run_id']} lists no job")
    from peerstats import results_path

    out = Path(args.out) if args.out else results_path(data["conditions"]["cpu_model"] or "unknown", f"sweep_{name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1) + "\n")
    print(f"{len(data['rows'])} jobs ({data['conditions']['jobs_contended']} contended) -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
