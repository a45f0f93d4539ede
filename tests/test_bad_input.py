"""Bad input gives a clear error and leaves nothing that passes for a real result.

(Other cases live beside their stage: bad config values in test_config.py, malformed STS
lines in test_quality.py, odd texts in test_embed.py, a corrupted ONNX cache entry in
test_job.py, wrong weights in test_config.py / test_sweep.py.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, tiny_overrides
from mlflow.tracking import MlflowClient

from pipeline.config import to_config
from pipeline.data.sts import DataError
from pipeline.job.run import execute
from pipeline.tracking import records


def _cli(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            *args,
            f"tracking.uri=sqlite:///{tmp}/mlflow.db",
            f"records_dir={tmp}/records",
            f"cache_dir={tmp}/cache",
        ],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _nothing_happened(tmp: Path) -> None:
    assert not (tmp / "mlflow.db").exists()  # no store, no run
    assert not list((tmp / "records").glob("*/record.json")) if (tmp / "records").exists() else True
    assert not (tmp / "cache").exists()  # no work


def test_a_sweep_naming_an_option_that_does_not_exist_is_refused_before_any_job(tmp_path):
    proc = _cli(tmp_path, "-m", "model=all-MiniLM-L6-v2,nope")
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "config error: sweep job 2/2 (model=nope" in proc.stderr
    assert "Could not find 'model/nope'" in proc.stderr and "all-MiniLM-L6-v2" in proc.stderr  # the options there are
    assert "job 1/2" not in proc.stdout  # the good job did not run either
    _nothing_happened(tmp_path)


def test_a_bad_value_in_a_sweep_fails_its_job_in_one_line(tmp_path):
    """The other jobs still run and are decided on (test_sweep.py); the bad one says why in one
    line, as a single job does, and its traceback stays in its record."""
    proc = _cli(tmp_path, "-m", "bench.batch_size=0")
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "job 1: ConfigError: config error: bench.batch_size: got 0, must be > 0" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_an_unknown_sweep_config_is_refused(tmp_path):
    proc = _cli(tmp_path, "+sweep=does_not_exist")
    assert proc.returncode != 0
    assert "Could not find 'sweep/does_not_exist'" in proc.stderr and "smoke" in proc.stderr
    _nothing_happened(tmp_path)


def _job(compose, tiny_bert, tiny_sts_dir, tmp_path, *extra):
    dcfg = compose(tiny_overrides(tiny_bert, tiny_sts_dir, tmp_path) + list(extra))
    return to_config(dcfg), dcfg


def _only_record(tmp: Path) -> records.RunRecord:
    (rec,) = [r for _, r in records.iter_records(tmp / "records")]
    return rec


def test_a_model_package_that_is_not_installed_is_skipped_with_the_pip_command(compose, tiny_bert, tiny_sts_dir, tmp_path):
    cfg, dcfg = _job(compose, tiny_bert, tiny_sts_dir, tmp_path, "model.source=package", "model.package=no_such_model_pkg")
    result = execute(cfg, dcfg)
    assert result.status == "skipped"
    assert "Python package 'no_such_model_pkg' is not installed (pip install no-such-model-pkg" in result.reason
    run = MlflowClient(cfg.tracking.resolved_uri()).get_run(result.run_id)
    assert run.data.tags["status"] == "skipped" and run.data.tags["reason"] == result.reason
    assert not any(k.startswith(("latency.", "quality.", "parity.")) for k in run.data.metrics)  # nothing measured
    assert not (tmp_path / "cache" / "exports").exists()
    assert _only_record(tmp_path).status == "skipped"


@pytest.mark.parametrize(
    "content,message",
    [
        (None, "stsb-en-test.csv does not exist (set quality.data_dir or PIPELINE_DATA_DIR)"),
        ("a dog,a cat,1.0\na man,two people\n", "stsb-en-test.csv:2: expected 3 columns (sentence1,sentence2,score), got 2"),
        ("a dog,a cat,1.0\na man,two people,lots\n", "stsb-en-test.csv:2: score 'lots' is not a number"),
    ],
)
def test_a_missing_or_malformed_data_file_fails_the_job_naming_file_and_line(compose, tiny_bert, tmp_path, content, message):
    data = tmp_path / "data"
    (data / "stsb").mkdir(parents=True)
    if content is not None:
        (data / "stsb" / "stsb-en-test.csv").write_text(content)
    cfg, dcfg = _job(compose, tiny_bert, data, tmp_path, "quality.source=local")
    with pytest.raises(DataError) as err:
        execute(cfg, dcfg)
    assert message in str(err.value) and str(data / "stsb") in str(err.value)
    rec = _only_record(tmp_path)
    assert rec.status == "failed" and message in rec.reason
    client = MlflowClient(cfg.tracking.resolved_uri())
    run = client.get_run(rec.mlflow_run_id)
    assert run.info.status == "FAILED" and run.data.tags["status"] == "failed"
    assert not any(k.startswith(("latency.", "quality.")) for k in run.data.metrics)  # no partial result
    assert not (tmp_path / "cache" / "quality").exists()  # nothing cached as if it were a score
