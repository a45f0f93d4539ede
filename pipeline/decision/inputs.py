"""The one input type of the decision, from either producer: MLflow runs or local records.

Both producers turn a run into the same row with :func:`run_row`, so the matrix never sees
where its numbers came from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from pipeline.core.vocab import Metric, Status, contended_reason
from pipeline.tracking.names import GROUPS, OLD_PARAM_NAMES, label, load_suffix

PARAMS = ("model", "variant", "provider", "pooling", "batch_size", "max_length", "threads", "precision")
# params only some runs have: the load scenario's serving front
SERVING_PARAMS = ("scenario", "serve.max_batch", "serve.max_wait_ms", "serve.workers")
# the frame's column <- the run's param, under its Hydra key (pipeline.tracking.track.job_params); a run
# logged before the Hydra keys has the column's own name as its param, which is read as well
PARAM_KEYS = {**{g: g for g in GROUPS}, **{short: key for key, short in OLD_PARAM_NAMES.items()}}


def param_of(params: dict[str, Any] | None, column: str):
    """The value of the frame's ``column`` in a run's params: under its Hydra key, or under the
    short name runs were logged with before."""
    params = params or {}
    key = PARAM_KEYS.get(column, column)
    return params[key] if key in params else params.get(column)


BASE_COLUMNS = ("run_id", "record_id", "run_name", "status", "reason", "contended", "start_time", *PARAMS)
SAMPLES_COLUMN = "latency_ns"
FAILED_METRICS = "failed_metrics"  # the metrics a run logged as NaN/inf, space-separated
RETIME_FILE = "retime.json"


def run_row(
    *,
    run_id: str,
    run_name: str = "",
    status: str | None,
    reason: str = "",
    start_time: int = 0,
    params: dict[str, Any] | None = None,
    metrics: dict[str, float] | None = None,
    tags: dict[str, str] | None = None,
    finished: bool = True,
    record_id: str | None = None,
) -> dict[str, Any]:
    """One run as the matrix reads it.

    ``status`` is the job's own tag; a run with no status, or one the tracking store still
    shows as running (``finished=False``: killed while it was being logged), is ``unfinished``
    and never ranked.  ``contended`` is the reason from the tag ``bench.contended`` ("" when the
    benchmark had the machine to itself).
    """
    tags = tags or {}
    if status is None or not finished:
        why = "its tracking run never finished (killed while it was logged?)" if status is not None else "no status tag"
        status, reason = "unfinished", reason or why
    contended = contended_reason(tags.get(Metric.CONTENDED))
    row: dict[str, Any] = {
        "run_id": run_id,
        "record_id": record_id or tags.get("record_id") or run_id,
        "run_name": run_name or "",
        "status": status,
        "reason": reason or "",
        "contended": contended,
        "start_time": int(start_time or 0),
        # the hardware that timed it (decision/machines.py); runs logged before machine.kind: their host
        "machine": tags.get("machine.kind") or tags.get("machine.fingerprint", ""),
        "cpu_model": tags.get("conditions.cpu_model", ""),
    }
    for p in PARAMS:
        row[p] = param_of(params, p)
    if param_of(params, "scenario") == "load":  # the serving front: only on load runs
        for p in SERVING_PARAMS:
            if param_of(params, p) is not None:
                row[p] = param_of(params, p)
    row["workload"] = param_of(params, "workload") or "sentences"  # runs from before workloads: the STS sentences
    row["workload.length"] = _single_length(param_of(params, "workload.lengths"))
    row.update({k: float(v) for k, v in (metrics or {}).items()})
    # a metric logged as NaN or infinite is a failed measurement, not a missing one: the gates fail it
    row[FAILED_METRICS] = " ".join(sorted(k for k, v in (metrics or {}).items() if v is not None and not np.isfinite(float(v))))
    return row


def _single_length(value) -> float:
    """A run's one target token length (the ``lengths`` workload), or NaN."""
    try:
        got = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return float("nan")
    return float(got[0]) if isinstance(got, list) and len(got) == 1 else float("nan")


def from_search_runs(found: pd.DataFrame) -> pd.DataFrame:
    """The runs frame from what ``mlflow.search_runs`` returns (columns ``params.*``,
    ``metrics.*``, ``tags.*``, ``status``, ``start_time``): how a notebook that loaded runs with
    MLflow's own API hands them to the decision."""
    rows = []
    for rec in found.to_dict(orient="records"):

        def part(prefix: str) -> dict[str, Any]:
            return {
                k[len(prefix) :]: v
                for k, v in rec.items()
                if k.startswith(prefix) and v is not None and not (isinstance(v, float) and np.isnan(v))
            }

        tags = part("tags.")
        start = rec.get("start_time")
        start_ms = int(pd.Timestamp(start).value // 1_000_000) if start is not None and not pd.isna(start) else 0
        rows.append(
            run_row(
                run_id=rec["run_id"],
                run_name=tags.get("mlflow.runName", ""),
                status=tags.get("status"),
                reason=tags.get("reason", ""),
                start_time=start_ms,
                params=part("params."),
                metrics=part("metrics."),
                tags=tags,
                finished=rec.get("status") != "RUNNING",
            )
        )
    return runs_frame(rows)


def runs_frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """The runs frame: every base column present, ordered by start time, labelled."""
    rows = list(rows)
    frame = pd.DataFrame(rows) if rows else pd.DataFrame(columns=list(BASE_COLUMNS))
    for col in BASE_COLUMNS:
        if col not in frame:
            frame[col] = "" if col in ("reason", "contended", "run_name") else None
    frame["contended"] = frame["contended"].fillna("").astype(str)
    frame["reason"] = frame["reason"].fillna("").astype(str)
    if len(frame):
        frame = frame.sort_values(["start_time", "run_id"], kind="mergesort").reset_index(drop=True)
    frame["label"] = labels(frame)
    return frame


def _text(v) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "?"
    if isinstance(v, float) and v.is_integer():  # a column with a missing value turns 1 into 1.0
        return str(int(v))
    return str(v)


def labels(frame: pd.DataFrame) -> list[str]:
    """model/variant/provider/pooling/b<batch> (+ t<threads>, L<max_length> where they vary); unique.

    Built row by row, so a frame with a missing column or a missing value (a job refused
    before it had params) still gets a label ("?" where a value is missing).
    """
    if frame.empty:
        return []
    recs = frame.to_dict(orient="records")
    out = [label(*(_text(r.get(c)) for c in ("model", "variant", "provider", "pooling", "batch_size"))) for r in recs]
    for name, prefix in (("threads", "/t"), ("max_length", "/L"), ("workload", "/")):
        if name in frame and len({_text(r.get(name)) for r in recs} - {"?"}) > 1:
            out = [o + prefix + _text(r.get(name)) for o, r in zip(out, recs)]
    if "scenario" in frame:  # a load run: its serving front is part of the configuration
        out = [
            o + (load_suffix(_text(r.get("serve.max_batch")), _text(r.get("serve.max_wait_ms"))) if r.get("scenario") == "load" else "")
            for o, r in zip(out, recs)
        ]
    counts: dict[str, int] = {}
    for o in out:
        counts[o] = counts.get(o, 0) + 1
    return [f"{o}#{str(r.get('run_id'))[:6]}" if counts[o] > 1 else o for o, r in zip(out, recs)]


def samples_from_csv(path: str | Path) -> np.ndarray | None:
    """Raw per-call latency (ms) from a ``latency_ns`` CSV, or None."""
    data = pd.read_csv(path)
    if SAMPLES_COLUMN not in data or data[SAMPLES_COLUMN].dropna().empty:
        return None
    return data[SAMPLES_COLUMN].dropna().to_numpy(dtype=np.float64) / 1e6


def rounds_frame(payload: dict | None) -> pd.DataFrame:
    """The re-timing rounds (``retime.json``) as a frame: one row per benchmark."""
    if not payload:
        return pd.DataFrame(columns=["record_id", "round", "contended"])
    rows = []
    for r in payload.get("rounds", []):
        rows.append({"record_id": r["record_id"], "round": int(r["round"]), "contended": r.get("contended") or "", **r.get("metrics", {})})
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=["record_id", "round", "contended"])


# -- the local records producer ------------------------------------------------------------------
def from_records(found: list[tuple[Path, Any]], samples_artifact: str, parent_folder: Path | None = None, sweep: str = "") -> Any:
    """Inputs from local run records (``records.iter_records``): jobs, their raw samples, and
    the parent record's ``retime.json`` when it has one.  Reads no MLflow store."""
    from pipeline.decision.types import Inputs

    rows, folders = [], {}
    parent_id, complete = "", None
    for folder, rec in found:
        if rec.is_parent:
            continue
        rid = rec.mlflow_run_id or rec.record_id
        folders[rid] = folder
        status = rec.status if rec.status != Status.RUNNING else None
        rows.append(
            run_row(
                run_id=rid,
                record_id=rec.record_id,
                run_name=rec.run_name,
                status=status,
                reason=rec.reason or ("the job never finished" if rec.status == Status.RUNNING else ""),
                start_time=int(rec.created * 1000),
                params=rec.params,
                metrics=rec.metrics,
                tags=rec.tags,
            )
        )
        parent_id = parent_id or rec.tags.get("mlflow.parentRunId", "")
    runs = runs_frame(rows)
    samples = {}
    for _, row in runs[runs["status"] == Status.OK].iterrows():
        path = folders[row["run_id"]] / samples_artifact
        if path.is_file():
            s = samples_from_csv(path)
            if s is not None:
                samples[row["label"]] = s
    rounds = pd.DataFrame()
    if parent_folder is not None:
        if (parent_folder / RETIME_FILE).is_file():
            rounds = rounds_frame(json.loads((parent_folder / RETIME_FILE).read_text()))
        try:
            from pipeline.tracking.records import load

            prec = load(parent_folder)
            complete = {"true": True, "false": False}.get(prec.tags.get("sweep.complete", ""))
            parent_id = prec.mlflow_run_id or prec.open_run_id or parent_id
        except (OSError, ValueError, TypeError):
            pass
    return Inputs(runs=runs, samples_ms=samples, rounds=rounds, parent_run_id=parent_id or "", sweep=sweep, complete=complete)
