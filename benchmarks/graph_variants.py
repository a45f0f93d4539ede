"""Other graphs of the same model that might close the gaps of peers_best.py: a probe, interleaved in one process.

    python benchmarks/graph_variants.py            # ~8 min on 2 cores (the graphs are built once); last line: JSON

The gaps: our fp32 corpus throughput against CTranslate2's, and our int8 single call against
Optimum on the same int8 file.  Each candidate is a graph any user of Optimum or ONNX Runtime can
make with their documented tools, from our fp32 export:

- fp32, against O2_cpu: Optimum's O3 (the tanh approximation of GELU, ``enable_gelu_approximation``),
  O2 with ``use_multi_head_attention`` (the Q, K and V products as plain MatMuls and a
  MultiHeadAttention node, instead of one Attention node that does them per head), both together,
  and O2 with the embedding LayerNorm fused (``disable_embed_layer_norm_fusion=False``); all keep
  our SkipLayerNorm fusions off;
- int8, against int8_dynamic: our quantization recipe on the O3, MultiHeadAttention and
  embedding-LayerNorm graphs (the parameters of int8_dynamic, through ONNX Runtime's
  ``quantize_dynamic``, which Optimum's ``ORTQuantizer`` wraps: on the MultiHeadAttention graph the
  wrapper stops, as shape inference cannot type that node's neighbours, and only the bare call takes
  the ``DefaultTensorType`` it asks for), and ONNX Runtime's 8-bit block-wise ``MatMulNBits``
  (``MatMulNBitsQuantizer``, block 32, symmetric, accuracy level 4: int8 compute) on O2_cpu, where
  the ``onnx_ir`` package it needs is installed (the project does not install it).

Our embedder runs each graph (same texts, threads, pooling); each group is timed in turn, round after
round, the order rotated (``session_settings.rotation``), on the single-sentence p50 and the corpus
throughput at batch 32.  A candidate's ratio to its group's base is the median of its per-round
ratios (``session_settings.paired``: below 1 a faster single call, above 1 a faster corpus), and its
max cosine distance to the base's vectors of the STS test sentences says how far its numbers moved.
A lead, not a product figure: a graph that wins here becomes a variant and is measured by
peers_best.py.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import harness
from session_settings import conditions, corpus_per_s, embedder, paired, rotation, single_p50_ms

O2_CPU_OFF = {"disable_skip_layer_norm_fusion": True, "disable_bias_skip_layer_norm_fusion": True}
FP32 = {  # name -> Optimum optimization level and options (the base is O2_cpu, our export)
    "O3_cpu": ("O3", {}),
    "O2_cpu-mha": ("O2", {"use_multi_head_attention": True}),
    "O3_cpu-mha": ("O3", {"use_multi_head_attention": True}),
    "O2_cpu-embed_ln": ("O2", {"disable_embed_layer_norm_fusion": False}),
}
INT8 = {
    "int8-of-O3_cpu": "O3_cpu",
    "int8-of-O2_cpu-mha": "O2_cpu-mha",
    "int8-of-O2_cpu-embed_ln": "O2_cpu-embed_ln",
    "matmulnbits8-of-O2_cpu": None,
}
GROUPS = {"fp32": ("O2_cpu", list(FP32)), "int8": ("int8_dynamic", list(INT8))}


def _folder(src: Path, out: Path, graph: Path) -> Path:
    """``out`` with ``graph`` as model.onnx and ``src``'s tokenizer and config files beside it."""
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file() and f.suffix != ".onnx" and not f.name.endswith(".onnx_data"):
            shutil.copy2(f, tmp / f.name)
    shutil.move(str(graph), tmp / "model.onnx")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def build(name: str, fp32_dir: Path, o2_dir: Path, root: Path, work: Path) -> Path:
    """The folder of candidate ``name`` (made once under ``root``)."""
    out = root / name
    if (out / "model.onnx").is_file():
        return out
    if name in FP32:
        from optimum.onnxruntime import ORTOptimizer
        from optimum.onnxruntime.configuration import AutoOptimizationConfig

        level, extra = FP32[name]
        cfg = AutoOptimizationConfig.with_optimization_level(level, **O2_CPU_OFF, **extra)
        ORTOptimizer.from_pretrained(fp32_dir, file_names=["model.onnx"]).optimize(cfg, save_dir=work / name)
        return _folder(fp32_dir, out, work / name / "model_optimized.onnx")
    if INT8[name] is None:  # MatMulNBits, 8 bits, on O2_cpu
        import onnx
        from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

        q = MatMulNBitsQuantizer(
            onnx.load(str(o2_dir / "model.onnx")),
            algo_config=DefaultWeightOnlyQuantConfig(block_size=32, is_symmetric=True, accuracy_level=4, bits=8),
        )
        q.process()
        q.model.save_model_to_file(str(work / f"{name}.onnx"), False)
        return _folder(o2_dir, out, work / f"{name}.onnx")
    from onnxruntime.quantization import quantize_dynamic

    from pipeline.model.variants import quantization_config

    qc = quantization_config(harness.load_artifact("int8_dynamic")[0].variant, "avx512_vnni")  # our recipe's parameters
    src = build(INT8[name], fp32_dir, o2_dir, root, work)
    quantize_dynamic(
        src / "model.onnx",
        work / f"{name}.onnx",
        op_types_to_quantize=[getattr(o, "value", o) for o in qc.operators_to_quantize],
        per_channel=qc.per_channel,
        reduce_range=qc.reduce_range,
        weight_type=qc.weights_dtype,
        # shape inference cannot type the inputs of a MultiHeadAttention node's neighbours: Optimum's
        # ORTQuantizer stops there; this names their type (float), as ONNX Runtime's error suggests
        extra_options={"WeightSymmetric": qc.weights_symmetric, "ActivationSymmetric": qc.activations_symmetric, "DefaultTensorType": 1},
    )
    return _folder(src, out, work / f"{name}.onnx")


def main(argv=None) -> int:
    p = harness.parser(__doc__, threads=2, rounds=8, lock_wait_s=600)
    p.add_argument("--single", type=int, default=100, help="sentences timed one at a time per round")
    p.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/<cpu-slug>/graph_variants.json")
    a = p.parse_args(argv)
    import tempfile

    from peerstats import results_path

    from pipeline.config import QualityConfig
    from pipeline.core.machine import cpu_model
    from pipeline.core.machine_lock import MachineLock
    from pipeline.data.sts import load_sts
    from pipeline.measure.signals import Mark

    cfg, _, fp32_art = harness.load_artifact("fp32")
    o2 = harness.load_artifact("O2_cpu")[2]
    root = Path(cfg.cache_dir).resolve() / "peers" / "graph_variants"
    folders, skipped = {"O2_cpu": o2.folder, "int8_dynamic": harness.load_artifact("int8_dynamic")[2].folder}, {}
    with tempfile.TemporaryDirectory() as work:
        for name in [*FP32, *INT8]:
            try:
                folders[name] = build(name, fp32_art.folder, o2.folder, root, Path(work))
            except ImportError as exc:  # MatMulNBitsQuantizer needs onnx_ir, which the project does not install
                skipped[name] = f"{type(exc).__name__}: {exc}"
    sents = list(load_sts(QualityConfig(split="test")).unique_sentences)
    result = {
        "benchmark": "graph_variants",
        "cpu_model": cpu_model(),
        "threads": a.threads,
        "rounds": a.rounds,
        "groups": GROUPS,
        "skipped": skipped,
    }
    with MachineLock(a.lock_wait_s, "graph variants") as lock:
        before, t0 = Mark.now(), time.time()
        for group, (base, names) in GROUPS.items():
            names = [base] + [n for n in names if n in folders]
            embs = {n: embedder(folders[n], "model.onnx", a.threads, {}) for n in names}
            ref = embs[base](sents, 32)
            drift = {n: float(1 - (embs[n](sents, 32) * ref).sum(axis=1).min()) for n in names}
            single, corpus = {n: [] for n in names}, {n: [] for n in names}
            for r in range(a.rounds):
                for n in rotation(names, r):
                    single[n].append(single_p50_ms(embs[n], sents, a.single))
                    corpus[n].append(corpus_per_s(embs[n], sents))
            result[group] = {
                "base": base,
                "single_p50_ms": paired(single, base),
                "corpus_sentences_per_s": paired(corpus, base),
                "max_cosine_distance_to_base": drift,
            }
            del embs
        result["conditions"] = conditions(before, t0, lock)
    result["date"] = harness.utc_now()
    result["versions"] = harness.versions(("onnxruntime", "optimum-onnx", "optimum", "onnx-ir", "numpy"))
    out = a.out or results_path(result["cpu_model"], "graph_variants.json")
    harness.write_result(out, result)
    print(
        json.dumps(
            {
                "out": str(out),
                **{
                    g: {w: {n: v["ratio_to_base"] for n, v in result[g][w].items()} for w in ("single_p50_ms", "corpus_sentences_per_s")}
                    for g in GROUPS
                },
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
