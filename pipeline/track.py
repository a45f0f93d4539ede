"""Tracking: MLflow store setup and the names every run logs (see design.md)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def setup(tracking_cfg) -> str:
    """Point MLflow at the configured store and experiment; returns the experiment id."""
    import mlflow

    uri = tracking_cfg.resolved_uri()
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///") :])
        db.parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    exp = mlflow.get_experiment_by_name(tracking_cfg.experiment)
    if exp is not None:
        return exp.experiment_id
    artifact_location = None
    if "://" not in uri or uri.startswith("sqlite:") or uri.startswith("file:"):
        artifact_location = Path(tracking_cfg.artifact_location).resolve().as_uri()
    try:
        return mlflow.create_experiment(tracking_cfg.experiment, artifact_location=artifact_location)
    except Exception:  # created by a concurrent process in the meantime
        exp = mlflow.get_experiment_by_name(tracking_cfg.experiment)
        if exp is None:
            raise
        return exp.experiment_id


def job_params(cfg) -> dict[str, str]:
    """The params design.md names, plus the session options that define a configuration."""
    return {
        "model": cfg.model.name,
        "variant": cfg.variant.name,
        "provider": cfg.provider.name,
        "pooling": cfg.pooling.mode,
        "batch_size": cfg.bench.batch_size,
        "max_length": cfg.model.max_length,
        "threads": cfg.provider.threads,
        "graph_optimization_level": cfg.provider.graph_optimization_level,
        "mem_arena": cfg.provider.mem_arena,
        "io_binding": cfg.provider.io_binding,
    }


def quiet() -> None:
    """Keep MLflow's and alembic's chatter out of the terminal."""
    os.environ.setdefault("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")
    for name in ("alembic", "mlflow", "mlflow.store", "mlflow.tracking"):
        logging.getLogger(name).setLevel(logging.WARNING)
