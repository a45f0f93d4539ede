"""Execution providers from their own builds (pipeline/runtime/providers.py, pipeline/runtime/worker.py).

Offline: a provider environment made from a wheel built here (inheriting this environment's
onnxruntime), a provider whose package pip cannot install, and a provider that onnxruntime
accepts but that runs none of the nodes (a real fallback, not a mock).  The real builds
(onnxruntime-openvino, onnxruntime-ggml) are exercised by test_provider_builds.py (marker
provider_builds: they download from PyPI once into a cache).
"""

from __future__ import annotations

import inspect
import json

import pytest
from conftest import tiny_overrides
from mlflow.tracking import MlflowClient
from test_envs import make_wheel

from pipeline.config import to_config
from pipeline.embedder.embed import Embedder
from pipeline.embedder.spec import EmbedderSpec
from pipeline.job.run import execute
from pipeline.runtime import providers


def _run(compose, tiny_bert, tiny_sts_dir, tmp_path, *extra):
    dcfg = compose(tiny_overrides(tiny_bert, tiny_sts_dir, tmp_path) + list(extra))
    cfg = to_config(dcfg)
    return execute(cfg, dcfg, tmp_path / "out"), cfg


def _run_data(cfg, result):
    return MlflowClient(cfg.tracking.resolved_uri()).get_run(result.run_id).data


def test_embedder_spec_mirrors_the_embedders_constructor():
    params = inspect.signature(Embedder.__init__).parameters
    names = [n for n in params if n != "self"]
    fields = [f for f in EmbedderSpec.__dataclass_fields__]
    assert fields == names  # same keywords, same order: a new option cannot be forgotten in one of them
    for name in names[1:]:
        default = params[name].default
        spec_default = EmbedderSpec("m").to_dict()[name]
        assert spec_default == (list(default) if isinstance(default, tuple) else default) or (default is None and spec_default in ({},)), (
            name
        )


def test_an_embedder_spec_survives_json_and_refuses_unknown_fields():
    spec = EmbedderSpec(
        "m",
        provider_options={"load_config": {"CPU": {"INFERENCE_PRECISION_HINT": "bf16"}}},
        disabled_optimizers=["SkipLayerNormFusion"],
        session_config={"session.intra_op.allow_spinning": 0},
    )
    back = EmbedderSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert back == spec and back.disabled_optimizers == ("SkipLayerNormFusion",)
    assert back.session_config == {"session.intra_op.allow_spinning": "0"}
    with pytest.raises(TypeError, match="unknown field"):
        EmbedderSpec.from_dict({"model_dir": "m", "threds": 2})


def test_a_provider_environment_is_made_offline_and_the_job_runs_in_it(compose, tiny_bert, tiny_sts_dir, tmp_path):
    """A provider naming packages gets its own environment (here a wheel made offline, seeing this
    environment's onnxruntime after its own packages); its node assignment, parity, quality and
    benchmark all run in processes of that environment."""
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "tinyort", "0.3")
    result, cfg = _run(
        compose,
        tiny_bert,
        tiny_sts_dir,
        tmp_path,
        "provider.name=cpu_env",
        "provider.packages=['tinyort==0.3']",
        f"provider.pip_args=['--no-index','--find-links','{wheels}']",
        "provider.inherit=true",
        "bench.batch_size=2",
    )
    assert result.status == "ok", result.reason
    data = _run_data(cfg, result)
    tags, m = data.tags, data.metrics
    assert tags["runtime.env"].startswith("tinyort-") and tags["runtime.packages"] == "tinyort==0.3"
    assert (tmp_path / "cache" / "envs" / tags["runtime.env"] / "pipeline-env.json").is_file()  # cached under cache_dir/envs
    import onnxruntime

    assert tags["runtime.onnxruntime"] == onnxruntime.__version__
    assert m["provider.node_share"] == 1.0 and tags["provider.assignment_source"] == "graph_assignment_info"
    assert m["parity.min_cosine"] > 0.9999
    assert abs(m["quality.stsb_delta_vs_fp32"]) < 1e-6  # judged against fp32 on this environment's CPU provider
    assert data.params["precision"] == "fp32"
    runtime = json.loads((result.record / "runtime.json").read_text())
    assert runtime["versions"]["tinyort"] == "0.3"
    spec = json.loads((result.record / "bench_spec.json").read_text())
    assert spec["runtime"]["python"].startswith(str(tmp_path / "cache" / "envs"))  # the benchmark ran there, and re-timing will
    assert m["latency.p50_ms"] > 0 and m["throughput.sentences_per_s"] > 0


def test_a_provider_whose_package_cannot_be_installed_is_skipped_with_pips_reason(compose, tiny_bert, tiny_sts_dir, tmp_path):
    result, cfg = _run(
        compose,
        tiny_bert,
        tiny_sts_dir,
        tmp_path,
        "provider.name=absent",
        "provider.ep=NoSuchExecutionProvider",
        "provider.packages=['onnxruntime-no-such-build==9.9']",
        "provider.pip_args=['--no-index']",
    )
    assert result.status == "skipped"
    assert "NoSuchExecutionProvider (absent): its environment could not be made" in result.reason
    assert "onnxruntime-no-such-build" in result.reason and "failed" in result.reason  # pip's own words
    assert "latency.p50_ms" not in _run_data(cfg, result).metrics  # nothing measured in its place


def test_a_provider_for_another_platform_or_missing_hardware_is_skipped_before_any_environment(compose, tiny_bert, tiny_sts_dir, tmp_path):
    result, _ = _run(compose, tiny_bert, tiny_sts_dir, tmp_path, "provider=directml")
    assert result.status == "skipped" and "for win32 only; this machine is linux" in result.reason
    p = to_config(compose(["provider=cuda"])).provider
    if providers.prerequisite_problem(p):  # no NVIDIA GPU here
        result, _ = _run(compose, tiny_bert, tiny_sts_dir, tmp_path, "provider=cuda")
        assert result.status == "skipped" and "no NVIDIA GPU on this machine" in result.reason
    assert not (tmp_path / "cache" / "envs").exists()  # no environment was made for either


@pytest.mark.parametrize("own_env", [False, True], ids=["this-environment", "own-environment"])
def test_a_provider_that_runs_no_node_is_a_failure_not_a_cpu_run(compose, tiny_bert, tiny_sts_dir, tmp_path, own_env):
    """onnxruntime's CPU build has the Azure EP: a session asked for it says get_providers()[0] ==
    AzureExecutionProvider, yet every node runs on the CPU provider (a real fallback)."""
    extra = ["provider.name=azure", "provider.ep=AzureExecutionProvider"]
    if own_env:
        wheels = tmp_path / "wheels"
        make_wheel(wheels, "tinyort", "0.3")
        extra += [
            "provider.packages=['tinyort==0.3']",
            f"provider.pip_args=['--no-index','--find-links','{wheels}']",
            "provider.inherit=true",
        ]
    with pytest.raises(Exception, match="fallback: AzureExecutionProvider ran 0 of"):
        _run(compose, tiny_bert, tiny_sts_dir, tmp_path, *extra)
    from pipeline.tracking import records

    ((folder, rec),) = list(records.iter_records(tmp_path / "records"))
    assert rec.status == "failed" and "ProviderFallback" in rec.reason and "on CPUExecutionProvider" in rec.reason
    assert rec.metrics["provider.node_share"] == 0.0
    assert "latency.p50_ms" not in rec.metrics
