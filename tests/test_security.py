"""Security: code inside a model folder never runs unless model.trust_remote_code says so;
secrets from the environment never reach logged params, tags or artifacts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, tiny_overrides
from mlflow.tracking import MlflowClient

from pipeline.config import to_config
from pipeline.job.run import execute
from pipeline.tracking.track import redact

EVIL = """
import pathlib
pathlib.Path({marker!r}).write_text("remote code ran")
from transformers import BertConfig, BertModel


class EvilConfig(BertConfig):
    model_type = "bert"


class EvilModel(BertModel):
    config_class = EvilConfig
"""


@pytest.fixture
def model_with_remote_code(tiny_bert, tmp_path) -> tuple[Path, Path]:
    """The tiny BERT whose config points AutoConfig/AutoModel at code shipped in the folder."""
    folder = tmp_path / "remote-code-model"
    shutil.copytree(tiny_bert, folder)
    marker = tmp_path / "REMOTE_CODE_RAN"
    (folder / "evil.py").write_text(EVIL.format(marker=str(marker)))
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModel": "evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(config))
    return folder, marker


@pytest.mark.parametrize("variant", ["fp32", "int8_dynamic"])
def test_code_in_a_model_folder_is_never_run_by_default(compose, model_with_remote_code, tiny_sts_dir, tmp_path, variant):
    folder, marker = model_with_remote_code
    dcfg = compose(tiny_overrides(folder, tiny_sts_dir, tmp_path) + [f"variant={variant}"])
    cfg = to_config(dcfg)
    assert cfg.model.trust_remote_code is False
    # every load path: Optimum export, the variant's Optimum loaders, the sentence-transformers
    # parity reference, the tokenizer, the benchmark subprocess
    result = execute(cfg, dcfg)
    assert result.status == "ok", result.reason
    assert "parity.min_cosine" in result.metrics and "latency.p50_ms" in result.metrics
    assert not marker.exists(), "code shipped in the model folder was executed"


def test_redact_masks_url_credentials_and_secret_variables(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_abcdefghijklmnop")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "pa55word-xyz")
    text = "uri=https://alice:pa55word-xyz@mlflow.example.com/ token hf_abcdefghijklmnop ok"
    out = redact(text)
    assert "pa55word-xyz" not in out and "hf_abcdefghijklmnop" not in out and "alice" not in out
    assert "https://***@mlflow.example.com/" in out and out.endswith("ok")


def _all_logged_text(client: MlflowClient, tmp: Path) -> str:
    """Every param, tag, run name and artifact file of every run in the store, as text."""
    exp = client.get_experiment_by_name("embedding-pipeline")
    parts = []
    for run in client.search_runs([exp.experiment_id], max_results=1000):
        parts += [json.dumps(run.data.params), json.dumps(run.data.tags), run.info.run_name or ""]
        dest = tmp / "downloaded" / run.info.run_id
        dest.mkdir(parents=True)
        client.download_artifacts(run.info.run_id, "", str(dest))
        for f in dest.rglob("*"):
            if f.is_file():
                parts.append(f.read_bytes().decode("utf-8", "replace"))
    return "\n".join(parts)


def test_no_secret_from_the_environment_is_logged(tiny_bert, tiny_sts_dir, tmp_path):
    """A sweep whose overrides carry a secret (a token pasted into a config value): the parent's
    params, jobs.json, each job's config.yaml, params, tags and artifacts hold none of it."""
    secret = "tok-9f8e7d6c5b4a"
    env = {**os.environ, "MY_SERVICE_API_TOKEN": secret, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    args = [
        "-m",
        *tiny_overrides(tiny_bert, tiny_sts_dir, tmp_path),
        "bench.batch_size=1,2",
        f"model.hub_id=org/{secret}",
        "bench.iterations=10",
        "bench.max_seconds=1",
    ]
    proc = subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    logged = _all_logged_text(client, tmp_path)
    assert "jobs.json" in str(list((tmp_path / "downloaded").rglob("jobs.json")))
    assert "org/***" in logged  # the value was there, masked
    assert secret not in logged
    # and none in the local records that sync would log later
    for f in (tmp_path / "records").rglob("*"):
        if f.is_file():
            assert secret not in f.read_bytes().decode("utf-8", "replace"), f


def test_the_same_folder_runs_its_code_only_when_the_config_says_so(compose, model_with_remote_code, tiny_sts_dir, tmp_path):
    """The control for the test above: the folder's code is real and runs once it is trusted."""
    folder, marker = model_with_remote_code
    dcfg = compose(tiny_overrides(folder, tiny_sts_dir, tmp_path) + ["model.trust_remote_code=true"])
    execute(to_config(dcfg), dcfg)
    assert marker.read_text() == "remote code ran"
