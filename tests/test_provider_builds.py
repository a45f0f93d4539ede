"""The execution providers this machine can run from their own onnxruntime builds, on the tiny model.

Marker provider_builds: the first run installs onnxruntime-openvino and onnxruntime-ggml from
PyPI (about a minute each) into $PIPELINE_ENVS_DIR, or .cache/pipeline/envs of the checkout, where
later runs find them; CI runs these tests too.  A plugin EP that offers no device here
(onnxruntime-ep-openvino on a non-Intel CPU) must be skipped with that reason.
"""

from __future__ import annotations

import json
import os

import pytest
from conftest import ROOT, tiny_overrides
from mlflow.tracking import MlflowClient

from pipeline.config import to_config
from pipeline.job.run import execute

pytestmark = pytest.mark.provider_builds


@pytest.fixture(scope="module", autouse=True)
def envs_dir():
    old = os.environ.get("PIPELINE_ENVS_DIR")
    os.environ["PIPELINE_ENVS_DIR"] = old or str(ROOT / ".cache" / "pipeline" / "envs")
    yield os.environ["PIPELINE_ENVS_DIR"]
    if old is None:
        del os.environ["PIPELINE_ENVS_DIR"]


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    return tmp_path_factory.mktemp("provider-builds")


def _run(compose, tiny_bert, tiny_sts_dir, tmp, provider):
    dcfg = compose(tiny_overrides(tiny_bert, tiny_sts_dir, tmp) + [f"provider={provider}", "bench.batch_size=2"])
    cfg = to_config(dcfg)
    result = execute(cfg, dcfg, tmp / f"out-{provider}")
    data = MlflowClient(cfg.tracking.resolved_uri()).get_run(result.run_id).data if result.run_id else None
    return result, data


@pytest.mark.parametrize(
    "provider,precision,dist",
    [("openvino", "fp32", "onnxruntime-openvino"), ("openvino_bf16", "bf16", "onnxruntime-openvino"), ("ggml", "fp32", "onnxruntime-ggml")],
)
def test_a_provider_from_its_own_build_runs_every_node_and_says_its_versions(
    compose, tiny_bert, tiny_sts_dir, shared, provider, precision, dist
):
    result, data = _run(compose, tiny_bert, tiny_sts_dir, shared, provider)
    assert result.status == "ok", result.reason
    m, tags = data.metrics, data.tags
    assert m["provider.node_share"] == 1.0 and m["provider.nodes_total"] > 10
    assert tags["runtime.env"] != "main"
    dists = json.loads(tags["runtime.distributions"])
    assert dist in dists and tags["runtime.onnxruntime"] == dists.get("onnxruntime", dists.get("onnxruntime-openvino"))
    if provider.startswith("openvino"):
        assert tags["runtime.openvino"].startswith("20")  # the OpenVINO runtime inside the build
    assert data.params["precision"] == precision
    assert m["parity.min_cosine"] > (0.999 if precision == "bf16" else 0.9999)
    assert "quality.stsb_delta_vs_fp32" in m  # judged against the fp32 export on this environment's CPU provider
    assert m["latency.p50_ms"] > 0 and m["throughput.sentences_per_s"] > 0


def test_a_plugin_with_no_device_here_is_skipped_with_the_reason(compose, tiny_bert, tiny_sts_dir, shared):
    result, data = _run(compose, tiny_bert, tiny_sts_dir, shared, "openvino_plugin")
    with open("/proc/cpuinfo") as f:
        intel = "GenuineIntel" in f.read()
    if intel:  # an Intel CPU: the plugin offers it, and the row runs
        assert result.status == "ok", result.reason
        return
    assert result.status == "skipped"
    assert "no device: OpenVINOExecutionProvider registered but offers no device" in result.reason
    assert "serves Intel hardware only" in result.reason
