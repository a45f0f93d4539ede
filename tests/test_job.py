"""One job end to end on the tiny model: every stage, the logged run, the caches."""

from __future__ import annotations

import mlflow
import pytest
from conftest import tiny_overrides
from mlflow.tracking import MlflowClient

from pipeline.config import to_config
from pipeline.job.run import execute

DESIGN_METRICS = [
    "latency.p50_ms",
    "latency.p90_ms",
    "latency.p95_ms",
    "latency.p99_ms",
    "latency.mean_ms",
    "latency.std_ms",
    "throughput.sentences_per_s",
    "load.session_s",
    "load.first_call_ms",
    "memory.peak_rss_mb",
    "model.size_mb",
    "quality.stsb_spearman",
    "quality.sim_high",
    "quality.sim_low",
    "quality.separation",
    "quality.l2_norm_max_dev",
    "parity.min_cosine",
]
# the config groups by name, the rest under their Hydra keys (design.md "Names every run logs")
DESIGN_PARAMS = [
    "model",
    "variant",
    "provider",
    "pooling",
    "bench.batch_size",
    "model.max_length",
    "provider.threads",
    "bench.warmup",
    "bench.iterations",
    "bench.max_seconds",
    "bench.passes",
    "provider.graph_optimization_level",
]


def _run(compose, tiny_bert, tiny_sts_dir, tmp_path, *extra):
    dcfg = compose(tiny_overrides(tiny_bert, tiny_sts_dir, tmp_path) + list(extra))
    cfg = to_config(dcfg)
    return execute(cfg, dcfg, tmp_path / "out"), cfg


@pytest.mark.parametrize("pooling", ["mean", "cls", "max", "last_token"])
def test_job_logs_every_design_name(compose, tiny_bert, tiny_sts_dir, tmp_path, pooling):
    result, cfg = _run(compose, tiny_bert, tiny_sts_dir, tmp_path, f"pooling={pooling}", "bench.batch_size=4")
    assert result.status == "ok"
    mlflow.set_tracking_uri(cfg.tracking.resolved_uri())
    run = MlflowClient().get_run(result.run_id)
    for name in DESIGN_METRICS:
        assert name in run.data.metrics, name
    for name in DESIGN_PARAMS:
        assert name in run.data.params, name
    assert run.data.params["pooling"] == pooling
    assert run.data.params["bench.batch_size"] == "4"  # under its Hydra key
    assert run.data.tags["status"] == "ok"
    # the ONNX path pooled the same way as the PyTorch reference
    assert run.data.metrics["parity.min_cosine"] > 0.9999
    assert abs(run.data.metrics["quality.l2_norm_max_dev"]) < 1e-4
    assert run.data.metrics["latency.p50_ms"] <= run.data.metrics["latency.p95_ms"] <= run.data.metrics["latency.p99_ms"]
    if "roofline_fraction" in run.data.metrics:
        assert 0 < run.data.metrics["roofline_fraction"] < 1.5
    else:  # the machine's peak is never taken on a busy machine: the run says why it has none
        assert "roofline: matmul peak not measured on a quiet machine" in run.data.tags["bench.notes"]
    # the conditions of the measurement travel with the run
    for name in (
        "conditions.other_cpu_share",
        "conditions.load_before",
        "conditions.involuntary_cs_per_s",
        "conditions.pass_spread",
        "bench.contended",
        "bench.attempts",
    ):
        assert name in run.data.metrics, name
    assert run.data.tags["bench.contended"] == "false" or run.data.metrics["bench.contended"] == 1.0
    assert run.data.tags["conditions.cpu_model"]
    artifacts = {a.path for a in MlflowClient().list_artifacts(result.run_id)}
    assert {"config.yaml", "validation.json", "latency_samples_ns.csv", "latency.png"} <= artifacts
    # the timed calls ran as passes over the same batches: throughput is the best pass
    m = run.data.metrics
    assert m["bench.passes"] == cfg.bench.passes == 3
    assert m["bench.iterations"] % m["bench.passes"] == 0
    assert m["throughput.sentences_per_s"] >= m["throughput.mean_sentences_per_s"] > 0


def test_second_job_reuses_export_and_quality(compose, tiny_bert, tiny_sts_dir, tmp_path):
    first, cfg = _run(compose, tiny_bert, tiny_sts_dir, tmp_path)
    second, _ = _run(compose, tiny_bert, tiny_sts_dir, tmp_path, "bench.batch_size=2")
    client = MlflowClient(cfg.tracking.resolved_uri())
    r1, r2 = client.get_run(first.run_id), client.get_run(second.run_id)
    assert r1.data.tags["export.cached"] == "false"
    assert r2.data.tags["export.cached"] == "true"
    assert r2.data.tags["quality.cached"] == "true"
    assert r1.data.metrics["export.seconds"] > 0
    assert "export.seconds" not in r2.data.metrics  # cached: export.cached says so, no 0 s figure
    assert r1.data.metrics["quality.stsb_spearman"] == r2.data.metrics["quality.stsb_spearman"]


def test_corrupted_cached_export_is_rebuilt(compose, tiny_bert, tiny_sts_dir, tmp_path, caplog):
    first, cfg = _run(compose, tiny_bert, tiny_sts_dir, tmp_path)
    onnx_files = list((tmp_path / "cache" / "exports").glob("*/model.onnx"))
    assert len(onnx_files) == 1
    data = onnx_files[0].read_bytes()
    onnx_files[0].write_bytes(data[: len(data) // 2])  # truncated
    with caplog.at_level("WARNING", logger="pipeline.model.export"):
        second, _ = _run(compose, tiny_bert, tiny_sts_dir, tmp_path)
    assert f"model.onnx has {len(data) // 2} bytes, manifest says {len(data)}" in caplog.text
    assert "is not trusted" in caplog.text and "rebuilding it" in caplog.text
    run = MlflowClient(cfg.tracking.resolved_uri()).get_run(second.run_id)
    assert second.status == "ok"
    assert run.data.tags["export.cached"] == "false"
    assert onnx_files[0].stat().st_size == len(data)
