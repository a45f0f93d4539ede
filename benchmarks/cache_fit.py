"""Does single-sentence latency grow with the layers, or jump when the weights leave the cache?

    python benchmarks/cache_fit.py [--variant O2_cpu] [--threads 2] [--tokens 2,14]

One sentence per call keeps only a few rows of activations, so a call mostly reads weights.
This cuts the configured model's graph after its first k transformer layers (k = 1 .. all),
times one call of a few token counts on each cut, and prints the fp32 bytes of matrix weights
each cut reads beside this machine's last-level cache size.  Latency that grows faster than the
layers once the weights outgrow the cache says the single-sentence path is bound by memory
bandwidth, not by the embedder's own work.

The last line printed is one JSON object.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
import harness  # noqa: E402  (benchmarks/harness.py: what the benchmark scripts share)


def last_level_cache_bytes() -> int | None:
    best = None
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            level = int((index / "level").read_text())
            text = (index / "size").read_text().strip()
        except (OSError, ValueError):
            continue
        size = int(text[:-1]) * {"K": 1024, "M": 1024**2}[text[-1]] if text[-1] in "KM" else int(text)
        if best is None or level > best[0]:
            best = (level, size)
    return best[1] if best else None


def cut_after(model, layers: int):
    """A copy of ``model`` whose output is the hidden state after ``layers`` layers."""
    import onnx
    from onnx import TensorProto, helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    norms = [n.output[0] for n in m.graph.node if n.op_type in ("LayerNormalization", "SkipLayerNormalization")]
    target = norms[2 * layers]  # the embeddings' norm, then two per layer
    producer = {o: n for n in m.graph.node for o in n.output}
    keep: set[int] = set()
    stack = [target]
    while stack:
        node = producer.get(stack.pop())
        if node is None or id(node) in keep:
            continue
        keep.add(id(node))
        stack.extend(node.input)
    nodes = [n for n in m.graph.node if id(n) in keep]
    used = {i for n in nodes for i in n.input}
    inits = [i for i in m.graph.initializer if i.name in used]
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    del m.graph.initializer[:]
    m.graph.initializer.extend(inits)
    del m.graph.output[:]
    m.graph.output.append(helper.make_tensor_value_info(target, TensorProto.FLOAT, None))
    vocab = max((i.dims[0] for i in inits if len(i.dims) == 2), default=0)
    weight_bytes = sum(int(np.prod(i.dims)) * 4 for i in inits if len(i.dims) == 2 and i.dims[0] != vocab)
    return m, weight_bytes


def main(argv=None) -> int:
    ap = harness.parser(__doc__, threads=2)
    ap.add_argument("--variant", default="O2_cpu")
    ap.add_argument("--tokens", default="2,14")
    ap.add_argument("--calls", type=int, default=300)
    args = ap.parse_args(argv)

    import onnx
    import onnxruntime as ort

    from pipeline.embedder.embed import SLOW_FUSIONS, session_options

    cfg, _, art = harness.load_artifact(args.variant)
    model = onnx.load(str(art.onnx_path))
    layers = int(json.loads((art.folder / "config.json").read_text())["num_hidden_layers"])
    tokens = [int(t) for t in args.tokens.split(",")]
    rows = []
    for k in sorted({1, max(1, layers // 2), layers}):
        cut, weight_bytes = cut_after(model, k)
        sess = ort.InferenceSession(
            cut.SerializeToString(),
            session_options(args.threads),
            providers=["CPUExecutionProvider"],
            disabled_optimizers=list(SLOW_FUSIONS["CPUExecutionProvider"]),
        )
        names = {i.name for i in sess.get_inputs()}
        row = {"layers": k, "weight_mb": weight_bytes / 1e6}
        for n in tokens:
            feed = {
                "input_ids": np.full((1, n), 1000, np.int64),
                "attention_mask": np.ones((1, n), np.int64),
                "token_type_ids": np.zeros((1, n), np.int64),
            }
            feed = {key: v for key, v in feed.items() if key in names}
            for _ in range(30):
                sess.run(None, feed)
            samples = []
            for _ in range(args.calls):
                t = time.perf_counter_ns()
                sess.run(None, feed)
                samples.append(time.perf_counter_ns() - t)
            row[f"ms_{n}_tokens"] = float(np.median(samples)) / 1e6
        rows.append(row)
        print(
            f"{k} layer(s): {row['weight_mb']:.1f} MB of weights, "
            + ", ".join(f"{n} tokens {row[f'ms_{n}_tokens']:.3f} ms" for n in tokens)
        )
    llc = last_level_cache_bytes()
    first, last = rows[0], rows[-1]
    out = {
        "model": cfg.model.name,
        "variant": args.variant,
        "threads": args.threads,
        "last_level_cache_mb": llc / 1e6 if llc else None,
        "rows": rows,
        # 1.0: latency grows in step with the layers; above 1: each layer costs more once the
        # weights no longer fit the cache
        "per_layer_cost_growth": {
            f"{n}_tokens": (last[f"ms_{n}_tokens"] / last["layers"]) / (first[f"ms_{n}_tokens"] / first["layers"]) for n in tokens
        },
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
