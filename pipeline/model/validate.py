"""Validate stage: the graph's structure, and parity with the PyTorch reference."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from pipeline.embedder.embed import l2_normalize, pool

# sentences for the parity check: short and long, punctuation, digits, non-ASCII
PARITY_SENTENCES = [
    "A man is playing a guitar.",
    "The quick brown fox jumps over the lazy dog.",
    "Embeddings map text to vectors so that similar meanings end up close together.",
    "How do I reset my password if I no longer have access to my email account?",
    "It rained all day, so the match was postponed until next Tuesday at 3 pm.",
    "Café prices rose 12% in 2024 — mostly because of coffee bean costs.",
    "A child is riding a horse.",
    "Stocks fell sharply after the central bank raised interest rates again.",
    "The patient was given 5 mg of the drug twice daily for two weeks.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "Two dogs are running through a field of tall grass.",
    "Please send the quarterly report to the finance team by Friday.",
    "",
    "ok",
    "This sentence is deliberately long: " + "it keeps going with more words, " * 30 + "and then it ends.",
    "Ein Mann spielt Gitarre.",
]

_DTYPES = {1: "float32", 10: "float16", 11: "float64", 3: "int8", 2: "uint8", 7: "int64", 6: "int32", 16: "bfloat16"}


@dataclass
class StructureReport:
    inputs: dict[str, list]
    outputs: dict[str, list]
    opset: int
    vocab_size: int | None
    hidden_size: int | None
    num_layers: int | None
    dtype: str  # the dominant dtype of the weights
    dtype_counts: dict[str, int]
    size_mb: float
    node_count: int
    op_counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def _dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def structure(onnx_path: str | Path, model_config: dict | None = None) -> StructureReport:
    """Read the graph (without its weights' data) and describe it."""
    import onnx

    onnx_path = Path(onnx_path)
    m = onnx.load(str(onnx_path), load_external_data=False)
    g = m.graph
    init_names = {i.name for i in g.initializer}
    inputs = {i.name: _dims(i) for i in g.input if i.name not in init_names}
    outputs = {o.name: _dims(o) for o in g.output}
    opset = max((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), default=0)
    dtype_bytes: Counter = Counter()
    dtype_counts: Counter = Counter()
    vocab = hidden = None
    for t in g.initializer:
        n = int(np.prod(t.dims)) if t.dims else 1
        name = _DTYPES.get(t.data_type, str(t.data_type))
        dtype_counts[name] += 1
        dtype_bytes[name] += n
        if len(t.dims) == 2 and ("word_embeddings" in t.name or "embed_tokens" in t.name):
            vocab, hidden = int(t.dims[0]), int(t.dims[1])
    notes = []
    cfg = model_config or {}
    if vocab is None and "vocab_size" in cfg:
        vocab = int(cfg["vocab_size"])
        notes.append("vocab_size taken from config.json")
    if hidden is None:
        for k in ("hidden_size", "d_model"):
            if k in cfg:
                hidden = int(cfg[k])
                notes.append(f"hidden_size taken from config.json ({k})")
                break
    layers = cfg.get("num_hidden_layers")
    if layers is None:
        # count the attention-output LayerNorms / Attention nodes as a proxy
        ops = Counter(n.op_type for n in g.node)
        layers = ops.get("Attention") or ops.get("MultiHeadAttention") or None
        if layers:
            notes.append("num_layers counted from attention nodes")
    op_counts = Counter(n.op_type for n in g.node)
    size = sum(p.stat().st_size for p in onnx_path.parent.glob(onnx_path.name + "*"))
    size += sum(p.stat().st_size for p in onnx_path.parent.glob("*.onnx_data"))
    return StructureReport(
        inputs=inputs,
        outputs=outputs,
        opset=int(opset),
        vocab_size=vocab,
        hidden_size=hidden,
        num_layers=int(layers) if layers else None,
        dtype=dtype_bytes.most_common(1)[0][0] if dtype_bytes else "unknown",
        dtype_counts=dict(dtype_counts),
        size_mb=size / 1e6,
        node_count=len(g.node),
        op_counts=dict(op_counts.most_common()),
        notes=notes,
    )


def reference_embeddings(
    model_folder: str | Path, sentences: list[str], pooling: str, native_pooling: str, max_length: int, trust_remote_code: bool = False
) -> np.ndarray:
    """Unit vectors from the PyTorch sentence-transformers model, pooled as asked.

    When ``pooling`` is the model's own, this is sentence-transformers' own output; for
    other poolings the reference token states are pooled with the same rule.
    """
    import torch
    from sentence_transformers import SentenceTransformer

    # code shipped inside a model folder runs only when the model config says so explicitly
    model = SentenceTransformer(str(model_folder), device="cpu", local_files_only=True, trust_remote_code=trust_remote_code)
    model.max_seq_length = max_length
    with torch.inference_mode():
        if pooling == native_pooling:
            vecs = model.encode(
                sentences, batch_size=len(sentences), convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False
            )  # no tqdm 'Batches:' bar in the terminal
            return np.asarray(vecs, dtype=np.float32)
        feats = model.tokenize(sentences)
        out = model[0]({k: v for k, v in feats.items()})
        hidden = out["token_embeddings"].numpy()
        mask = feats["attention_mask"].numpy()
    return l2_normalize(pool(hidden, mask, pooling).astype(np.float32))


def parity(ours: np.ndarray, reference: np.ndarray) -> float:
    """The lowest cosine between our vectors and the reference's, row by row."""
    a = ours / np.maximum(np.linalg.norm(ours, axis=1, keepdims=True), 1e-12)
    b = reference / np.maximum(np.linalg.norm(reference, axis=1, keepdims=True), 1e-12)
    return float((a * b).sum(axis=1).min())
