"""Is a fused ONNX Runtime node faster than the plain nodes it replaces, on this provider?

    python benchmarks/fusions.py [--threads 2] [--hidden 384] [--rows 480] [--calls 500]

ORTOptimizer and ONNX Runtime's own load-time optimizers fuse a residual Add and its
LayerNormalization into one SkipLayerNormalization node (with the bias of the matrix product
before it, when there is one).  This times each form alone, on the CPU provider, for a
(1, rows, hidden) activation: the fused node, the fused node with a bias, and Add (+ Add) +
LayerNormalization.  ``pipeline.embedder.embed.SLOW_FUSIONS`` and the ``O2_cpu`` variant leave the
fusion out because of what this measures; rerun it after an onnxruntime upgrade.

The last line printed is one JSON object: microseconds per call for each form and the ratio
fused / plain.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402  (benchmarks/harness.py: what the benchmark scripts share)


def _model(kind: str, hidden: int) -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(hidden).astype(np.float32), n) for n in ("gamma", "beta", "bias")]
    dims = ["batch", "seq", hidden]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims), helper.make_tensor_value_info("skip", TensorProto.FLOAT, dims)]
    if kind == "fused":
        nodes = [helper.make_node("SkipLayerNormalization", ["x", "skip", "gamma", "beta"], ["y"], domain="com.microsoft", epsilon=1e-12)]
    elif kind == "fused+bias":
        nodes = [
            helper.make_node("SkipLayerNormalization", ["x", "skip", "gamma", "beta", "bias"], ["y"], domain="com.microsoft", epsilon=1e-12)
        ]
    elif kind == "plain":
        nodes = [
            helper.make_node("Add", ["x", "skip"], ["s"]),
            helper.make_node("LayerNormalization", ["s", "gamma", "beta"], ["y"], axis=-1, epsilon=1e-12),
        ]
    elif kind == "plain+bias":
        nodes = [
            helper.make_node("Add", ["x", "bias"], ["xb"]),
            helper.make_node("Add", ["xb", "skip"], ["s"]),
            helper.make_node("LayerNormalization", ["s", "gamma", "beta"], ["y"], axis=-1, epsilon=1e-12),
        ]
    else:
        raise ValueError(kind)
    graph = helper.make_graph(nodes, kind, inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)], initializer=inits)
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets).SerializeToString()


def time_kind(kind: str, hidden: int, rows: int, calls: int, threads: int) -> float:
    """Median microseconds per call (optimizers off, so the graph runs as written)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3  # the unused bias initializer of the no-bias forms
    sess = ort.InferenceSession(_model(kind, hidden), so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    feed = {"x": rng.standard_normal((1, rows, hidden), dtype=np.float32), "skip": rng.standard_normal((1, rows, hidden), dtype=np.float32)}
    for _ in range(max(10, calls // 10)):
        sess.run(None, feed)
    samples = []
    for _ in range(calls):
        t = time.perf_counter_ns()
        sess.run(None, feed)
        samples.append(time.perf_counter_ns() - t)
    return float(np.median(samples)) / 1e3


def main(argv=None) -> int:
    ap = harness.parser(__doc__, threads=2)
    ap.add_argument("--hidden", type=int, default=384, help="hidden size (384: all-MiniLM-L6-v2)")
    ap.add_argument("--rows", type=int, default=480, help="tokens in the activation (480: 32 sentences of 15 tokens)")
    ap.add_argument("--calls", type=int, default=500)
    args = ap.parse_args(argv)
    us = {k: time_kind(k, args.hidden, args.rows, args.calls, args.threads) for k in ("fused", "plain", "fused+bias", "plain+bias")}
    for k, v in us.items():
        print(f"{k:<11} {v:9.1f} us/call")
    out = {
        "threads": args.threads,
        "hidden": args.hidden,
        "rows": args.rows,
        "us_per_call": us,
        "skip_layer_norm_fused_over_plain": us["fused"] / us["plain"],
        "skip_layer_norm_bias_fused_over_plain": us["fused+bias"] / us["plain+bias"],
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
