"""A job's workload (pipeline/measure/workload.py): its texts, the embedder that runs them, and what is
measured on them beyond the timings: parity against PyTorch on these texts, and for reduced
precisions the loss against the model's fp32 vectors (no labels needed)."""

from __future__ import annotations

import logging

import numpy as np

from pipeline.model import validate
from pipeline.measure import workload
from pipeline.embedder.spec import EmbedderSpec

log = logging.getLogger("pipeline.job.run")

PARITY_TEXTS = 32  # texts of the workload compared with PyTorch (spread over its lengths)
LOSS_TEXTS = 64  # texts compared with the fp32 model for a reduced precision


def prepare(cfg, artifact, spec: EmbedderSpec, sentences: list[str], limit: int | None, tags: dict):
    """(the workload, the embedder spec that runs it, its texts).  ``sentences``: the workload
    ``sentences`` unchanged (the spec keeps its query prefix).  Other workloads' texts carry their
    prefix, so the spec adds none, and its ``max_length`` covers the longest text (up to the model's
    positions, checked before: :func:`pipeline.measure.workload.check_limits`)."""
    wl = workload.build(cfg.workload, cfg.model, artifact.folder / "tokenizer.json", sentences, limit)
    tags.update(wl.tags())
    if not wl.prefixed:
        return wl, spec, wl.texts
    workload.check_shapes(artifact.onnx_path, wl, cfg.bench.batch_size)
    longest = wl.longest() or 0
    run_spec = spec.replace(prefix="", max_length=max(spec.max_length or 0, longest) or None)
    if longest > cfg.model.max_length:
        tags["workload.max_length"] = str(run_spec.max_length)
        log.info("workload %s: texts of up to %d tokens: the embedder keeps %d (model.max_length %d)",
                 wl.name, longest, run_spec.max_length, cfg.model.max_length)
    return wl, run_spec, wl.texts


def spread(texts: list[str], n: int) -> list[str]:
    """At most ``n`` of ``texts``, evenly spaced (every part and length represented)."""
    if len(texts) <= n:
        return list(texts)
    idx = np.linspace(0, len(texts) - 1, n).round().astype(int)
    return [texts[i] for i in dict.fromkeys(idx.tolist())]


def parity(cfg, reference, wl, embed, max_length: int, native_pooling: str) -> float:
    """The lowest cosine between this embedder's vectors and PyTorch's, on the workload's own
    texts (they carry their prefix, the reference gets the same strings)."""
    texts = spread(wl.texts, PARITY_TEXTS)
    ref = validate.reference_embeddings(reference.folder, texts, cfg.pooling.mode, native_pooling, max_length,
                                        trust_remote_code=cfg.model.trust_remote_code)
    return validate.parity(embed(texts), ref)


def loss_vs_fp32(ours: np.ndarray, fp32: np.ndarray) -> dict[str, float]:
    """How far reduced-precision vectors are from the fp32 model's, without labels: the cosine of
    each text's two vectors (min, mean), and the rank agreement (Spearman) of all text-to-text
    similarities against fp32's."""
    from scipy.stats import spearmanr

    a = ours / np.maximum(np.linalg.norm(ours, axis=1, keepdims=True), 1e-12)
    b = fp32 / np.maximum(np.linalg.norm(fp32, axis=1, keepdims=True), 1e-12)
    cos = (a * b).sum(axis=1)
    iu = np.triu_indices(len(a), k=1)
    rho = spearmanr((a @ a.T)[iu], (b @ b.T)[iu]).statistic if len(iu[0]) > 1 else float("nan")
    return {"cosine_to_fp32_min": float(cos.min()), "cosine_to_fp32_mean": float(cos.mean()),
            "rank_agreement_vs_fp32": float(rho)}


def measure(cfg, reference, native_pooling: str, wl, run_spec: EmbedderSpec, embed, artifact, metrics: dict, tags: dict) -> None:
    """Parity on the workload's texts (workloads other than ``sentences``: those have theirs from
    the parity sentences) and, for a reduced precision, the loss against the fp32 export."""
    if wl.prefixed:
        if reference is not None:
            metrics["parity.workload_min_cosine"] = parity(cfg, reference, wl, embed, run_spec.max_length, native_pooling)
        else:
            tags["parity.workload_unavailable"] = tags.get("parity.unavailable", "no PyTorch reference")
    base = artifact.base
    if cfg.precision() == "fp32" or base is None:
        return
    base_spec = EmbedderSpec.from_config(cfg, base).replace(
        prefix=run_spec.prefix, max_length=run_spec.max_length, provider="CPUExecutionProvider", provider_options={},
        session_config={}, plugin=None, disabled_optimizers=None)
    texts = spread(wl.texts, LOSS_TEXTS)
    got = loss_vs_fp32(embed(texts), base_spec.build().embed(texts))
    metrics.update({f"workload.{k}": v for k, v in got.items()})
