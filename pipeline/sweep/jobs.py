"""One job of a sweep: reused when already measured, else executed; never raises for its own failure."""

from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from pipeline.config import TrackingConfig, to_config
from pipeline.core import logs
from pipeline.core.errors import PipelineError
from pipeline.core.machine import fingerprint
from pipeline.core.redaction import redact
from pipeline.core.vocab import Status
from pipeline.job.run import execute
from pipeline.sweep import console, plan, resume
from pipeline.sweep.state import JobOutcome, SweepState, current
from pipeline.tracking import records, track


def failed_record(
    st: SweepState,
    tracking: TrackingConfig,
    num: int,
    overrides: list[str],
    tags: dict,
    reason: str,
    traceback_text: str | None = None,
    suffix: str = "failed",
) -> JobOutcome:
    """A failed record (and run) for a job that left none (it raised before it had a record, or
    its cluster job ended without a result): its overrides and traceback, logged like any other."""
    rec = records.RunRecord.new(f"{st.name}-job{num}-{suffix}", {}, tags)
    rec.status, rec.reason = Status.FAILED, redact(reason)
    folder = records.folder(st.records_dir, rec.record_id)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "overrides.txt").write_text(redact("\n".join(overrides) + "\n"))
    if traceback_text:
        (folder / "traceback.txt").write_text(redact(traceback_text))
    records.save(folder, rec)
    run_id = track.log_record(tracking, folder, rec)
    return JobOutcome(num, list(overrides), plan.label(overrides, st.swept_keys), Status.FAILED, run_id, rec.reason, 0.0, rec.record_id)


def _reused(st: SweepState, num: int, chash: str, machine: str) -> tuple[str | None, str | None, str | None]:
    """(run id, where, record id) of an earlier run with this config hash, timed quietly on this
    machine (fingerprint ``machine``), or Nones."""
    if st.parent_run_id is not None and not track.is_down(st.tracking_uri):  # MLflow answered at the start
        try:
            found = resume.find_done(st.client(), st.experiment_id, chash, machine)
            if found is not None:
                return found.info.run_id, f"run {found.info.run_id}", None
        except Exception as exc:
            track.mark_down(st.tracking_uri, exc)
            print(f"[sweep {st.name}]   MLflow did not answer ({console.why(exc)}); looking in the local records", flush=True)
    local = resume.find_done_locally(st.records_dir, chash, st.tracking_uri, machine)
    if local is None:
        return None, None, None
    st.metrics[num] = dict(local.metrics)
    where = f"run {local.mlflow_run_id}" if local.mlflow_run_id else f"local record {local.record_id} (not logged yet)"
    return local.mlflow_run_id, where, local.record_id


def link_reused(st: SweepState, num: int, run_id: str | None) -> None:
    """A reused job's run lives under an earlier sweep's parent: show it under this parent too,
    as a reference run (its params and metrics, tag ``sweep.reused_run``, named ``reused: ...``;
    nothing measured again), so that the parent's tree holds every result it decides on."""
    if not (st.parent_run_id and st.experiment_id and run_id) or track.is_down(st.tracking_uri):
        return
    from mlflow.entities import Metric, Param

    try:
        c = st.client()
        run = c.get_run(run_id)
        if run.data.tags.get("mlflow.parentRunId") == st.parent_run_id:
            return
        flt = f"tags.`sweep.reused_run` = '{run_id}' and tags.`mlflow.parentRunId` = '{st.parent_run_id}'"
        if c.search_runs([st.experiment_id], filter_string=flt, max_results=1):
            return  # linked by an earlier resume of this sweep
        name = f"reused: {run.info.run_name or run_id}"
        tags = {
            **st.job_tags(num),
            "sweep.reused_run": run_id,
            "status": Status.DONE,
            "mlflow.runName": name,
            "mlflow.note.content": f"Measured in run {run_id} (an earlier sweep), reused here: nothing was measured again.",
        }
        ref = c.create_run(st.experiment_id, run_name=name, tags=tags).info.run_id
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, 0) for k, v in run.data.metrics.items()]
        for i in range(0, max(len(metrics), 1), 500):
            c.log_batch(ref, metrics=metrics[i : i + 500], params=[Param(k, v) for k, v in run.data.params.items()] if i == 0 else [])
        c.set_terminated(ref, "FINISHED")
    except Exception as exc:  # the tree is a view: the decision reads the run itself (jobs.json)
        print(f"[sweep {st.name}]   run {run_id} not shown under this parent ({console.why(exc)})", flush=True)


def _failed(
    st: SweepState, dcfg: DictConfig, num: int, overrides: list[str], tags: dict, exc: BaseException, t0: float, t0_s: float
) -> JobOutcome:
    tb = traceback.format_exc()
    mine = resume.job_records(st.records_dir, st.parent_record, num, since=t0_s)  # failed inside execute(): has its record
    if mine:
        record_id, run_id = mine[-1][1].record_id, mine[-1][1].mlflow_run_id
    else:
        tracking = TrackingConfig(**OmegaConf.to_container(dcfg.tracking, resolve=True))
        try:
            made = failed_record(st, tracking, num, overrides, tags, f"{type(exc).__name__}: {str(exc)[:400]}", tb)
            record_id, run_id = made.record_id, made.run_id
        except OSError as exc2:  # the records folder filled up: say so, the sweep goes on
            record_id, run_id = None, None
            print(
                f"[sweep {st.name}]   job {num + 1}: its failure could not be recorded either ({console.why(exc2)})",
                file=sys.stderr,
                flush=True,
            )
    if isinstance(exc, PipelineError):  # an error the package reports on purpose: one line (traceback in the record)
        print(f"[sweep {st.name}]   job {num + 1}: {console.why(exc)}", file=sys.stderr, flush=True)
    else:  # a bug: the whole traceback
        print(tb, file=sys.stderr, flush=True)
    return JobOutcome(
        num, overrides, plan.label(overrides, st.swept_keys), Status.FAILED, run_id, console.why(exc), time.perf_counter() - t0, record_id
    )


def run_job(dcfg: DictConfig) -> JobOutcome:
    """Run one job of a multirun; never raises for a job's own failure."""
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    problem = plan.launcher_problem(OmegaConf.select(hc, "launcher._target_"), OmegaConf.select(hc, "launcher"))
    if problem:
        raise RuntimeError(problem)  # stops the multirun: nothing is measured in parallel
    st = current()
    if st is None:
        raise RuntimeError("no sweep state: the SweepCallback (hydra.callbacks.sweep in conf/config.yaml) did not run")
    num, overrides = int(hc.job.num), list(hc.overrides.task)
    label = plan.label(overrides, st.swept_keys)
    console.progress(st, num, label)
    t0, t0_s = time.perf_counter(), time.time() - 0.001
    tags = st.job_tags(num)
    if os.environ.get("SLURM_JOB_ID"):  # the Slurm job this runs in, as sacct and submitit name it
        array = os.environ.get("SLURM_ARRAY_JOB_ID")
        tags["slurm.job_id"] = f"{array}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array else os.environ["SLURM_JOB_ID"]
    try:
        chash = tags["config_hash"] = plan.config_hash(dcfg)
        fp = fingerprint()
        machine = tags["machine.fingerprint"] = fp["id"]  # a timing belongs to its machine
        tags["machine.kind"] = fp["kind"]
        cfg = to_config(dcfg)
        if not st.rerun:
            run_id, where, record_id = _reused(st, num, chash, machine)
            if where is not None:
                rec = JobOutcome(num, overrides, label, Status.DONE, run_id, reason=None, seconds=0.0, record_id=record_id)
                print(f"[sweep {st.name}]   already done: {where} (rerun=true runs it again)", flush=True)
                link_reused(st, num, run_id)
                st.records.append(rec)
                return rec
        with logs.to_log_file():  # third-party warnings: into the job's log, not the terminal
            result = execute(cfg, dcfg, Path(hc.runtime.output_dir), tags=tags)
        st.metrics[num] = dict(result.metrics)
        rid = result.record.name if result.record else None
        rec = JobOutcome(num, overrides, label, result.status, result.run_id, result.reason, time.perf_counter() - t0, rid)
    except Exception as exc:
        rec = _failed(st, dcfg, num, overrides, tags, exc, t0, t0_s)
    st.records.append(rec)
    console.job_done(st, rec)
    return rec
