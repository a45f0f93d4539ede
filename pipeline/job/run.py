"""One job: one point of the search space, one MLflow run.

    resolve model -> export (cached) -> validate -> benchmark -> quality (cached) -> log

:func:`prepare` does everything that can refuse a job before any work (config checks,
finding and verifying the model); :func:`run` does the stages inside an MLflow run.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from pipeline.model import export, validate
from pipeline.job import timing, workload_checks
from pipeline.tracking import names, records, track
from pipeline.runtime import placement, providers
from pipeline.measure import quality, workload
from pipeline.config import Config, ConfigError
from pipeline.embedder.embed import available_providers, session_options
from pipeline.embedder.plugin_eps import ProviderFallback, ProviderUnavailable, option_strings
from pipeline.core.errors import Exit, PipelineError
from pipeline.model.sources import ChecksumMismatch, ModelUnavailable, ResolvedModel, named_model, resolve
from pipeline.embedder.spec import EmbedderSpec
from pipeline.core.cache import write_atomic
from pipeline.data.sts import load_sts
from pipeline.core.redaction import redact

log = logging.getLogger(__name__)


class JobSkipped(PipelineError, RuntimeError):
    """The job cannot run here (provider or model unavailable); logged as skipped."""

    exit = Exit.SKIPPED


@dataclass
class JobResult:
    status: str  # ok | skipped | failed
    run_id: str | None
    metrics: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    seconds: float = 0.0
    record: Path | None = None  # the job's local record folder


def prepare(cfg: Config) -> ResolvedModel:
    """Checks that need no MLflow run: the provider exists, the model is there and verified.

    Raises JobSkipped for what is unavailable here, ChecksumMismatch for wrong weights.
    """
    p = cfg.provider
    why = providers.prerequisite_problem(p)  # other platforms' builds, hardware that is not here
    if why:
        raise JobSkipped(why)
    if not p.packages and not p.plugin and p.ep not in available_providers():
        raise JobSkipped(
            f"execution provider {p.ep} ({p.name}) is not in this onnxruntime build; "
            f"available: {', '.join(available_providers())}"
            + (f" (conf/provider/{p.name}.yaml names no packages of a build that has it)" if p.name else "")
        )
    if cfg.bench.scenario == "load" and p.packages:
        raise JobSkipped(f"the load scenario runs in this environment only; {p.name} needs its own ({', '.join(p.packages)})")
    reason = export.unsupported_reason(cfg.model, cfg.variant, cfg.provider.ep)
    if reason:
        raise JobSkipped(reason)
    try:
        resolved = resolve(cfg.model, cfg.cache_dir)
    except ModelUnavailable as exc:
        raise JobSkipped(str(exc)) from None
    limit = position_limit(resolved.folder)
    if limit is not None and cfg.model.max_length > limit:
        raise ConfigError("model.max_length", f"got {cfg.model.max_length}, but {cfg.model.name} has {limit} positions; must be <= {limit}")
    try:  # the workload's lengths against the model's positions and the provider's limits
        workload.check_limits(cfg.workload, limit, cfg.provider)
    except workload.WorkloadRefused as exc:
        raise JobSkipped(str(exc)) from None
    return resolved


def position_limit(folder: Path) -> int | None:
    """The most tokens a model folder's ``config.json`` says it can take, or None when it does not say."""
    from pipeline.embedder.embed import position_limit as limit

    return limit(Path(folder))


def run(cfg: Config, resolved: ResolvedModel, out_dir: Path, metrics: dict[str, float], tags: dict[str, str]) -> None:
    """Run the stages, filling ``metrics`` and ``tags`` as they go and writing artifacts to ``out_dir``.

    Nothing here talks to MLflow: a job's results are complete on disk before they are logged.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    tags["weights.verified"] = str(resolved.verified).lower()
    data = None
    if cfg.quality.enabled:
        data = load_sts(cfg.quality)
        metrics["quality.pairs"] = float(len(data.scores))
        tags["quality.data_sha256"] = data.digest
        tags["quality.dataset"] = data.label
    # the benchmark's sentence pool: a batch larger than it cannot be measured honestly
    sentences = data.unique_sentences if data is not None else validate.PARITY_SENTENCES * 8
    if cfg.bench.batch_size > len(sentences):
        raise JobSkipped(
            f"bench.batch_size={cfg.bench.batch_size} is larger than the benchmark's pool of {len(sentences)} distinct "
            "sentences: a batch that size cannot be measured (refused, not capped)"
        )
    artifact, report, model_config = _export(cfg, resolved, out_dir, metrics, tags)
    spec = EmbedderSpec.from_config(cfg, artifact)
    rt, emb = _runtime(cfg, artifact, spec, out_dir, metrics, tags)
    qkey = {
        "artifact": artifact.key,
        "pooling": cfg.pooling.mode,
        "provider": cfg.provider.name,
        "max_length": cfg.model.max_length,
        **({"prefix": cfg.model.query_prefix} if cfg.model.query_prefix else {}),
    }
    _validate_parity(cfg, resolved, report, emb, artifact, qkey, out_dir, metrics, tags)
    spec, texts = _workload(cfg, resolved, artifact, spec, rt, emb, sentences, metrics, tags)
    timing.benchmark(cfg, spec, rt, texts, model_config, data is not None, out_dir, metrics, tags)
    if cfg.bench.scenario == "load":
        timing.load_scenario(cfg, spec, texts, out_dir, metrics, tags)
    if data is not None:  # quality (cached)
        log.info("quality: STS Benchmark %s (%d pairs)", cfg.quality.split, len(data.scores))
        q = quality.cached_score(emb.embed, data, cfg.cache_dir, {**qkey, "split": cfg.quality.split}, cfg.quality.batch_size)
        metrics.update(q.metrics())
        tags["quality.cached"] = str(q.cached).lower()
        delta = _delta_vs_fp32(cfg, artifact, data, q.stsb_spearman, qkey, same_as_fp32=not rt.own and cfg.precision() == "fp32")
        if delta is not None:
            metrics["quality.stsb_delta_vs_fp32"] = delta


def _workload(cfg: Config, resolved: ResolvedModel, artifact, spec: EmbedderSpec, rt, emb, sentences: list[str], metrics: dict, tags: dict):
    """The workload's texts and the spec that embeds them, measured on first (pipeline/job/workload_checks.py)."""
    try:
        wl, run_spec, texts = workload_checks.prepare(cfg, artifact, spec, sentences, position_limit(resolved.folder), tags)
    except workload.WorkloadRefused as exc:
        raise JobSkipped(str(exc)) from None
    if cfg.bench.batch_size > len(texts):
        raise JobSkipped(f"bench.batch_size={cfg.bench.batch_size} is larger than the workload's {len(texts)} texts (refused, not capped)")
    embed = emb.embed if run_spec == spec else (providers.RemoteEmbedder(rt, run_spec) if rt.own else run_spec.build()).embed
    reference, _ = _reference(cfg, resolved)
    native = named_model(cfg.model.reference_from).native_pooling if cfg.model.reference_from else cfg.model.native_pooling
    workload_checks.measure(cfg, reference, native, wl, run_spec, embed, artifact, metrics, tags)
    return run_spec, texts


def _export(cfg: Config, resolved: ResolvedModel, out_dir: Path, metrics: dict, tags: dict):
    """export (cached), then validate the graph's structure; returns the artifact, the structure
    report and the model's config.json contents."""
    log.info("export: %s %s", cfg.model.name, cfg.variant.name)
    artifact = export.export(resolved, cfg.model, cfg.variant, cfg.cache_dir, cfg.quality)
    tags["export.cached"] = str(artifact.cached).lower()
    tags["artifact.key"] = artifact.key
    # the folder a user hands to pipeline.embedder.Embedder to ship this configuration
    tags["artifact.folder"] = str(artifact.folder.resolve())
    tags["artifact.onnx_file"] = artifact.onnx_path.name
    if not artifact.cached:  # a cached export took no time here: no 0 s figure that reads as a fast export
        metrics["export.seconds"] = artifact.seconds
    metrics["model.size_mb"] = artifact.size_mb
    model_config = {}
    if (artifact.folder / "config.json").is_file():
        model_config = json.loads((artifact.folder / "config.json").read_text())
    report = validate.structure(artifact.onnx_path, model_config)
    if artifact.info:  # what was inferred (imported ONNX) or chosen (variant) while building it
        report.notes.append(f"{artifact.variant}: " + json.dumps(artifact.info, sort_keys=True))
    (out_dir / "validation.json").write_text(report.to_json())
    return artifact, report, model_config


def _runtime(cfg: Config, artifact: export.Artifact, spec: EmbedderSpec, out_dir: Path, metrics: dict, tags: dict):
    """The provider's runtime (this environment, or its own: made once, cached under
    cache_dir/envs), where its nodes went (recorded by onnxruntime; a share below 1 fails the job)
    and the embedder used for quality and parity (the benchmark builds its own, cold)."""
    try:
        rt = providers.runtime(cfg.provider, cfg.cache_dir, log=log.info)
    except providers.Unavailable as exc:
        raise JobSkipped(str(exc)) from None
    tags.update(rt.tags())
    if not rt.own:
        import onnxruntime as ort

        tags.update(providers.version_tags({"onnxruntime": ort.__version__}))
        _placement(cfg, artifact, out_dir, metrics, tags)
        try:
            return rt, spec.build()
        except ProviderUnavailable as exc:
            raise JobSkipped(str(exc)) from None
    try:
        probe = providers.call(rt, spec, assignment=True)
    except ProviderFallback as exc:  # where the nodes went is recorded, then the job fails with it
        if getattr(exc, "assignment", None) is not None:
            _placement(cfg, artifact, out_dir, metrics, tags, assign=exc.assignment)
        raise
    except providers.Unavailable as exc:
        note = cfg.provider.device_note if cfg.provider.device_note and "no device" in str(exc) else ""
        raise JobSkipped(str(exc) + (f"; {note}" if note else "")) from None
    tags.update(providers.version_tags(probe.runtime))
    (out_dir / "runtime.json").write_text(json.dumps({"env": rt.env, "packages": list(rt.packages), "versions": rt.versions,
                                                      "created_s": rt.created_s, "size_mb": rt.size_mb, **probe.runtime}, indent=2))
    _placement(cfg, artifact, out_dir, metrics, tags, assign=probe.assignment)
    return rt, providers.RemoteEmbedder(rt, spec)


def _validate_parity(cfg: Config, resolved: ResolvedModel, report, emb, artifact, qkey: dict, out_dir: Path, metrics: dict, tags: dict) -> None:
    """validate: parity with the PyTorch reference (cached with quality: same key)."""
    reference, why_not = _reference(cfg, resolved)
    validation = json.loads(report.to_json())
    if reference is not None:
        metrics["parity.min_cosine"] = _parity(cfg, reference, emb, artifact, qkey)
        validation["parity"] = {
            "min_cosine": metrics["parity.min_cosine"],
            "sentences": cfg.quality.parity_sentences,
            "reference": str(reference.folder),
        }
    else:  # no PyTorch reference here: say so, never a made-up number
        tags["parity.unavailable"] = why_not
        validation["parity"] = {"unavailable": why_not}
    (out_dir / "validation.json").write_text(json.dumps(validation, indent=2))


def _reference(cfg: Config, resolved: ResolvedModel) -> tuple[ResolvedModel | None, str]:
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


def _delta_vs_fp32(cfg: Config, artifact: export.Artifact, data, stsb: float, qkey: dict, same_as_fp32: bool = True) -> float | None:
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
            provider="CPUExecutionProvider", provider_options={}, session_config={}, plugin=None, disabled_optimizers=None)
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


def _placement(cfg: Config, artifact: export.Artifact, out_dir: Path, metrics: dict, tags: dict,
               assign: placement.NodeAssignment | None = None) -> None:
    """Where the nodes went (``assign``: as the provider's own process recorded it; None: a
    session of this environment records it here).  Written down first, then a provider that did
    not run every node fails the job with that reason: never a quiet CPU measurement."""
    p = cfg.provider
    if assign is None:
        try:
            so = session_options(p.threads, p.graph_optimization_level, p.mem_arena, dict(p.session_config))
            assign = placement.node_assignment(artifact.onnx_path, p.ep, option_strings(p.options), so)
        except Exception as exc:  # the provider is there but cannot build a session: not a CPU run
            raise JobSkipped(f"{p.ep} could not build a session for this graph: {type(exc).__name__}: {str(exc)[:300]}") from None
    usab = placement.cached_mobile_usability(artifact.onnx_path, cfg.cache_dir, artifact.key)
    new_metrics = {
        "provider.node_share": assign.share,
        "provider.nodes_total": float(assign.total),
        "usability.coreml_supported_share": usab.coreml_supported_share,
        "usability.coreml_oversize_dims": float(len(usab.coreml_oversize_dims)),
    }
    new_tags = {
        "fallback": str(assign.fallback).lower(),
        "usability.mobile_ep": str(usab.may_use_mobile_ep).lower(),
    }
    if assign.fallback:
        elsewhere = {k: v for k, v in assign.nodes_by_provider.items() if k != p.ep}
        new_tags["fallback.nodes"] = json.dumps(elsewhere)[:500]
        log.warning("%s took %.1f%% of the nodes; the rest went to %s", p.ep, 100 * assign.share, elsewhere)
    (out_dir / "placement.json").write_text(json.dumps({"assignment": assign.to_dict(), "usability": usab.to_dict()}, indent=2))
    (out_dir / "usability.txt").write_text(usab.log)
    metrics.update(new_metrics)
    tags.update(new_tags)
    tags["provider.assignment_source"] = assign.source
    why = assign.fallback_reason()
    if why:
        raise ProviderFallback(why)


def _parity(cfg: Config, resolved: ResolvedModel, emb, artifact: export.Artifact, qkey: dict) -> float:
    import hashlib

    key = hashlib.sha256(json.dumps({**qkey, "n": cfg.quality.parity_sentences}, sort_keys=True).encode()).hexdigest()[:20]
    path = Path(cfg.cache_dir) / "parity" / f"{key}.json"
    if path.is_file():
        try:
            stored = json.loads(path.read_text())
            value = stored["min_cosine"] if isinstance(stored, dict) else None
            if isinstance(value, (int, float)) and not isinstance(value, bool) and -1.0001 <= value <= 1.0001:
                return float(value)
            log.warning("parity cache entry %s holds no cosine (%s): computing it again", path, type(value).__name__)
        except (ValueError, KeyError, OSError) as exc:
            log.warning("parity cache entry %s is unreadable (%s): computing it again", path, exc)
        path.unlink(missing_ok=True)
    sentences = validate.PARITY_SENTENCES[: cfg.quality.parity_sentences]
    prefixed = [cfg.model.query_prefix + s for s in sentences]  # the embedder adds the same prefix
    native = cfg.model.native_pooling
    if cfg.model.reference_from:
        native = named_model(cfg.model.reference_from).native_pooling
    ref = validate.reference_embeddings(
        resolved.folder, prefixed, cfg.pooling.mode, native, cfg.model.max_length, trust_remote_code=cfg.model.trust_remote_code
    )
    value = validate.parity(emb.embed(sentences), ref)
    write_atomic(path, json.dumps({"min_cosine": value, "key": qkey}))
    return value


def execute(cfg: Config, dict_cfg=None, out_dir: Path | None = None, tags: dict[str, str] | None = None) -> JobResult:
    """Run one job: prepare, the stages, a local record, then the MLflow run.

    Errors that :func:`prepare` raises for a bad model (wrong checksum) propagate before any
    work or run exists.  Otherwise the job ends ok, skipped or failed; its record (params,
    tags, metrics, artifacts) is written under ``records_dir`` first, then logged to MLflow.
    If MLflow cannot be reached the record stays on disk, marked unlogged, and
    ``python -m pipeline.sync`` logs it later.  A failed job re-raises after it is recorded.
    ``tags`` are set on the run (a sweep's parent run id, the config hash).
    ``out_dir``: where the job's artifacts are written (default: the record's own folder).
    """
    t0 = time.perf_counter()
    records.check_writable(cfg.records_dir)  # before any work: results must have somewhere to go
    run_name = names.config_label(cfg)  # the decision's label for it too
    rec = records.RunRecord.new(run_name, track.job_params(cfg), dict(tags or {}))
    folder = records.folder(cfg.records_dir, rec.record_id)
    out_dir = folder if out_dir is None else Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    resolved_yaml = OmegaConf.to_yaml(dict_cfg if dict_cfg is not None else OmegaConf.structured(cfg))
    (out_dir / "config.yaml").write_text(redact(resolved_yaml))

    error: BaseException | None = None
    try:
        resolved = prepare(cfg)
        run(cfg, resolved, out_dir, rec.metrics, rec.tags)
        rec.status = "ok"
    except JobSkipped as exc:
        rec.status, rec.reason = "skipped", str(exc)
        log.warning("skipped: %s", exc)
    except (ChecksumMismatch, ConfigError):
        shutil.rmtree(folder, ignore_errors=True)  # a refused model or value: no work, no record, no run
        raise
    except Exception as exc:
        rec.status, rec.reason = "failed", f"{type(exc).__name__}: {str(exc)[:400]}"
        (out_dir / "traceback.txt").write_text(redact(traceback.format_exc()))
        error = exc
    rec.seconds = time.perf_counter() - t0
    try:
        records.save(folder, rec, out_dir)
    except records.RecordError as exc:  # a disk that filled during the job: nothing half-written
        raise records.RecordError(f"{exc}; the job's files stay in {out_dir}") from (error or exc)
    run_id = track.log_record(cfg.tracking, folder, rec)
    result = JobResult(rec.status, run_id, metrics=dict(rec.metrics), reason=rec.reason, seconds=rec.seconds, record=folder)
    if error is not None:
        raise error
    return result
