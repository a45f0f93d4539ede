"""How close a configuration comes to what this machine can do.

``roofline_fraction`` = useful FLOP/s of the embed path (the model's forward-pass FLOPs for
the real, unpadded token counts, derived from its config) / this machine's measured
matrix-multiply peak at the same thread count, in the precision the graph's matrix products
run in: single precision for fp32 graphs, u8 x s8 integer products for int8 ones (whose peak
is about 3.5x higher here, so an int8 run is not shown above 1 against the fp32 peak).  The
peak is measured once per (machine, threads, precision) and cached.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from pipeline.core.cache import read_json_entry, write_json_entry
from pipeline.core.machine_lock import MachineLock
from pipeline.embedder.embed import session_options
from pipeline.measure import conditions


def model_flops(config: dict, lengths) -> float | None:
    """Forward-pass FLOPs of a BERT-style encoder (or decoder) for sequences of these lengths.

    Per layer and sequence of s tokens: 2*s*(4*h*h + 2*h*i) for the Q, K, V, O projections and
    the feed-forward block, plus 2*2*s*s*h for QK^T and attention x V.  Embedding lookups and
    norms are not counted.  None when the config lacks the sizes.
    """
    h = config.get("hidden_size")
    layers = config.get("num_hidden_layers")
    if not h or not layers:
        return None
    inter = config.get("intermediate_size") or 4 * h
    heads = config.get("num_attention_heads") or 1
    kv_heads = config.get("num_key_value_heads") or heads
    kv = h * kv_heads / heads  # grouped-query attention shrinks K and V
    s = np.asarray(list(lengths), dtype=np.float64)
    ffn_mats = 3 if config.get("model_type", "") in ("qwen2", "qwen3", "llama", "mistral") else 2
    dense = 2 * s * (2 * h * h + 2 * h * kv + ffn_mats * h * inter)
    attn = 2 * 2 * s * s * h
    return float(layers * (dense + attn).sum())


PRECISIONS = ("fp32", "int8")


def _matmul_session(n: int, precision: str, threads: int):
    import onnxruntime as ort
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    if precision == "int8":  # what dynamic int8 runs on: u8 activations x s8 weights
        node = helper.make_node("MatMulInteger", ["A", "B"], ["C"])
        types = (TensorProto.UINT8, TensorProto.INT8, TensorProto.INT32)
        feeds = {"A": rng.integers(0, 255, (n, n), dtype=np.uint8), "B": rng.integers(-127, 127, (n, n), dtype=np.int8)}
    else:
        node = helper.make_node("MatMul", ["A", "B"], ["C"])
        types = (TensorProto.FLOAT, TensorProto.FLOAT, TensorProto.FLOAT)
        feeds = {"A": rng.standard_normal((n, n), dtype=np.float32), "B": rng.standard_normal((n, n), dtype=np.float32)}
    graph = helper.make_graph(
        [node],
        "mm",
        [helper.make_tensor_value_info("A", types[0], [n, n]), helper.make_tensor_value_info("B", types[1], [n, n])],
        [helper.make_tensor_value_info("C", types[2], [n, n])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    return ort.InferenceSession(model.SerializeToString(), session_options(threads), providers=["CPUExecutionProvider"]), feeds


PEAK_BEATEN = 1.02  # a job achieving more than this times the cached peak has it measured again


def _measure_peak(threads: int, n: int = 1024, repeats: int = 24, precision: str = "fp32") -> dict:
    """Best GFLOP/s (int8: GOP/s) of an n x n x n matrix product on ONNX Runtime, and for fp32
    also numpy's BLAS; ``peak_gflops`` is the larger."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    sess, feeds = _matmul_session(n, precision, threads)
    flop = 2.0 * n**3
    best_ort = 0.0
    sess.run(None, feeds)  # not timed: the first call wakes the thread pool (8 timed calls read 106 for 192 GFLOP/s)
    for _ in range(repeats):
        t = time.perf_counter()
        sess.run(None, feeds)
        best_ort = max(best_ort, flop / (time.perf_counter() - t))
    best_np = 0.0
    if precision == "fp32":
        try:
            from threadpoolctl import threadpool_limits

            a, b = feeds["A"], feeds["B"]
            with threadpool_limits(threads or os.cpu_count()):
                a @ b
                for _ in range(repeats):
                    t = time.perf_counter()
                    a @ b
                    best_np = max(best_np, flop / (time.perf_counter() - t))
        except ImportError:  # pragma: no cover
            pass
    return {
        "precision": precision,
        "ort_gflops": best_ort / 1e9,
        "numpy_gflops": best_np / 1e9,
        "peak_gflops": max(best_ort, best_np) / 1e9,
    }


def matmul_peak(threads: int, cache_dir: str | Path | None = None, precision: str = "fp32", thresholds=None, refresh: bool = False) -> dict:
    """This machine's matrix-product peak at ``threads`` threads (0: all cores), cached per
    machine fingerprint, thread count and precision: for fp32 the best of ONNX Runtime's MatMul
    (MLAS, what the models run on) and numpy's BLAS in GFLOP/s; for int8 ONNX Runtime's
    MatMulInteger (u8 x s8, what dynamic int8 runs on) in GOP/s.

    The peak is a baseline every later ``roofline_fraction`` divides by, so it is measured under
    the machine lock and cached only from a quiet window: while other processes use the CPU it is
    measured again (the ``bench.contention`` retries); if the machine stays busy the result
    carries ``contended`` (the reason) and nothing is cached.  With detection off the peak is
    measured and used, never cached (nobody looked whether the machine was quiet).  A cached peak
    older than ``baseline_max_age_h`` is measured again, and so is one a quiet job has beaten
    (``refresh``: the caller achieved more than it, so it was read low).
    """

    th = conditions.Thresholds.of(thresholds)
    key = conditions.machine_key(threads) + ("" if precision == "fp32" else f"-{precision}")
    path = Path(cache_dir) / "machine" / f"matmul-peak-{key}.json" if cache_dir else None
    cached = None if refresh else _cached_peak(path, th.baseline_max_age_h)
    if cached is not None:
        return cached
    with MachineLock(th.wait_for_other_s if th.enabled else 0.0, "matmul peak") as lock:
        peak, window, reason = conditions.in_fresh_process("peak", threads, precision, th)
    reason = lock.contention or reason
    peak = {**peak, **conditions.machine(), "threads": threads, "other_cpu_share": window.other_cpu_share, "created": time.time()}
    if not th.enabled:
        return {**peak, "not_cached": "contention detection is off: a peak nobody checked for quiet is not kept"}
    if reason is not None:
        return {**peak, "contended": f"matmul peak not measured on a quiet machine: {reason}"}
    if path is not None:
        write_json_entry(path, peak)
    return peak


def _cached_peak(path: Path | None, max_age_h: float) -> dict | None:
    """A cached peak, unless it is missing, contended or older than ``max_age_h``."""

    def usable(cached: dict) -> dict | None:
        fresh = time.time() - float(cached.get("created", 0)) <= max_age_h * 3600
        return cached if "peak_gflops" in cached and not cached.get("contended") and fresh else None

    return read_json_entry(path, usable, "matmul peak") if path is not None else None


def for_benchmark(model_config, token_lengths, best_pass_s: float, threads: int, cache_dir, precision: str, th):
    """(achieved GFLOP/s, the machine's peak, why there is none): the peak only from a quiet machine."""
    flops = model_flops(model_config or {}, token_lengths)
    if flops is None:
        return None, None, None
    got = matmul_peak(threads, cache_dir, precision, th)
    if got.get("contended"):
        return None, None, got["contended"]
    achieved = flops / best_pass_s / 1e9
    if achieved > got["peak_gflops"] * PEAK_BEATEN:
        # a peak the model's own matrix products beat was read low (a slow moment, a short window):
        # it is measured again now, and the fraction is judged against the new one (still above 1: logged as is)
        again = matmul_peak(threads, cache_dir, precision, th, refresh=True)
        if again.get("contended"):
            return None, None, f"the cached peak ({got['peak_gflops']:.0f}) was beaten ({achieved:.0f}) and {again['contended']}"
        got = again
    return achieved, got["peak_gflops"], None
