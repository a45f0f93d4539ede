"""A job's workload (pipeline/measure/workload.py): its texts, the embedder that runs them, and what is
measured on them beyond the timings: parity against PyTorch on these texts, and for reduced
precisions the loss against the model's fp32 vectors (no labels needed)."""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np

from pipeline.embedder.spec import EmbedderSpec
from pipeline.job.checks import native_pooling
from pipeline.job.results import JobState, WorkloadRun
from pipeline.measure import workload
from pipeline.model import validate
from pipeline.runtime import providers

log = logging.getLogger("pipeline.job.run")

PARITY_TEXTS = 32  # texts of the workload compared with PyTorch (spread over its lengths)
LOSS_TEXTS = 64  # texts compared with the fp32 model for a reduced precision


def prepare(cfg, artifact, spec: EmbedderSpec, sentences: list[str], limit: int | None) -> WorkloadRun:
    """The workload, the embedder spec that runs it, and its texts.  ``sentences``: the workload
    ``sentences`` unchanged (the spec keeps its query prefix).  Other workloads' texts carry their
    prefix, so the spec adds none, and its ``max_length`` covers the longest text (up to the model's
    positions, checked before: :func:`pipeline.measure.workload.check_limits`)."""
    wl = workload.build(cfg.workload, cfg.model, artifact.folder / "tokenizer.json", sentences, limit)
    if not wl.prefixed:
        return WorkloadRun(wl, spec, wl.texts)
    workload.check_shapes(artifact.onnx_path, wl, cfg.bench.batch_size)
    longest = wl.longest() or 0
    run_spec = spec.replace(prefix="", max_length=max(spec.max_length or 0, longest) or None)
    widened = None
    if longest > cfg.model.max_length:
        widened = run_spec.max_length
        log.info(
            "workload %s: texts of up to %d tokens: the embedder keeps %d (model.max_length %d)",
            wl.name,
            longest,
            run_spec.max_length,
            cfg.model.max_length,
        )
    return WorkloadRun(wl, run_spec, wl.texts, widened_to=widened)


def run(state: JobState) -> WorkloadRun:
    """The job's workload: its texts and spec (:func:`prepare`), then what is measured on them
    (:func:`measure`) with the embedder that runs them.  Raises WorkloadRefused for a workload
    that cannot run here, or one with fewer texts than a batch."""
    cfg = state.cfg
    run_ = prepare(cfg, state.artifact, state.spec, state.sentences, state.positions)
    if cfg.bench.batch_size > len(run_.texts):
        raise workload.WorkloadRefused(
            f"bench.batch_size={cfg.bench.batch_size} is larger than the workload's {len(run_.texts)} texts (refused, not capped)"
        )
    rt = state.runtime
    if run_.spec == state.spec:
        embed = state.embedder.embed
    else:
        embed = (providers.RemoteEmbedder(rt, run_.spec) if rt.own else run_.spec.build()).embed
    return measure(cfg, state.reference, run_, embed, state.artifact, state.parity.unavailable or "no PyTorch reference")


def spread(texts: list[str], n: int) -> list[str]:
    """At most ``n`` of ``texts``, evenly spaced (every part and length represented)."""
    if len(texts) <= n:
        return list(texts)
    idx = np.linspace(0, len(texts) - 1, n).round().astype(int)
    return [texts[i] for i in dict.fromkeys(idx.tolist())]


def parity(cfg, reference, wl, embed, max_length: int) -> float:
    """The lowest cosine between this embedder's vectors and PyTorch's, on the workload's own
    texts (they carry their prefix, the reference gets the same strings)."""
    texts = spread(wl.texts, PARITY_TEXTS)
    ref = validate.reference_embeddings(
        reference.folder, texts, cfg.pooling.mode, native_pooling(cfg), max_length, trust_remote_code=cfg.model.trust_remote_code
    )
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
    return {"cosine_to_fp32_min": float(cos.min()), "cosine_to_fp32_mean": float(cos.mean()), "rank_agreement_vs_fp32": float(rho)}


def measure(cfg, reference, run: WorkloadRun, embed, artifact, no_reference: str) -> WorkloadRun:
    """Parity on the workload's texts (workloads other than ``sentences``: those have theirs from
    the parity sentences) and, for a reduced precision, the loss against the fp32 export.
    ``no_reference``: why there is no PyTorch reference, where there is none."""
    wl, run_spec = run.workload, run.spec
    if wl.prefixed:
        if reference is not None:
            run = replace(run, parity_min_cosine=parity(cfg, reference, wl, embed, run_spec.max_length))
        else:
            run = replace(run, parity_unavailable=no_reference)
    base = artifact.base
    if cfg.precision() == "fp32" or base is None:
        return run
    base_spec = EmbedderSpec.from_config(cfg, base).replace(
        prefix=run_spec.prefix,
        max_length=run_spec.max_length,
        provider="CPUExecutionProvider",
        provider_options={},
        session_config={},
        plugin=None,
        disabled_optimizers=None,
    )
    texts = spread(wl.texts, LOSS_TEXTS)
    return replace(run, loss_vs_fp32=loss_vs_fp32(embed(texts), base_spec.build().embed(texts)))
