"""The stages of a job, in order (:data:`STAGES`): each takes the :class:`~pipeline.job.results.JobState`
the stages before it left and returns it with its own typed result added.

    read_data -> export_model -> start_runtime -> check_parity -> prepare_workload -> time_it -> run_load -> score_quality

Nothing here talks to MLflow or names a metric: a job's results are complete on disk before they
are logged, and :func:`pipeline.job.results.record_fields` names them.  A stage that cannot run
here raises :class:`~pipeline.job.run.JobSkipped`; the results of the stages before it are kept.
"""

from __future__ import annotations

import json
import logging

from pipeline.core.errors import Exit, PipelineError
from pipeline.data.sts import load_sts
from pipeline.embedder.embed import session_options
from pipeline.embedder.plugin_eps import ProviderFallback, ProviderUnavailable, option_strings
from pipeline.embedder.spec import EmbedderSpec
from pipeline.job import checks, timing, workload_checks
from pipeline.job.results import JobState, Placed, Scored
from pipeline.measure import quality, workload
from pipeline.model import export, validate
from pipeline.runtime import placement, providers

log = logging.getLogger("pipeline.job.run")


class JobSkipped(PipelineError, RuntimeError):
    """The job cannot run here (provider or model unavailable); logged as skipped."""

    exit = Exit.SKIPPED


def read_data(state: JobState) -> JobState:
    """The evaluation data (when quality is on) and the benchmark's pool of distinct sentences:
    a batch larger than the pool cannot be measured honestly."""
    cfg = state.cfg
    state.data = load_sts(cfg.quality) if cfg.quality.enabled else None
    state.sentences = state.data.unique_sentences if state.data is not None else validate.PARITY_SENTENCES * 8
    if cfg.bench.batch_size > len(state.sentences):
        raise JobSkipped(
            f"bench.batch_size={cfg.bench.batch_size} is larger than the benchmark's pool of {len(state.sentences)} distinct "
            "sentences: a batch that size cannot be measured (refused, not capped)"
        )
    return state


def export_model(state: JobState) -> JobState:
    """export (cached), then the graph's structure (written to validation.json) and the spec of
    the embedder that runs it."""
    cfg = state.cfg
    log.info("export: %s %s", cfg.model.name, cfg.variant.name)
    state.artifact = a = export.export(state.resolved, cfg.model, cfg.variant, cfg.cache_dir, cfg.quality)
    if (a.folder / "config.json").is_file():
        state.model_config = json.loads((a.folder / "config.json").read_text())
    state.structure = validate.structure(a.onnx_path, state.model_config)
    if a.info:  # what was inferred (imported ONNX) or chosen (variant) while building it
        state.structure.notes.append(f"{a.variant}: " + json.dumps(a.info, sort_keys=True))
    (state.out_dir / "validation.json").write_text(state.structure.to_json())
    state.spec = EmbedderSpec.from_config(cfg, a)
    return state


def start_runtime(state: JobState) -> JobState:
    """The provider's runtime (this environment, or its own: made once, cached under
    cache_dir/envs), where its nodes went (a share below 1 fails the job, after it is recorded:
    never a quiet CPU measurement) and the embedder used for quality and parity."""
    cfg = state.cfg
    try:
        rt = state.runtime = providers.runtime(cfg.provider, cfg.cache_dir, log=log.info)
    except providers.Unavailable as exc:
        raise JobSkipped(str(exc)) from None
    state.versions = dict(rt.tags())
    if not rt.own:
        import onnxruntime as ort

        state.versions.update(providers.version_tags({"onnxruntime": ort.__version__}))
        _place(state, None)
        try:
            state.embedder = state.spec.build()
        except ProviderUnavailable as exc:
            raise JobSkipped(str(exc)) from None
        return state
    try:
        probe = providers.call(rt, state.spec, assignment=True)
    except ProviderFallback as exc:  # where the nodes went is recorded, then the job fails with it
        if getattr(exc, "assignment", None) is not None:
            _place(state, exc.assignment)
        raise
    except providers.Unavailable as exc:
        note = cfg.provider.device_note if cfg.provider.device_note and "no device" in str(exc) else ""
        raise JobSkipped(str(exc) + (f"; {note}" if note else "")) from None
    state.versions.update(providers.version_tags(probe.runtime))
    (state.out_dir / "runtime.json").write_text(
        json.dumps(
            {
                "env": rt.env,
                "packages": list(rt.packages),
                "versions": rt.versions,
                "created_s": rt.created_s,
                "size_mb": rt.size_mb,
                **probe.runtime,
            },
            indent=2,
        )
    )
    _place(state, probe.assignment)
    state.embedder = providers.RemoteEmbedder(rt, state.spec)
    return state


def _place(state: JobState, assign: placement.NodeAssignment | None) -> None:
    """Where the nodes went (``assign``: as the provider's own process recorded it; None: a
    session of this environment records it here), written down; then a provider that did not
    run every node fails the job with that reason."""
    cfg, a = state.cfg, state.artifact
    p = cfg.provider
    if assign is None:
        try:
            so = session_options(p.threads, p.graph_optimization_level, p.mem_arena, dict(p.session_config))
            assign = placement.node_assignment(a.onnx_path, p.ep, option_strings(p.options), so)
        except Exception as exc:  # the provider is there but cannot build a session: not a CPU run
            raise JobSkipped(f"{p.ep} could not build a session for this graph: {type(exc).__name__}: {str(exc)[:300]}") from None
    usab = placement.cached_mobile_usability(a.onnx_path, cfg.cache_dir, a.key)
    state.placed = Placed(assign, usab)
    if assign.fallback:
        elsewhere = {k: v for k, v in assign.nodes_by_provider.items() if k != p.ep}
        log.warning("%s took %.1f%% of the nodes; the rest went to %s", p.ep, 100 * assign.share, elsewhere)
    (state.out_dir / "placement.json").write_text(json.dumps({"assignment": assign.to_dict(), "usability": usab.to_dict()}, indent=2))
    (state.out_dir / "usability.txt").write_text(usab.log)
    why = assign.fallback_reason()
    if why:
        raise ProviderFallback(why)


def check_parity(state: JobState) -> JobState:
    """Parity with the PyTorch reference (cached with quality: same key), into validation.json."""
    cfg = state.cfg
    state.reference, state.parity = checks.parity_with_reference(cfg, state.resolved, state.embedder, state.quality_key)
    validation = json.loads(state.structure.to_json())
    if state.reference is not None:
        validation["parity"] = {
            "min_cosine": state.parity.min_cosine,
            "sentences": cfg.quality.parity_sentences,
            "reference": str(state.reference.folder),
        }
    else:  # no PyTorch reference here: say so, never a made-up number
        validation["parity"] = {"unavailable": state.parity.unavailable}
    (state.out_dir / "validation.json").write_text(json.dumps(validation, indent=2))
    return state


def prepare_workload(state: JobState) -> JobState:
    """The workload's texts and the spec that embeds them, measured on first (pipeline/job/workload_checks.py)."""
    try:
        state.workload = workload_checks.run(state)
    except workload.WorkloadRefused as exc:
        raise JobSkipped(str(exc)) from None
    return state


def time_it(state: JobState) -> JobState:
    """The benchmark, in a fresh process (pipeline/job/timing.py)."""
    state.bench = timing.benchmark(
        state.cfg,
        state.workload.spec,
        state.runtime,
        state.workload.texts,
        state.model_config,
        state.data is not None,
        state.workload.workload.name,
        state.out_dir,
    )
    return state


def run_load(state: JobState) -> JobState:
    """The load scenario, where the job asks for it (``bench.scenario=load``)."""
    if state.cfg.bench.scenario == "load":
        state.load = timing.load_scenario(state.cfg, state.workload.spec, state.workload.texts, state.out_dir)
    return state


def score_quality(state: JobState) -> JobState:
    """Quality on the evaluation data (cached), and its loss against the model's fp32."""
    cfg, data = state.cfg, state.data
    if data is None:
        return state
    log.info("quality: STS Benchmark %s (%d pairs)", cfg.quality.split, len(data.scores))
    q = quality.cached_score(
        state.embedder.embed, data, cfg.cache_dir, {**state.quality_key, "split": cfg.quality.split}, cfg.quality.batch_size
    )
    same = not state.runtime.own and cfg.precision() == "fp32"
    state.scored = Scored(q, checks.delta_vs_fp32(cfg, state.artifact, data, q.stsb_spearman, state.quality_key, same_as_fp32=same))
    return state


STAGES = (read_data, export_model, start_runtime, check_parity, prepare_workload, time_it, run_load, score_quality)


def run_all(state: JobState) -> JobState:
    """Every stage, in order.  The state is the one object the stages fill: when a stage raises,
    the caller's ``state`` still holds what the stages before it found (the record keeps it)."""
    for stage in STAGES:
        state = stage(state)
    return state
