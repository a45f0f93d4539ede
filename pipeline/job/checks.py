"""What a job checks its embedder against: the PyTorch reference (parity, cached with quality) and
the model's own fp32 export (the STS delta of a reduced precision)."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from pipeline.config import Config
from pipeline.core.cache import read_json_entry, write_json_entry
from pipeline.embedder.embed import position_limit as _config_positions
from pipeline.embedder.spec import EmbedderSpec
from pipeline.job.results import Parity
from pipeline.measure import quality
from pipeline.model import validate
from pipeline.model.artifact import Artifact
from pipeline.model.sources import ModelUnavailable, ResolvedModel, named_model, resolve

log = logging.getLogger("pipeline.job.run")


def position_limit(folder: Path) -> int | None:
    """The most tokens a model folder's ``config.json`` says it can take, or None when it does not say."""
    return _config_positions(Path(folder))


def native_pooling(cfg: Config) -> str:
    """The pooling the PyTorch reference was trained with (its own, or the model it was exported from)."""
    return named_model(cfg.model.reference_from).native_pooling if cfg.model.reference_from else cfg.model.native_pooling


def reference(cfg: Config, resolved: ResolvedModel) -> tuple[ResolvedModel | None, str]:
    """The PyTorch checkpoint parity compares against (the fp32 model for every variant),
    or None and why there is none."""
    if not cfg.model.source.startswith("onnx_"):
        return resolved, ""
    if not cfg.model.reference_from:
        return None, f"{cfg.model.name} is an imported ONNX file with no PyTorch checkpoint here (model.reference_from is not set)"
    try:
        return resolve(named_model(cfg.model.reference_from), cfg.cache_dir), ""
    except ModelUnavailable as exc:
        return None, f"reference {cfg.model.reference_from!r} is unavailable: {exc}"


def parity_with_reference(cfg: Config, resolved: ResolvedModel, emb, qkey: dict) -> tuple[ResolvedModel | None, Parity]:
    """The PyTorch reference and the embedder's parity with it, or no reference and why."""
    ref, why_not = reference(cfg, resolved)
    return ref, (Parity(parity(cfg, ref, emb, qkey)) if ref is not None else Parity(None, why_not))


def parity(cfg: Config, ref: ResolvedModel, emb, qkey: dict) -> float:
    """The lowest cosine between the embedder's vectors of the parity sentences and PyTorch's
    (cached per quality key: a batch-size sweep computes it once)."""
    key = hashlib.sha256(json.dumps({**qkey, "n": cfg.quality.parity_sentences}, sort_keys=True).encode()).hexdigest()[:20]
    path = Path(cfg.cache_dir) / "parity" / f"{key}.json"
    stored = read_json_entry(path, _cosine, "parity")
    if stored is not None:
        return stored
    sentences = validate.PARITY_SENTENCES[: cfg.quality.parity_sentences]
    prefixed = [cfg.model.query_prefix + s for s in sentences]  # the embedder adds the same prefix
    ref_vectors = validate.reference_embeddings(
        ref.folder, prefixed, cfg.pooling.mode, native_pooling(cfg), cfg.model.max_length, trust_remote_code=cfg.model.trust_remote_code
    )
    value = validate.parity(emb.embed(sentences), ref_vectors)
    write_json_entry(path, {"min_cosine": value, "key": qkey})
    return value


def _cosine(stored) -> float:
    value = stored["min_cosine"]
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not -1.0001 <= value <= 1.0001:
        raise ValueError(f"no cosine: {value!r}")
    return float(value)


def delta_vs_fp32(cfg: Config, artifact: Artifact, data, stsb: float, qkey: dict, same_as_fp32: bool = True) -> float | None:
    """This run's STS minus the same model's fp32 STS (from the quality cache, computed if missing).

    The fp32 reference is the model's fp32 export on the CPU provider of this environment: a
    provider that computes in another precision (OpenVINO bf16) or in another build is judged
    against it, even when its graph is the fp32 export itself (``same_as_fp32=False``).
    None for an imported ONNX file: it has no fp32 export of its own.
    """
    base = artifact.base if artifact.base is not None else (artifact if artifact.variant == "fp32" else None)
    if base is None:
        return None
    if base is artifact and same_as_fp32:
        return 0.0
    if same_as_fp32:  # this environment's provider at the graph's precision: its own fp32 export
        base_spec, base_provider = EmbedderSpec.from_config(cfg, base), qkey["provider"]
    else:  # another build or precision: the model's fp32 on this environment's CPU provider
        base_spec = EmbedderSpec.from_config(cfg, base).replace(
            provider="CPUExecutionProvider", provider_options={}, session_config={}, plugin=None, disabled_optimizers=None
        )
        base_provider = "cpu"
    base_key = {**qkey, "artifact": base.key, "provider": base_provider, "split": cfg.quality.split}
    q = quality.cached_score(
        lambda texts, batch_size=None: base_spec.build().embed(texts, batch_size=batch_size),
        data,
        cfg.cache_dir,
        base_key,
        cfg.quality.batch_size,
    )
    return stsb - q.stsb_spearman
