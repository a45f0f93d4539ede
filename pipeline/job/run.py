"""One job: one point of the search space, one MLflow run.

    prepare (resolve the model; refuse what cannot run here) -> the stages (pipeline/job/stages.py)
      -> the record (pipeline/job/results.py names its metrics and tags) -> the MLflow run

:func:`prepare` does everything that can refuse a job before any work (config checks, finding and
verifying the model); :func:`execute` runs the stages, writes the job's record, then logs it.
"""

from __future__ import annotations

import logging
import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from pipeline.config import Config, ConfigError
from pipeline.core.redaction import redact
from pipeline.core.vocab import Status
from pipeline.embedder.embed import available_providers
from pipeline.job.checks import position_limit
from pipeline.job.results import JobState, record_fields
from pipeline.job.stages import JobSkipped, run_all
from pipeline.measure import workload
from pipeline.model import export
from pipeline.model.sources import ChecksumMismatch, ModelUnavailable, ResolvedModel, resolve
from pipeline.runtime import providers
from pipeline.tracking import names, records, track

log = logging.getLogger(__name__)


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
    state: JobState | None = None
    try:
        resolved = prepare(cfg)
        state = JobState(cfg, out_dir, resolved, positions=position_limit(resolved.folder))
        run_all(state)
        rec.status = Status.OK
    except JobSkipped as exc:
        rec.status, rec.reason = Status.SKIPPED, str(exc)
        log.warning("skipped: %s", exc)
    except (ChecksumMismatch, ConfigError):
        shutil.rmtree(folder, ignore_errors=True)  # a refused model or value: no work, no record, no run
        raise
    except Exception as exc:
        rec.status, rec.reason = Status.FAILED, f"{type(exc).__name__}: {str(exc)[:400]}"
        (out_dir / "traceback.txt").write_text(redact(traceback.format_exc()))
        error = exc
    if state is not None:  # what the stages reached, also for a job that stopped half-way
        metrics, tags = record_fields(state)
        rec.metrics.update(metrics)
        rec.tags.update(tags)
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
