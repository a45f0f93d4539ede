"""Deciding a sweep end to end: read, decide, write the report, log it on the parent."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from . import mlflow_io, parts, report
from .core import decide
from .profile import as_decision_config
from .types import Decision


def write_outputs(decision: Decision, out_dir: str | Path, latest: bool = True) -> Path:
    """``<out_dir>/<parent>/`` (every file of :func:`report.write`), a copy in ``latest/`` and
    ``<out_dir>/metrics.json`` (headline, for DVC); returns the folder."""
    out_root = Path(out_dir)
    folder = out_root / (decision.parent_run_id or "local")
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    decision.files = [p.name for p in report.write(decision, folder)]
    decision.out_dir = folder
    if latest:
        target = out_root / "latest"
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(folder, target)
        (out_root / "metrics.json").write_text(json.dumps(decision.headline(), indent=2) + "\n")
    return folder


def decide_sweep(parent_run_id: str, decision_cfg, tracking_uri: str, out_dir: str | Path = "reports", log_to_parent: bool = True) -> Decision:
    """Decide one sweep: read its children from MLflow, rank, write ``out_dir``, log on the parent.

    ``decision_cfg``: the composed ``decision`` group (DictConfig, dict or DecisionConfig).
    """
    cfg = as_decision_config(decision_cfg)
    c = mlflow_io.client(tracking_uri)
    inputs = mlflow_io.load_inputs(c, parent_run_id, cfg)
    decision = decide(parts.only_workload(inputs, cfg.workload) if cfg.workload else inputs, cfg)
    folder = write_outputs(decision, out_dir)
    for path in parts.write(inputs, cfg, folder):  # the traffic's parts, the length curve
        decision.files.append(path.name)
        if (Path(out_dir) / "latest").is_dir():
            shutil.copy2(path, Path(out_dir) / "latest" / path.name)
    if log_to_parent:
        mlflow_io.log_on_parent(c, decision, folder)
    return decision
