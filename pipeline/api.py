"""The pipeline from Python: run a sweep, read its decision, load its runs.

    from pipeline import api

    result = api.run_sweep("smoke", ["bench.iterations=50"])  # as `pipeline +sweep=smoke bench.iterations=50`
    result.exit_code, result.parent_run_id                    # 0 when every job ended ok or skipped
    api.decision(result.parent_run_id)                        # the sweep's decision of record (a dict)
    api.runs(result.parent_run_id)                            # one row per job: status, reason, params, metrics

``parent`` defaults to the latest sweep of the store; ``tracking_uri`` to the project's
(``tracking.uri``, ``MLFLOW_TRACKING_URI``, else ``sqlite:///mlruns/mlflow.db``).  A sweep runs in
a child process, as the command line runs it (Hydra's multirun owns its process), with this
interpreter; its output goes to this process's stdout unless ``quiet``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class SweepResult:
    """What :func:`run_sweep` returns."""

    name: str
    exit_code: int  # the command line's exit code (0 ok; see `pipeline --help` for the others)
    parent_run_id: str | None  # the sweep's parent run (None when none was logged)
    tracking_uri: str
    output: str  # what the sweep printed (empty unless quiet)

    def decision(self) -> dict[str, Any] | None:
        return decision(self.parent_run_id, self.tracking_uri) if self.parent_run_id else None

    def runs(self) -> pd.DataFrame:
        return runs(self.parent_run_id, self.tracking_uri)


def tracking_uri(overrides: list[str] | None = None) -> str:
    """The tracking URI a sweep with these overrides logs to."""
    from pipeline.config import compose_config, to_config

    keep = [o for o in overrides or [] if not o.lstrip("+~").startswith(("sweep=", "hydra"))]
    return to_config(compose_config(keep)).tracking.resolved_uri()


def _client(uri: str | None):
    from pipeline.decision import mlflow_io

    return mlflow_io.client(uri or tracking_uri())


def _parent(c, parent: str | None) -> str:
    from pipeline.decision import mlflow_io

    return parent or mlflow_io.latest_parent(c)


def run_sweep(name: str, overrides: list[str] | None = None, cwd: str | Path | None = None, quiet: bool = False) -> SweepResult:
    """Run ``conf/sweep/<name>.yaml`` with Hydra ``overrides``; wait for its end (and its decision)."""
    overrides = list(overrides or [])
    uri = tracking_uri(overrides)
    c = _client(uri)
    before = _latest_or_none(c)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))}
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", f"+sweep={name}", *overrides], cwd=cwd or ROOT, env=env, text=True, capture_output=quiet
    )
    after = _latest_or_none(c)
    return SweepResult(
        name=name,
        exit_code=proc.returncode,
        parent_run_id=after if after != before else None,
        tracking_uri=uri,
        output=(proc.stdout or "") + (proc.stderr or "") if quiet else "",
    )


def _latest_or_none(c) -> str | None:
    from pipeline.decision import DecideError, mlflow_io

    try:
        return mlflow_io.latest_parent(c)
    except DecideError:
        return None


def decision(parent: str | None = None, tracking_uri: str | None = None) -> dict[str, Any] | None:
    """The decision of record of a sweep (default: the latest), as ``decision.json`` holds it:
    ``verdict``, ``recommendation``, ``caveats``, ``winner``, ``ranking``, ``robustness``...;
    None when the sweep has not been decided yet (``python -m pipeline.decide`` decides it)."""
    c = _client(tracking_uri)
    run_id = _parent(c, parent)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            return json.loads(Path(c.download_artifacts(run_id, "decision/decision.json", tmp)).read_text())
        except Exception:  # no such artifact (MLflow raises its own types), or not JSON
            return None


def runs(parent: str | None = None, tracking_uri: str | None = None) -> pd.DataFrame:
    """A sweep's jobs (default: the latest sweep), one row each, as the decision reads them:
    ``label``, ``status`` (ok, skipped, failed, unfinished), ``reason``, the params and every metric."""
    from pipeline.decision import mlflow_io

    c = _client(tracking_uri)
    return mlflow_io.load_children(c, _parent(c, parent))
