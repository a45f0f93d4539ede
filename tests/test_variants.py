"""Export variants on the tiny BERT: built from the fp32 export, cached, and what they claim to be."""

from __future__ import annotations

import shutil
from collections import Counter

import numpy as np
import onnx
import pytest
from conftest import tiny_overrides
from mlflow.tracking import MlflowClient

from pipeline.config import to_config
from pipeline.embedder.embed import Embedder
from pipeline.job.run import execute, prepare
from pipeline.model import export, variants
from pipeline.model.sources import resolve
from pipeline.model.validate import PARITY_SENTENCES


def _cfg(compose, tiny_bert, data_dir, tmp_path, *extra):
    dcfg = compose(tiny_overrides(tiny_bert, data_dir, tmp_path) + list(extra))
    return to_config(dcfg), dcfg


def _build(compose, tiny_bert, data_dir, tmp_path, variant, *extra):
    cfg, _ = _cfg(compose, tiny_bert, data_dir, tmp_path, f"variant={variant}", *extra)
    resolved = resolve(cfg.model)
    return export.export(resolved, cfg.model, cfg.variant, cfg.cache_dir, cfg.quality)


def _ops(art) -> Counter:
    return Counter(n.op_type for n in onnx.load(str(art.onnx_path)).graph.node)


def _embed(art, texts=PARITY_SENTENCES[:8]):
    return Embedder(art.folder, output_name=art.output_name, max_length=64).embed(texts)


def test_instruction_set_follows_the_cpu_unless_configured():
    flags = variants.cpu_flags()
    chosen = variants.choose_instruction_set("auto")
    assert chosen in ("avx512_vnni", "avx512", "avx2", "arm64")
    if "avx512_vnni" in flags:
        assert chosen == "avx512_vnni"
    assert variants.choose_instruction_set("avx2") == "avx2"


def test_int8_dynamic_is_quantized_cached_and_close(compose, tiny_bert, tiny_sts_dir, tmp_path):
    art = _build(compose, tiny_bert, tiny_sts_dir, tmp_path, "int8_dynamic")
    assert not art.cached and art.base is not None and art.base.variant == "fp32"
    assert art.key != art.base.key
    ops = _ops(art)
    assert ops["MatMulInteger"] > 0 and ops["DynamicQuantizeLinear"] > 0
    assert (art.folder / "tokenizer.json").is_file()
    assert art.info["instruction_set"] == variants.choose_instruction_set("auto")
    again = _build(compose, tiny_bert, tiny_sts_dir, tmp_path, "int8_dynamic")
    assert again.cached and again.key == art.key and again.seconds == 0.0
    cos = (_embed(art) * _embed(art.base)).sum(axis=1)
    assert cos.min() > 0.9
    # another instruction set is another cache entry
    other = _build(compose, tiny_bert, tiny_sts_dir, tmp_path, "int8_dynamic", "variant.instruction_set=arm64")
    assert other.key != art.key and not other.cached


def test_optimized_variant_matches_fp32(compose, tiny_bert, tiny_sts_dir, tmp_path):
    art = _build(compose, tiny_bert, tiny_sts_dir, tmp_path, "O2")
    ops = _ops(art)
    assert ops["Attention"] + ops["MultiHeadAttention"] + ops["SkipLayerNormalization"] > 0  # fused
    cos = (_embed(art) * _embed(art.base)).sum(axis=1)
    assert cos.min() > 0.9999


def test_cpu_o2_keeps_skip_layer_norm_apart_and_int8_builds_on_it(compose, tiny_bert, tiny_sts_dir, tmp_path):
    o2 = _build(compose, tiny_bert, tiny_sts_dir, tmp_path, "O2")
    o2_cpu = _build(compose, tiny_bert, tiny_sts_dir, tmp_path, "O2_cpu")
    ops = _ops(o2_cpu)
    assert ops["SkipLayerNormalization"] == 0 and ops["LayerNormalization"] > 0
    assert ops["Attention"] == _ops(o2)["Attention"] > 0  # the other O2 fusions are kept
    assert (_embed(o2_cpu) * _embed(o2_cpu.base)).sum(axis=1).min() > 0.9999
    # int8_dynamic quantizes that same graph (one cache entry, not a second optimization)
    int8 = _build(compose, tiny_bert, tiny_sts_dir, tmp_path, "int8_dynamic")
    assert int8.info["from"] == o2_cpu.key
    assert len(list((tmp_path / "cache" / "exports").glob(f"*-{o2_cpu.key}"))) == 1
    q = _ops(int8)
    assert q["QAttention"] > 0 and q["MatMulInteger"] > 0 and q["SkipLayerNormalization"] == 0


def test_fp16_variant_has_half_precision_weights(compose, tiny_bert, tiny_sts_dir, tmp_path):
    art = _build(compose, tiny_bert, tiny_sts_dir, tmp_path, "fp16")
    inits = onnx.load(str(art.onnx_path)).graph.initializer
    assert Counter(t.data_type for t in inits).most_common(1)[0][0] == onnx.TensorProto.FLOAT16


def test_static_int8_calibrates_on_dev_never_test(compose, tiny_bert, tiny_sts_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_sts_dir, data)
    art = _build(compose, tiny_bert, data, tmp_path, "int8_static", "variant.calibration_samples=16")
    assert _ops(art)["QuantizeLinear"] > 0
    assert "calibration_sha256" in art.info
    # a changed test split does not change the calibrated model ...
    with open(data / "stsb" / "stsb-en-test.csv", "a") as f:
        f.write("an extra test sentence,another one,2.5\n")
    assert _build(compose, tiny_bert, data, tmp_path, "int8_static", "variant.calibration_samples=16").key == art.key
    # ... a changed dev split does
    rows = (data / "stsb" / "stsb-en-dev.csv").read_text().splitlines()
    (data / "stsb" / "stsb-en-dev.csv").write_text("\n".join(["red dog,blue cat,1.0"] + rows) + "\n")
    assert _build(compose, tiny_bert, data, tmp_path, "int8_static", "variant.calibration_samples=16").key != art.key


@pytest.mark.parametrize("method", ["minmax", "percentiles"])
def test_static_int8_quantizes_only_weight_products(compose, tiny_bert, tiny_sts_dir, tmp_path, method):
    art = _build(
        compose, tiny_bert, tiny_sts_dir, tmp_path, "int8_static", "variant.calibration_samples=16", f"variant.calibration_method={method}"
    )
    graph = onnx.load(str(art.onnx_path)).graph
    inits = {i.name for i in graph.initializer}
    dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    matmuls = [n for n in graph.node if n.op_type == "MatMul"]
    assert not [n for n in matmuls if any(i in inits for i in n.input)]  # no fp32 weight is left
    assert [n for n in matmuls if any(i in dequantized for i in n.input)]  # they run quantized (QDQ) ...
    assert [n for n in matmuls if not any(i in dequantized or i in inits for i in n.input)]  # ... attention does not
    assert _ops(art)["QuantizeLinear"] > 0 and art.info["nodes_quantized"] > 0
    assert (_embed(art) * _embed(art.base)).sum(axis=1).min() > 0.9


@pytest.mark.parametrize("variant", ["O4", "fp16"])
def test_gpu_only_variant_on_cpu_is_skipped_with_reason(compose, tiny_bert, tiny_sts_dir, tmp_path, variant):
    cfg, dcfg = _cfg(compose, tiny_bert, tiny_sts_dir, tmp_path, f"variant={variant}")
    result = execute(cfg, dcfg, tmp_path / "out")
    assert result.status == "skipped"
    assert "CPUExecutionProvider" in result.reason and variant in result.reason
    run = MlflowClient(cfg.tracking.resolved_uri()).get_run(result.run_id)
    assert run.data.tags["status"] == "skipped"
    assert not list((tmp_path / "cache").glob("exports/*"))  # refused before any export


def test_int8_job_logs_parity_and_delta_vs_fp32(compose, tiny_bert, tiny_sts_dir, tmp_path):
    # the peaks are compared, not the machine's quietness: take them whatever the load
    quiet = "bench.contention.enabled=false"
    cfg, dcfg = _cfg(compose, tiny_bert, tiny_sts_dir, tmp_path, "variant=int8_dynamic", quiet)
    prepare(cfg)
    result = execute(cfg, dcfg, tmp_path / "out")
    assert result.status == "ok"
    m = result.metrics
    fp32_cfg, fp32_dcfg = _cfg(compose, tiny_bert, tiny_sts_dir, tmp_path, quiet)
    fp32 = execute(fp32_cfg, fp32_dcfg, tmp_path / "out32")
    assert fp32.metrics["quality.stsb_delta_vs_fp32"] == 0.0
    assert np.isclose(m["quality.stsb_delta_vs_fp32"], m["quality.stsb_spearman"] - fp32.metrics["quality.stsb_spearman"])
    assert 0.5 < m["parity.min_cosine"] <= 1.0 + 1e-6
    assert m["parity.min_cosine"] < fp32.metrics["parity.min_cosine"]
    # the int8 run's roofline is against the machine's integer matmul peak, not the fp32 one
    assert m["roofline.peak_gflops"] > fp32.metrics["roofline.peak_gflops"]
    assert 0 < m["roofline_fraction"] < 1.0
