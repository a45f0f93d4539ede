"""The parent run around a sweep: created (or resumed) at its start, ended with ``jobs.json``, the
re-timing of the leaders and the decision at its end.  Local record first, MLflow when it answers."""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from dataclasses import asdict
from datetime import datetime

from omegaconf import DictConfig, OmegaConf

from pipeline import decision as decision_pkg
from pipeline.config import TrackingConfig, to_config
from pipeline.core.cache import write_atomic
from pipeline.core.errors import Exit, PipelineError
from pipeline.core.redaction import redact
from pipeline.core.vocab import RESULT_STATUSES, Status
from pipeline.sweep import console, plan, resume, retime
from pipeline.sweep.state import JobOutcome, SweepState, set_current
from pipeline.tracking import records, sweep_lock, track
from pipeline.tracking.sync import close_stale_parents, command, sync

# set by the DVC sweep stage (pipeline/study/stages.py) for the sweep it runs
STAGE_ENV = "PIPELINE_STAGE"


def _sync_command(st: SweepState) -> str:

    return command(st.records_dir, st.tracking_uri)


def _tracking(config: DictConfig) -> TrackingConfig:
    return TrackingConfig(**OmegaConf.to_container(config.tracking, resolve=True))


def _params(config: DictConfig, name: str, jobs: list[list[str]]) -> dict[str, str]:
    """The parent's params: the sweep's name, its job count, and what it sweeps."""
    params = {"sweep": name, "sweep.jobs": str(len(jobs))}
    for k, v in (OmegaConf.select(config, "hydra.sweeper.params") or {}).items():
        params[plan.param_key(k)] = redact(str(v))
    for o in OmegaConf.select(config, "hydra.overrides.task") or []:
        k, _, v = o.partition("=")
        params[plan.param_key(k)] = redact(v)[:6000]
    return params


def _parent_record(records_dir: str, key: str, name: str, rerun: bool, params: dict):
    """The parent's local record: resumed when a killed run of the same sweep left one open.
    ``rerun=true`` starts a new one and closes the one left open (failed, sweep.complete=false)."""
    stale = []
    if rerun:
        stale = close_stale_parents(records_dir, key)
    prev = None if rerun else resume.open_parent(records_dir, key)
    if prev is not None:
        return prev[0], prev[1], True, stale
    started = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    prec = records.RunRecord.new(f"sweep {name} {started}", params, {"sweep.role": "parent", "sweep.key": key, "sweep.name": name})
    return records.folder(records_dir, prec.record_id), prec, False, stale


def _parent_run(tracking: TrackingConfig, prec, pfolder, records_dir: str, key: str, rerun: bool):
    """The parent's MLflow run: the open one of a killed run of this sweep, or a new one.
    Returns (run id, experiment id, resumed, record folder)."""
    exp_id = track.setup(tracking)
    client = track.client(tracking.resolved_uri())
    parent_id, resumed = None, False
    if prec.open_run_id:  # this record's parent run, created by the killed run
        run = client.get_run(prec.open_run_id)
        if run.info.lifecycle_stage == "active" and run.info.status != "FINISHED":
            parent_id = prec.open_run_id
    if parent_id is None and not rerun:
        found = client.search_runs(
            [exp_id],
            filter_string=f"tags.`sweep.key` = '{key}' and tags.`sweep.role` = 'parent'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if found and found[0].info.status != "FINISHED":
            parent_id, resumed = found[0].info.run_id, True
            rid = found[0].data.tags.get("record_id")
            if rid and rid != prec.record_id:  # started on another machine
                prec.record_id, pfolder = rid, records.folder(records_dir, rid)
    if parent_id is not None:
        client.update_run(parent_id, status="RUNNING")
        return parent_id, exp_id, resumed, pfolder
    from mlflow.entities import Param

    run = client.create_run(
        exp_id, run_name=prec.run_name, start_time=int(prec.created * 1000), tags={**prec.all_tags(), "mlflow.runName": prec.run_name}
    )
    client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in prec.params.items()])
    return run.info.run_id, exp_id, False, pfolder


def start(config: DictConfig) -> SweepState:
    """Create (or resume) the parent run and its local record; called from on_multirun_start.

    When MLflow cannot be reached the sweep still runs: the parent record is kept locally and
    ``python -m pipeline.sync`` (run at the sweep's end, or by hand later) creates the parent run.
    """
    track.quiet()
    name = OmegaConf.select(config, "hydra.runtime.choices.sweep") or "cli"
    # refused before anything exists: no parent run, no record, no lock file
    problem = plan.launcher_problem(OmegaConf.select(config, "hydra.launcher._target_"), OmegaConf.select(config, "hydra.launcher"))
    if problem:
        raise plan.SweepConfigError(f"config error: hydra/launcher: {problem}\nnothing was run and no run was logged")
    jobs = plan.job_list(config)
    rerun = bool(OmegaConf.select(config, "rerun", default=False))
    key = plan.sweep_key(name, jobs)
    records_dir = str(OmegaConf.select(config, "records_dir", default="reports/runs"))
    plan.check_jobs_compose(config, jobs)
    try:
        records.check_writable(records_dir)
    except records.RecordError as exc:
        raise plan.SweepConfigError(f"config error: {exc}") from None
    # this sweep's lock, before its records or its MLflow parent are looked up: a second run of
    # the same sweep started at the same moment finds it held and is refused (nothing is shared)
    sweep_lock.hold_sweep(records_dir, key, name)  # held until the process ends or another sweep starts
    tracking = _tracking(config)
    pfolder, prec, resumed, stale = _parent_record(records_dir, key, name, rerun, _params(config, name, jobs))
    parent_id, exp_id, offline = None, None, None
    try:
        parent_id, exp_id, found_open, pfolder = _parent_run(tracking, prec, pfolder, records_dir, key, rerun)
        resumed = resumed or found_open
        for sfolder, srec in stale:  # the killed run's parent: its MLflow run ends FAILED too
            track.log_record(tracking, sfolder, srec)
    except Exception as exc:  # unreachable server, locked store: the sweep runs, results stay local
        offline = console.why(exc)
        track.mark_down(tracking.resolved_uri(), exc)
    prec.open_run_id = parent_id or prec.open_run_id
    prec.status = Status.RUNNING
    records.write(pfolder, prec)
    st = SweepState(
        name,
        parent_id,
        exp_id,
        tracking.resolved_uri(),
        jobs,
        plan.swept_keys(jobs),
        rerun,
        records_dir,
        prec.record_id,
        key,
        resumed=resumed,
    )
    set_current(st)
    console.started(st, tracking.experiment, offline, _sync_command(st))
    return st


def collect_remote_jobs(st: SweepState) -> None:
    """Jobs a cluster launcher ran in other processes: read back from their local records, or
    from the shared tracking server when their records are on the nodes' own disks."""
    have = {r.num for r in st.records}
    for _, rec in resume.job_records(st.records_dir, st.parent_record):
        num = int(rec.tags.get("sweep.job", -1))
        if num in have or not 0 <= num < len(st.jobs):
            continue
        _add_outcome(st, num, rec.status, rec.mlflow_run_id, rec.reason, rec.seconds, rec.record_id, rec.metrics)
        have.add(num)
    if len(have) < len(st.jobs) and st.parent_run_id and st.experiment_id:
        try:
            runs = st.client().search_runs(
                [st.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{st.parent_run_id}'", max_results=5000
            )
        except Exception:
            runs = []
        for run in runs:
            num = int(run.data.tags.get("sweep.job", -1))
            if num in have or not 0 <= num < len(st.jobs) or run.data.tags.get("record.complete") != "true":
                continue
            tags = run.data.tags
            _add_outcome(
                st,
                num,
                tags.get("status", Status.FAILED),
                run.info.run_id,
                tags.get("reason"),
                0.0,
                tags.get("record_id"),
                run.data.metrics,
            )
            have.add(num)
    st.records.sort(key=lambda r: r.num)


def _add_outcome(st: SweepState, num: int, status, run_id, reason, seconds: float, record_id, metrics) -> None:
    """A job found done by an earlier run of the sweep, as its outcome."""
    st.records.append(JobOutcome(num, st.jobs[num], plan.label(st.jobs[num], st.swept_keys), status, run_id, reason, seconds, record_id))
    st.metrics[num] = dict(metrics)


def retime_leaders(st: SweepState, config: DictConfig) -> None:
    """Time the sweep's leading configurations again, in alternation (pipeline/sweep/retime.py), so that
    the decision knows the noise between runs; a failure here costs the ties, never the sweep."""

    launcher = OmegaConf.select(config, "hydra.launcher._target_")
    if plan.runs_elsewhere(launcher):
        # the jobs ran on other nodes: re-timing them here (on the launching host) would compare
        # other hardware; ties rest on each criterion's tolerance
        print(f"[sweep {st.name}] leaders not re-timed: the jobs ran through {launcher.rsplit('.', 1)[-1]}, not on this host", flush=True)
        return
    found = []
    for r in st.records:
        if r.record_id and r.status in RESULT_STATUSES:
            try:
                folder = records.folder(st.records_dir, r.record_id)
                found.append((folder, records.load(folder)))
            except (records.UnreadableRecord, OSError):
                pass
    try:
        typed = to_config(config)
        retime.retime_sweep(st.parent_folder, found, typed.decision, typed.cache_dir, progress=lambda m: print(m, flush=True))
    except Exception as exc:
        print(
            f"[sweep {st.name}] leaders not re-timed ({console.why(exc)}): ties rest on each criterion's tolerance only",
            file=sys.stderr,
            flush=True,
        )


def _write_parent(st: SweepState) -> bool:
    """jobs.json, the job counts and the status on the parent's local record; False when the
    disk refused them (the parent run is then ended FAILED and the summary printed anyway)."""
    missing = len(st.jobs) - len(st.records)
    prec = records.load(st.parent_folder)
    jobs_json = {"sweep": st.name, "jobs": [{**asdict(r), "overrides": [redact(o) for o in r.overrides]} for r in st.records]}
    statuses = (Status.OK, Status.SKIPPED, Status.FAILED, Status.DONE)
    prec.metrics.update({f"sweep.jobs_{s}": float(sum(r.status == s for r in st.records)) for s in statuses})
    prec.tags["sweep.complete"] = str(missing == 0).lower()
    prec.status = Status.FAILED if (st.failed or missing > 0) else Status.OK
    prec.seconds = time.perf_counter() - st.started
    try:
        write_atomic(st.parent_folder / "jobs.json", json.dumps(jobs_json, indent=2))
        records.write(st.parent_folder, prec)
        return True
    except OSError as exc:
        st.exit_code = Exit.FAILED
        print(
            f"[sweep {st.name}] the sweep's record {st.parent_folder} could not be written ({console.why(exc)}); "
            "its parent run is ended FAILED",
            file=sys.stderr,
            flush=True,
        )
        if st.parent_run_id and not track.is_down(st.tracking_uri):
            try:
                st.client().set_terminated(st.parent_run_id, "FAILED")
            except Exception as exc2:
                print(f"[sweep {st.name}] MLflow did not take that either ({console.why(exc2)})", file=sys.stderr, flush=True)
        console.summary(st, st.parent_run_id)
        return False


def end(st: SweepState, config: DictConfig) -> Exit:
    """Write jobs.json to the parent record, log what is not logged yet, decide, end the parent;
    returns the sweep's exit code."""

    collect_remote_jobs(st)
    failed = bool(st.failed) or len(st.records) < len(st.jobs)
    retime_leaders(st, config)
    if not _write_parent(st):
        return st.exit_code
    # log what MLflow does not have yet (the jobs it could not take, then the parent itself):
    # a store that was down gets one more try here
    track.retry(st.tracking_uri)
    report = sync(st.records_dir, _tracking(config), sweep_record=st.parent_record)
    prec = records.load(st.parent_folder)
    if prec.mlflow_run_id:
        st.parent_run_id = prec.mlflow_run_id
        for r in st.records:  # jobs logged just now
            if r.run_id is None and r.record_id:
                try:
                    r.run_id = records.load(records.folder(st.records_dir, r.record_id)).mlflow_run_id
                except (OSError, ValueError):
                    pass
    unsynced = [rid for rid in report.failed if rid]
    st.exit_code = Exit.FAILED if failed else (Exit.UNSYNCED if unsynced else Exit.OK)
    finish(st, st.parent_run_id if prec.mlflow_run_id else None, config)
    if unsynced:
        print(
            f"\n[sweep {st.name}] MLflow ({redact(st.tracking_uri)}) could not take {len(unsynced)} record(s) "
            f"(jobs and/or the sweep's parent run). Nothing is lost: they are in {st.records_dir}/. "
            f"Once MLflow is reachable, log them (each exactly once) with:\n    {_sync_command(st)}",
            file=sys.stderr,
            flush=True,
        )
    return st.exit_code


def finish(st: SweepState, parent_run_id: str | None, cfg: DictConfig) -> None:
    """Runs once when a sweep ends: prints the summary, then the decision matrix.

    This is the single place where sweep-level analysis hooks in.  ``parent_run_id`` is None
    when the parent could not be logged (MLflow unreachable): no decision until it is synced.
    """
    console.summary(st, parent_run_id)
    if parent_run_id is None:
        print(
            "[sweep] no decision: MLflow is unreachable; after `python -m pipeline.sync`, `python -m pipeline.decide` decides the sweep",
            flush=True,
        )
        return

    try:
        typed = to_config(cfg)
        decision = decision_pkg.decide_sweep(parent_run_id, typed.decision, typed.tracking.resolved_uri(), out_dir=typed.reports_dir)
    except decision_pkg.DecideError as exc:
        print(f"[sweep] no decision: {exc}", flush=True)
        return
    except PipelineError as exc:  # a bad value in the sweep's own settings: one line, as everywhere
        print(f"[sweep] no decision: {console.why(exc)}", flush=True)
        return
    except Exception as exc:  # a bug of ours, or the store went away after the sync: say which
        traceback.print_exc()
        print(f"[sweep] no decision: {console.why(exc)} (python -m pipeline.decide decides the sweep again)", flush=True)
        return
    contended = decision.contended
    if len(contended):
        lines = [f"  {r['label']}: {r['contended']}" for _, r in contended.iterrows()]
        print(
            f"\n[sweep] {len(contended)} configuration(s) measured on a busy machine; their latencies are not "
            "comparable and support no go:\n" + "\n".join(lines),
            flush=True,
        )
    if os.environ.get(STAGE_ENV) == "sweep":  # dvc repro: the decide stage says the study's decision, once
        w = decision.winner
        print(
            f"\n[sweep] decided on the parent run: {decision.verdict.upper()}, {w.label if w else 'no winner'} "
            "(the study's decision and report: the decide stage)",
            flush=True,
        )
    else:
        print(f"\n{decision.recommendation}\n(report: {decision.out_dir / 'report.html'})", flush=True)
    print(console.mlflow_ui_hint(typed.tracking.resolved_uri()), flush=True)
