"""End to end on the real sentence-transformers/all-MiniLM-L6-v2 (installed from PyPI)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from conftest import ROOT
from test_job import DESIGN_METRICS, DESIGN_PARAMS

pytestmark = pytest.mark.real_model


def _pipeline(tmp_path, *overrides):
    db = tmp_path / "mlflow.db"
    proc = subprocess.run(
        [
            sys.executable, "-m", "pipeline",
            f"tracking.uri=sqlite:///{db}",
            f"tracking.artifact_location={tmp_path}/artifacts",
            f"cache_dir={tmp_path}/cache",
            "bench.max_seconds=3",
            *overrides,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{db}")
    runs = client.search_runs(client.search_experiments()[0].experiment_id, order_by=["attributes.start_time DESC"])
    return runs[0]


def test_default_job_on_the_real_model(tmp_path):
    run = _pipeline(tmp_path)
    m = run.data.metrics
    assert run.data.tags["status"] == "ok"
    for name in DESIGN_METRICS:
        assert name in m, name
    for name in DESIGN_PARAMS:
        assert name in run.data.params, name
    # published MTEB figure for all-MiniLM-L6-v2 on the STSb test split: 82.03
    assert m["quality.stsb_spearman"] == pytest.approx(82.03, abs=0.05)
    assert m["parity.min_cosine"] >= 0.9999
    assert m["quality.separation"] == pytest.approx(0.567, abs=0.01)
    assert m["quality.l2_norm_max_dev"] < 1e-4

    # the same model with CLS pooling: a real job, and a worse STS number than mean pooling
    cls = _pipeline(tmp_path, "pooling=cls")
    assert cls.data.tags["status"] == "ok"
    assert cls.data.tags["export.cached"] == "true"
    assert cls.data.metrics["quality.stsb_spearman"] < m["quality.stsb_spearman"]
