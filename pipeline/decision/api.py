"""Deciding a sweep end to end: read, decide, write the report, log it on the parent.

Two kinds of decision, kept apart on disk and in MLflow:

- the decision of record: the one a sweep makes when it ends (or the first one, for a sweep
  synced later, or one asked for with ``record=True``): ``reports/<parent>/``, logged on the
  parent (``decision/`` artifacts, ``decision.*`` tags, the run's description);
- a what-if (``record=False``): another profile or other weights on the same runs, written to
  ``reports/whatif/<parent>/<name>/`` and logged under the parent's ``whatif/<name>/``
  artifacts only: the decision of record, its tags and its description are left alone.

``reports/latest`` (and ``reports/metrics.json``, for DVC) follow the latest sweep's decision of
record: a sweep's end moves them; a re-decision moves them only when they already show that sweep.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from pipeline.decision import mlflow_io, parts, report
from pipeline.decision.core import decide
from pipeline.decision.profile import as_decision_config
from pipeline.decision.types import Decision, Inputs

LATEST = "latest"
WHATIF = "whatif"


def _write(decision: Decision, folder: Path) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    decision.files = [p.name for p in report.write(decision, folder)]
    decision.out_dir = folder
    return folder


def latest_parent_on_disk(out_dir: str | Path) -> str | None:
    """The parent run whose decision ``<out_dir>/latest`` shows (None when there is none)."""
    path = Path(out_dir) / LATEST / "decision.json"
    try:
        return json.loads(path.read_text()).get("parent_run_id")
    except (OSError, ValueError):
        return None


def write_outputs(decision: Decision, out_dir: str | Path, latest: bool | None = True) -> Path:
    """``<out_dir>/<parent>/`` (every file of :func:`report.write`); with ``latest`` also a copy
    in ``latest/`` and ``<out_dir>/metrics.json`` (headline, for DVC).  ``latest=None``: only when
    ``latest/`` is absent or already shows this sweep.  Returns the folder."""
    out_root = Path(out_dir)
    folder = _write(decision, out_root / (decision.parent_run_id or "local"))
    if latest is None:
        latest = latest_parent_on_disk(out_root) in (None, decision.parent_run_id)
    if latest:
        target = out_root / LATEST
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(folder, target)
        (out_root / "metrics.json").write_text(json.dumps(decision.headline(), indent=2) + "\n")
    return folder


def whatif_folder(out_dir: str | Path, parent_run_id: str, name: str) -> Path:
    return Path(out_dir) / WHATIF / (parent_run_id or "local") / name


def load_sweep(parent_run_id: str, decision_cfg, tracking_uri: str) -> Inputs:
    """A sweep's :class:`Inputs` exactly as the decision reads them: its runs (with the jobs it
    reused), the leaders' raw samples and the re-timings (``retime.json``)."""
    cfg = as_decision_config(decision_cfg)
    return mlflow_io.load_inputs(mlflow_io.client(tracking_uri), parent_run_id, cfg)


def decide_sweep(
    parent_run_id: str,
    decision_cfg,
    tracking_uri: str,
    out_dir: str | Path = "reports",
    log_to_parent: bool = True,
    record: bool = True,
    whatif: str | None = None,
    latest: bool | None = True,
) -> Decision:
    """Decide one sweep: read its children from MLflow, rank, write ``out_dir``, log on the parent.

    ``decision_cfg``: the composed ``decision`` group (DictConfig, dict or DecisionConfig).
    ``record=False``: a what-if named ``whatif`` (default: the profile's name), see the module doc.
    ``latest``: see :func:`write_outputs` (a sweep's end passes True, a re-decision None).
    """
    cfg = as_decision_config(decision_cfg)
    c = mlflow_io.client(tracking_uri)
    inputs = mlflow_io.load_inputs(c, parent_run_id, cfg)
    decision = decide(parts.only_workload(inputs, cfg.workload) if cfg.workload else inputs, cfg)
    if not record:
        name = whatif or cfg.name
        folder = _write(decision, whatif_folder(out_dir, decision.parent_run_id, name))
        decision.files += [path.name for path in parts.write(inputs, cfg, folder)]
        if log_to_parent:
            c.log_artifacts(parent_run_id, str(folder), artifact_path=f"{WHATIF}/{name}")
        return decision
    folder = write_outputs(decision, out_dir, latest=latest)
    shown = latest_parent_on_disk(out_dir) == decision.parent_run_id
    for path in parts.write(inputs, cfg, folder):  # the traffic's parts, the length curve
        decision.files.append(path.name)
        if shown:
            shutil.copy2(path, Path(out_dir) / LATEST / path.name)
    if log_to_parent:
        mlflow_io.log_on_parent(c, decision, folder)
    return decision
