"""Which configuration ``pipeline serve`` serves: the one a decision names, a run's, or one given.

A decision (``reports/latest/decision.json``) names its winner's run id; the run's record (in
the records folder, ``reports/runs``) holds what the server needs: the exported model folder
(tag ``artifact.folder``, ``artifact.onnx_file``) and the embedder's settings (params
``pooling.mode``, ``model.max_length``, ``provider.ep``...).  When the record is not in the
records folder, the run is read from MLflow (its tags and params are the same).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.core.errors import PipelineError
from pipeline.tracking.records import iter_records

__all__ = ["Target", "TargetError", "from_decision", "from_run", "from_params", "explicit"]

# the figures the startup line names, as (metric, label, format)
FIGURES = (
    ("latency.p50_ms", "p50", "{:.2f} ms"),
    ("latency.p95_ms", "p95", "{:.2f} ms"),
    ("throughput.sentences_per_s", "throughput", "{:.0f}/s"),
    ("load.max_qps_at_p95_target", "max QPS at p95 target", "{:.0f}/s"),
    ("quality.stsb_spearman", "STS", "{:.2f}"),
    ("quality.stsb_delta_vs_fp32", "STS delta", "{:+.2f}"),
)


class TargetError(PipelineError, ValueError):
    """The configuration to serve cannot be found or read."""


@dataclass
class Target:
    label: str  # the configuration's name (a decision's label, or the folder)
    embedder: dict  # keyword arguments of pipeline.embedder.Embedder
    figures: dict[str, float] = field(default_factory=dict)  # its measured metrics
    source: str = ""  # where it came from (decision file and run id, or "explicit")

    def describe(self) -> str:
        measured = ", ".join(f"{name} {fmt.format(self.figures[k])}" for k, name, fmt in FIGURES if k in self.figures)
        measured = measured or "no measured figures"
        e = self.embedder
        return (
            f"{self.label} [{e['model_dir']}/{e.get('onnx_file', 'model.onnx')}, pooling {e.get('pooling', 'mean')}, "
            f"max_length {e.get('max_length')}, threads {e.get('threads', 0)}"
            + "".join(f", {k}={v}" for k, v in (e.get("session_config") or {}).items())
            + f"] from {self.source}; measured: {measured}"
        )


def _int(v, default=None):
    return default if v in (None, "", "null", "None") else int(float(v))


def from_params(params: dict[str, str], tags: dict[str, str]) -> dict:
    """The Embedder's keyword arguments from a run's params and tags (as the job built them)."""
    folder = tags.get("artifact.folder")
    if not folder:
        raise TargetError("the run has no artifact.folder tag: it exported no model (a failed or skipped run?)")
    kw = {
        "model_dir": folder,
        "onnx_file": tags.get("artifact.onnx_file") or "model.onnx",
        "pooling": params.get("pooling.mode") or params.get("pooling") or "mean",
        "provider": params.get("provider.ep") or "CPUExecutionProvider",
        "threads": _int(params.get("provider.threads"), 0),
        "max_length": _int(params.get("model.max_length")),
        "padding_side": params.get("model.padding_side") or "right",
        "prefix": params.get("model.query_prefix") or "",
    }
    if params.get("provider.graph_optimization_level"):
        kw["graph_optimization_level"] = params["provider.graph_optimization_level"]
    if params.get("provider.call_cost"):
        kw["call_cost"] = _int(params["provider.call_cost"])
    return kw


def _from_records(run_id: str, records_dir: Path):
    for _, rec in iter_records(records_dir):
        if run_id in (rec.mlflow_run_id, rec.record_id):
            return rec.params, rec.tags, rec.metrics
    return None


def _from_mlflow(run_id: str, tracking_uri: str | None):
    from mlflow.tracking import MlflowClient

    try:
        run = MlflowClient(tracking_uri=tracking_uri).get_run(run_id)
    except Exception as exc:
        raise TargetError(f"run {run_id} is in neither the records folder nor MLflow ({type(exc).__name__}: {exc})") from None
    return run.data.params, run.data.tags, run.data.metrics


def from_run(run_id: str, records_dir: str | Path = "reports/runs", tracking_uri: str | None = None, label: str = "") -> Target:
    """The configuration of one run: from its record, else from MLflow."""
    found = _from_records(run_id, Path(records_dir)) if Path(records_dir).is_dir() else None
    params, tags, metrics = found if found is not None else _from_mlflow(run_id, tracking_uri)
    kw = from_params(params, tags)
    if not Path(kw["model_dir"], kw["onnx_file"]).is_file():
        raise TargetError(
            f"run {run_id}'s model {kw['model_dir']}/{kw['onnx_file']} is not on this machine "
            "(the export cache was cleared or the run was made elsewhere): re-run its job, or give --folder"
        )
    return Target(label or tags.get("mlflow.runName") or run_id, kw, {k: float(v) for k, v in metrics.items()}, f"run {run_id}")


def from_decision(
    path: str | Path = "reports/latest/decision.json", records_dir: str | Path = "reports/runs", tracking_uri: str | None = None
) -> Target:
    """The winner of a decision (its ``decision.json``)."""
    path = Path(path)
    try:
        decision = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise TargetError(f"cannot read the decision {path}: {exc}") from None
    winner = decision.get("winner")
    if not winner or not winner.get("run_id"):
        raise TargetError(f"the decision {path} has no winner (verdict: {decision.get('verdict')}): nothing to serve")
    t = from_run(winner["run_id"], records_dir, tracking_uri, label=winner.get("label", ""))
    t.figures = {**t.figures, **{k: float(v) for k, v in (winner.get("metrics") or {}).items()}}
    t.source = f"decision {path} (run {winner['run_id']}, verdict {winner.get('verdict', decision.get('verdict'))})"
    return t


def explicit(folder: str | Path, **embedder) -> Target:
    """A model folder given by hand (no measured figures)."""
    folder = Path(folder)
    kw = {"model_dir": str(folder), **{k: v for k, v in embedder.items() if v is not None}}
    if not Path(folder, kw.get("onnx_file", "model.onnx")).is_file():
        raise TargetError(f"no {kw.get('onnx_file', 'model.onnx')} in {folder}")
    return Target(folder.name, kw, {}, "explicit settings")
