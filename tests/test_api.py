"""pipeline.api: a sweep run from Python, its decision and its runs, on the tiny model."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import tiny_overrides

from pipeline import api


def test_run_a_sweep_read_its_decision_and_its_runs(tiny_bert, tiny_sts_dir, tmp_path):
    overrides = [
        *tiny_overrides(tiny_bert, tiny_sts_dir, tmp_path),
        "bench.iterations=10",
        "bench.max_seconds=1",
        f"hydra.sweep.dir={tmp_path}/multirun",
    ]
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert api.tracking_uri(overrides) == uri
    result = api.run_sweep("smoke", overrides, cwd=tmp_path, quiet=True)
    assert result.exit_code == 0, result.output[-3000:]
    assert result.parent_run_id and result.tracking_uri == uri
    assert f"mlflow ui --backend-store-uri {uri}" in result.output  # the sweep end says how to look at its runs

    runs = api.runs(result.parent_run_id, uri)
    assert isinstance(runs, pd.DataFrame)
    assert sorted(runs["status"]) == ["ok", "ok", "skipped", "skipped"]  # CPU at batch 1 and 8; CUDA skipped here
    assert {"label", "reason", "latency.p95_ms", "batch_size"} <= set(runs.columns)
    assert api.runs(tracking_uri=uri)["run_id"].tolist() == runs["run_id"].tolist()  # the latest sweep by default

    decided = api.decision(result.parent_run_id, uri)
    assert decided == result.decision() == api.decision(tracking_uri=uri)
    assert decided["parent_run_id"] == result.parent_run_id and decided["verdict"] in ("go", "close", "no-go")
    ok_labels = set(runs.loc[runs["status"] == "ok", "label"])
    assert {r["label"] for r in decided["ranking"]} == ok_labels


def test_a_store_without_sweeps_is_refused(tmp_path):
    from pipeline.decision import DecideError

    uri = f"sqlite:///{tmp_path}/empty.db"
    with pytest.raises(DecideError, match="no sweep"):
        api.runs(tracking_uri=uri)
