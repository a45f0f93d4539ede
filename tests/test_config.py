"""Configuration: every group composes; bad configs fail before any work, naming the field."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CONF_DIR, ROOT

from pipeline.config import ConfigError, compose_config, to_config

GROUPS = ["model", "variant", "provider", "pooling", "bench", "quality", "tracking"]


def test_default_config_composes(compose):
    cfg = to_config(compose())
    assert cfg.model.name == "all-MiniLM-L6-v2"
    assert cfg.pooling.mode == "mean"
    assert cfg.bench.batch_size >= 1


@pytest.mark.parametrize("group", GROUPS)
def test_every_option_of_every_group_composes(compose, group, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")  # tracking=shared reads it
    options = sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
    assert options, group
    for option in options:
        dcfg = compose([f"{group}={option}"])
        try:
            to_config(dcfg)
        except ConfigError as exc:  # only a model whose local folder is absent here may refuse
            assert group == "model" and "model.path" in str(exc), exc


@pytest.mark.parametrize(
    "override,field,allowed",
    [
        ("bench.batch_size=0", "bench.batch_size", "> 0"),
        ("bench.batch_size=-4", "bench.batch_size", "> 0"),
        ("pooling.mode=sum", "pooling.mode", "mean, cls, max, last_token"),
        ("model.source=ftp", "model.source", "package, local, hub"),
        ("provider.threads=-1", "provider.threads", ">= 0"),
        ("model.sha256=abc", "model.sha256", "64 hex digits"),
        ("provider.call_cost=-1", "provider.call_cost", ">= 0"),
        ("variant.disable_fusions=[skip_layer_nrom]", "variant.disable_fusions", "skip_layer_norm, bias_skip_layer_norm"),
    ],
)
def test_bad_value_names_field_and_what_is_allowed(compose, override, field, allowed):
    with pytest.raises(ConfigError) as err:
        to_config(compose([override]))
    assert err.value.field == field
    assert allowed in str(err.value)


def test_missing_local_model_folder_is_refused(compose, tmp_path):
    with pytest.raises(ConfigError, match="does not exist") as err:
        to_config(compose(["model.source=local", f"model.path={tmp_path / 'nope'}"]))
    assert err.value.field == "model.path"


def _cli(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    db = tmp_path / "mlflow.db"
    return subprocess.run(
        [sys.executable, "-m", "pipeline", f"tracking.uri=sqlite:///{db}", f"cache_dir={tmp_path}/cache", *overrides],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _run_count(db: Path) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db) as con:
        try:
            return con.execute("select count(*) from runs").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


@pytest.mark.parametrize(
    "overrides,expect",
    [
        (["bench.batch_size=0"], "bench.batch_size: got 0, must be > 0"),
        (["model=does_not_exist"], "Could not find 'model/does_not_exist'"),
        (["pooling=sum"], "Could not find 'pooling/sum'"),
        (["model.sha256=" + "0" * 64], "model.sha256"),
        (["bench.batch_size=abc"], "bench.batch_size"),
    ],
)
def test_cli_refuses_bad_config_without_logging_a_run(tmp_path, overrides, expect):
    proc = _cli(tmp_path, *overrides)
    assert proc.returncode != 0
    assert expect in proc.stderr + proc.stdout
    assert _run_count(tmp_path / "mlflow.db") == 0
    assert not (tmp_path / "cache").exists()  # no work was done


def test_readme_and_ci_run_the_same_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    command = ".venv/bin/python -m pytest"
    assert command in readme and command in ci


def test_every_candidate_composes_to_its_model_and_variant(compose):
    """conf/candidate/*: one model, one variant and the model's own pooling convention."""
    for path in sorted((CONF_DIR / "candidate").glob("*.yaml")):
        cfg = to_config(compose([f"+candidate={path.stem}"]))
        assert (CONF_DIR / "model").joinpath(f"{cfg.model.name}.yaml").is_file(), path.stem
        assert cfg.pooling.mode == cfg.model.native_pooling, path.stem


def test_an_imported_int8_onnx_file_is_logged_as_int8():
    assert to_config(compose_config(["+candidate=minilm-int8-onnx"])).precision() == "int8"
    assert to_config(compose_config([])).precision() == "fp32"
    assert to_config(compose_config(["variant=int8_dynamic"])).precision() == "int8"
    assert to_config(compose_config(["provider=openvino_bf16"])).precision() == "bf16"
