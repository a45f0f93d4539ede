"""The names a run logs, as MLflow and Hydra users expect them (no tracking server needed here;
tests/test_mlflow_conventions.py checks the same through a real server's REST API)."""

from __future__ import annotations

import subprocess

import pandas as pd
from conftest import ROOT

from pipeline.config import compose_config, to_config
from pipeline.decision import from_search_runs, run_row, runs_frame
from pipeline.tracking import context, names, track


def test_params_are_logged_under_their_hydra_keys():
    cfg = to_config(compose_config(["bench.batch_size=32", "provider.threads=2", "pooling=cls"]))
    params = track.job_params(cfg)
    assert params["bench.batch_size"] == "32" and params["provider.threads"] == "2" and params["pooling"] == "cls"
    assert params["model"] == "all-MiniLM-L6-v2" and params["variant"] == "fp32" and params["provider"] == "cpu"
    # the benchmark settings tell a smoke run from a full one
    for key in (
        "bench.warmup",
        "bench.iterations",
        "bench.max_seconds",
        "bench.passes",
        "bench.contention.retries",
        "model.max_length",
        "provider.graph_optimization_level",
        "quality.split",
    ):
        assert key in params, key
    assert params["provider.mem_arena"] == "true"  # as a Hydra override writes it
    assert params["provider.disabled_optimizers"] == "null" and params["variant.disable_fusions"] == "[]"
    # the short names of before are gone, and nothing about tracking or the decision profile
    assert not {"batch_size", "threads", "max_length"} & set(params)
    assert not [k for k in params if k.startswith(("tracking.", "decision.", "hydra."))]
    assert len(params) <= 100  # one log_batch call
    assert all(len(v) <= names.MAX_PARAM_VALUE for v in params.values())


def test_settings_that_do_not_apply_are_no_params():
    latency = track.job_params(to_config(compose_config(["variant=int8_dynamic"])))
    assert latency["variant.quantization"] == "dynamic" and "variant.per_channel" in latency
    assert not [k for k in latency if k.startswith(("variant.calibration_", "bench.load."))]
    static = track.job_params(to_config(compose_config(["variant=int8_static", "bench.scenario=load"])))
    assert static["variant.calibration_method"] == "minmax" and "variant.calibration_samples" in static
    assert "bench.load.max_batch" in static and "bench.load.rates" in static
    plain = track.job_params(to_config(compose_config([])))
    assert not [k for k in plain if k in track.QUANTIZE_ONLY or k.startswith(("variant.calibration_", "bench.load."))]


def test_the_decision_reads_new_and_old_param_names_alike():
    new = run_row(
        run_id="a",
        status="ok",
        params={
            "model": "m",
            "variant": "fp32",
            "provider": "cpu",
            "pooling": "mean",
            "bench.batch_size": "8",
            "provider.threads": "2",
            "model.max_length": "128",
            "bench.scenario": "latency",
            "bench.load.max_batch": "1",
        },
    )
    old = run_row(
        run_id="b",
        status="ok",
        params={
            "model": "m",
            "variant": "fp32",
            "provider": "cpu",
            "pooling": "mean",
            "batch_size": "8",
            "threads": "2",
            "max_length": "128",
        },
    )
    for row in (new, old):
        assert (row["batch_size"], row["threads"], row["max_length"]) == ("8", "2", "128")
        assert "serve.max_batch" not in row  # the serving front belongs to load runs only
    load = run_row(
        run_id="c",
        status="ok",
        params={"bench.scenario": "load", "bench.load.max_batch": "16", "bench.load.max_wait_ms": "2.0", "bench.load.workers": "1"},
    )
    assert load["scenario"] == "load" and load["serve.max_batch"] == "16" and load["serve.max_wait_ms"] == "2.0"
    frame = runs_frame([new])
    assert frame["label"].iloc[0] == "m/fp32/cpu/mean/b8"


def test_a_search_runs_frame_is_the_decisions_frame():
    found = pd.DataFrame(
        [
            {
                "run_id": "r1",
                "status": "FINISHED",
                "start_time": pd.Timestamp("2026-01-01", tz="UTC"),
                "params.model": "m",
                "params.variant": "fp32",
                "params.provider": "cpu",
                "params.pooling": "mean",
                "params.bench.batch_size": "4",
                "metrics.latency.p95_ms": 3.5,
                "tags.status": "ok",
                "tags.mlflow.runName": "b4 · m",
            },
            {
                "run_id": "r2",
                "status": "FINISHED",
                "start_time": pd.Timestamp("2026-01-02", tz="UTC"),
                "params.model": "m",
                "params.variant": "fp32",
                "params.provider": "cuda",
                "params.pooling": "mean",
                "params.bench.batch_size": "4",
                "metrics.latency.p95_ms": float("nan"),
                "tags.status": "skipped",
                "tags.reason": "no CUDA",
                "tags.mlflow.runName": "[skipped] cuda · m",
            },
        ]
    )
    frame = from_search_runs(found)
    assert list(frame["run_id"]) == ["r1", "r2"] and list(frame["status"]) == ["ok", "skipped"]
    assert frame.loc[0, "latency.p95_ms"] == 3.5 and frame.loc[0, "batch_size"] == "4"
    assert frame.loc[1, "reason"] == "no CUDA" and frame.loc[0, "run_name"] == "b4 · m"


def test_run_names_lead_with_what_the_sweep_varies_and_say_skipped():
    params = {"provider": "cuda", "bench.batch_size": "8", "model": "m"}
    tags = {"sweep.varies": "provider,bench.batch_size", "hydra.overrides": "provider=cuda bench.batch_size=8 model.name=m"}
    assert names.display_name("m-fp32-cuda-mean-b8", params, tags, "ok") == "cuda b8 · m-fp32-cuda-mean-b8"
    assert names.display_name("m-fp32-cuda-mean-b8", params, tags, "skipped").startswith("[skipped] cuda b8 · ")
    assert names.display_name("m-fp32-cuda-mean-b8", params, {}, "failed") == "[failed] m-fp32-cuda-mean-b8"
    # a config group added with + (a candidate) and a field without a short form
    tags = {
        "sweep.varies": "+candidate,provider.graph_optimization_level",
        "hydra.overrides": "+candidate=minilm-int8 provider.graph_optimization_level=basic",
    }
    assert names.display_name("x", {}, tags, "ok") == "minilm-int8 graph_optimization_level=basic · x"


def test_system_tags_name_who_what_where():
    tags = context.system_tags()
    for key in (
        "mlflow.user",
        "mlflow.source.name",
        "mlflow.source.type",
        "env.cpu_model",
        "env.cores",
        "env.os",
        "env.python",
        "env.onnxruntime",
        "env.optimum",
        "env.transformers",
        "env.torch",
    ):
        assert tags.get(key), key
    import onnxruntime

    assert tags["env.onnxruntime"] == onnxruntime.__version__
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    if head.returncode == 0:  # a git checkout: the commit of the code that ran
        assert tags["mlflow.source.git.commit"] == head.stdout.strip()
        assert tags["git.dirty"] in ("true", "false")


def test_a_configuration_has_one_label_in_its_run_name_and_in_the_decision():
    for overrides in (
        [],
        ["variant=int8_dynamic", "pooling=cls", "bench.batch_size=8"],
        ["bench.scenario=load", "+serve=mb16_w0", "provider.threads=2"],
    ):
        cfg = to_config(compose_config(overrides))
        label = names.config_label(cfg)
        row = run_row(run_id="r", status="ok", params=track.job_params(cfg))
        assert runs_frame([row])["label"].iloc[0] == label, overrides
        assert names.display_name(label, track.job_params(cfg), {}, "ok") == label
