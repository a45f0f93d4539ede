"""Sweeps: a Hydra multirun with one MLflow parent run and one child run per job.

    python -m pipeline +sweep=providers          # a sweep config from conf/sweep/
    python -m pipeline -m pooling=mean,cls       # any dimension from the command line
    python -m pipeline +sweep=batch rerun=true   # run every job again, even those already done

How it fits together:

- :class:`SweepCallback` (``hydra.callbacks.sweep`` in ``conf/config.yaml``) runs in the
  process that launches the jobs.  ``on_multirun_start`` lists the jobs the basic sweeper
  will launch, creates (or resumes) the parent run and keeps the sweep's state in this
  module; ``on_multirun_end`` writes ``jobs.json`` to the parent, calls :func:`on_sweep_end`
  and ends the parent run.
- :func:`run_job` is what ``__main__`` calls for each job of a multirun.  It never raises:
  a job that fails is logged as ``status=failed`` (traceback artifact) and the sweep goes
  on; the command exits 1 at the end (:func:`exit_code`).  Skipped jobs are not failures.
- Resume: every job run carries the tag ``config_hash`` (the resolved config without the
  tracking settings, paths of outputs, the cache folder and ``rerun``).  A job whose hash
  already has a FINISHED run with ``status=ok`` in the experiment is not run again, unless
  ``rerun=true``.  A run left RUNNING by a killed process never counts as done.  A killed
  sweep leaves its parent RUNNING; the next run of the same sweep (same job list) resumes
  that parent, so its children end up under one parent.  A job reused from another sweep
  (or from a single run) keeps its run where it is; the parent's ``jobs.json`` lists every
  job of the sweep with its run id, reused or not, so read a sweep's results from there.
- Measurement hygiene: jobs run one after another (Hydra's basic launcher).  A launcher
  that runs jobs in parallel on one host is refused: concurrent benchmarks share the CPU
  cores, caches and memory bandwidth, so each measures the others' load.  A cluster launcher
  that gives each job an exclusive node (``hydra/launcher=slurm``) is allowed; its jobs read
  the sweep's state from ``$PIPELINE_SWEEP_STATE`` and the sweep's end reads them back.
- Resilience: the parent and every job are local records first (``records.py``); when MLflow
  is unreachable the sweep goes on, retries at its end (:func:`pipeline.sync.sync`) and exits
  4 (``EXIT_UNSYNCED``) if some results are still only local, printing the sync command.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from .exitcodes import Exit

SEQUENTIAL_LAUNCHERS = ("hydra._internal.core_plugins.basic_launcher.BasicLauncher",)
# keys that do not change what a job measures; left out of the config hash
HASH_EXCLUDED = ("hydra", "tracking", "cache_dir", "rerun", "reports_dir", "records_dir", "decision")


# -- config hash and job list ---------------------------------------------------------------
def config_hash(dcfg: DictConfig | dict) -> str:
    """A stable hash of the resolved config, without tracking/paths/rerun (see module doc)."""
    if isinstance(dcfg, DictConfig):
        data = OmegaConf.to_container(dcfg, resolve=True)
    else:
        data = dict(dcfg)
    for key in HASH_EXCLUDED:
        data.pop(key, None)
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def job_list(config: DictConfig) -> list[list[str]]:
    """The override lists the basic sweeper will launch, in its order."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    args = [f"{k}={v}" for k, v in params.items()]
    args += list(OmegaConf.select(config, "hydra.overrides.task") or [])
    parsed = OverridesParser.create().parse_overrides(args)
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


# launchers that put each job on its own machine (a node reserved for it); see conf/hydra/launcher/
CLUSTER_LAUNCHERS = ("hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher", "hydra_plugins.pipeline_slurm.SlurmLauncher")


def launcher_problem(launcher_target: str | None, launcher_cfg: Any = None) -> str | None:
    """Why a launcher is refused for benchmark jobs, or None when it runs them one by one or
    each job alone on a node of its own (a Slurm job with an exclusive node, one task)."""
    if not launcher_target or launcher_target in SEQUENTIAL_LAUNCHERS:
        return None
    if launcher_target in CLUSTER_LAUNCHERS:
        get = (lambda k, d=None: OmegaConf.select(launcher_cfg, k, default=d)) if launcher_cfg is not None else (lambda k, d=None: d)
        extra = get("additional_parameters", {}) or {}
        exclusive = str(extra.get("exclusive", "")).lower() in ("true", "1", "yes", "user", "mcs")
        if exclusive and (get("tasks_per_node", 1) or 1) == 1 and (get("nodes", 1) or 1) == 1:
            return None
        return (
            f"refused: launcher {launcher_target} must give each benchmark job a node of its own "
            "(hydra.launcher.additional_parameters.exclusive=true, tasks_per_node=1, nodes=1), or jobs "
            "sharing a node would measure each other's load; see conf/hydra/launcher/slurm.yaml"
        )
    return (
        f"refused: launcher {launcher_target} runs jobs in parallel; benchmark jobs on one host would "
        f"share its {os.cpu_count()} CPU cores, caches and memory bandwidth, so each latency would include "
        "the other jobs' load. Use the default basic launcher (jobs one after another), or a cluster "
        "launcher with one job per node (hydra/launcher=slurm)."
    )


# -- state of the sweep in this process -----------------------------------------------------------
@dataclass
class JobRecord:
    num: int
    overrides: list[str]
    label: str
    status: str  # ok | skipped | failed | done (already done by an earlier run: reused)
    run_id: str | None  # the MLflow run (None: kept locally until `python -m pipeline.sync`)
    reason: str | None = None
    seconds: float = 0.0
    record_id: str | None = None  # the local record (records_dir/<record_id>)


@dataclass
class SweepState:
    name: str
    parent_run_id: str | None  # None: MLflow was unreachable when the sweep started
    experiment_id: str | None
    tracking_uri: str
    jobs: list[list[str]]
    swept_keys: list[str]
    rerun: bool
    records_dir: str = "reports/runs"
    parent_record: str = ""  # the parent's local record id (records_dir/<id>)
    sweep_key: str = ""
    started: float = field(default_factory=time.perf_counter)
    records: list[JobRecord] = field(default_factory=list)
    resumed: bool = False
    metrics: dict[int, dict[str, float]] = field(default_factory=dict)  # per job num, for the summary

    @property
    def failed(self) -> list[JobRecord]:
        return [r for r in self.records if r.status == "failed"]

    @property
    def parent_folder(self):
        from . import records

        return records.folder(self.records_dir, self.parent_record)

    def client(self):
        from mlflow.tracking import MlflowClient

        return MlflowClient(self.tracking_uri)

    def to_env(self) -> str:
        keep = ("name", "parent_run_id", "experiment_id", "tracking_uri", "jobs", "swept_keys", "rerun", "records_dir", "parent_record", "sweep_key")
        return json.dumps({k: getattr(self, k) for k in keep})


STATE: SweepState | None = None
_EXIT_CODE = 0
# the sweep's state for jobs a cluster launcher runs in other processes (on other machines)
STATE_ENV = "PIPELINE_SWEEP_STATE"
EXIT_BUSY = Exit.BUSY  # the same sweep is running in another process: refused, nothing ran
EXIT_UNSYNCED = Exit.UNSYNCED  # every job ran, but some results are only in the local records (see pipeline.sync)


def exit_code() -> int:
    """1 when a job of the last sweep in this process failed; 4 when every job ran but some
    results could not be logged to MLflow (kept locally: ``python -m pipeline.sync``); else 0."""
    return _EXIT_CODE


def _fmt_s(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def _label(overrides: list[str], swept: list[str]) -> str:
    picked = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") in swept]
    return " ".join(picked or overrides) or "(defaults)"


def _param_key(k: str) -> str:
    return "sweep." + "".join(c if c.isalnum() or c in "._-/ " else "_" for c in k.lstrip("+~"))


def _why(exc: BaseException) -> str:
    from . import track

    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return track.redact(f"{type(exc).__name__}: {first[:200]}")


# -- parent run ----------------------------------------------------------------------------------
def _local_parent(records_dir: str, sweep_key: str):
    """The latest parent record of this sweep that never ended (a killed sweep), or None."""
    from . import records

    found = [
        (f, r) for f, r in records.iter_records(records_dir)
        if r.is_parent and r.tags.get("sweep.key") == sweep_key and r.status == "running"
    ]
    return found[-1] if found else None


class SweepConfigError(ValueError):
    """A job of the sweep names a config option that does not exist; nothing was run."""


def check_jobs_compose(config: DictConfig, jobs: list[list[str]]) -> None:
    """Compose every job's config before anything runs or is logged: a sweep that names an
    option that does not exist (``model=nope``) is refused at once, not after hours of jobs."""
    from hydra.core.global_hydra import GlobalHydra

    gh = GlobalHydra.instance()
    if not gh.is_initialized():
        return
    loader = gh.config_loader()
    for num, job in enumerate(jobs):
        try:
            loader.load_sweep_config(config, list(job))
        except Exception as exc:
            msg = str(exc).split("\nConfig search path")[0].strip()
            raise SweepConfigError(
                f"config error: sweep job {num + 1}/{len(jobs)} ({' '.join(job)}): {msg}\n"
                "nothing was run and no run was logged"
            ) from None


def start_sweep(config: DictConfig) -> SweepState:
    """Create (or resume) the parent run and its local record; called from on_multirun_start.

    When MLflow cannot be reached the sweep still runs: the parent record is kept locally and
    ``python -m pipeline.sync`` (run at the sweep's end, or by hand later) creates the parent run.
    """
    global STATE, _EXIT_CODE
    from . import records, track
    from .config import TrackingConfig

    _EXIT_CODE = 0
    track.quiet()
    name = OmegaConf.select(config, "hydra.runtime.choices.sweep") or "cli"
    # refused before anything exists: no parent run, no record, no lock file
    problem = launcher_problem(OmegaConf.select(config, "hydra.launcher._target_"), OmegaConf.select(config, "hydra.launcher"))
    if problem:
        raise SweepConfigError(f"config error: hydra/launcher: {problem}\nnothing was run and no run was logged")
    jobs = job_list(config)
    seen: dict[str, set[str]] = {}
    for job in jobs:
        for o in job:
            k, _, v = o.partition("=")
            seen.setdefault(k.lstrip("+~"), set()).add(v)
    swept = [k for k, vs in seen.items() if len(vs) > 1]
    rerun = bool(OmegaConf.select(config, "rerun", default=False))
    key_jobs = [[o for o in job if o.split("=", 1)[0].lstrip("+~") != "rerun"] for job in jobs]
    sweep_key = hashlib.sha256(json.dumps({"name": name, "jobs": key_jobs}, sort_keys=True).encode()).hexdigest()[:16]
    records_dir = str(OmegaConf.select(config, "records_dir", default="reports/runs"))
    check_jobs_compose(config, jobs)
    try:
        records.check_writable(records_dir)
    except records.RecordError as exc:
        raise SweepConfigError(f"config error: {exc}") from None
    # this sweep's lock, before its records or its MLflow parent are looked up: a second run of
    # the same sweep started at the same moment finds it held and is refused (nothing is shared)
    _hold(records_dir, sweep_key, name)

    tracking = TrackingConfig(**OmegaConf.to_container(config.tracking, resolve=True))
    uri = tracking.resolved_uri()
    params = {"sweep": name, "sweep.jobs": str(len(jobs))}
    for k, v in (OmegaConf.select(config, "hydra.sweeper.params") or {}).items():
        params[_param_key(k)] = track.redact(str(v))
    for o in OmegaConf.select(config, "hydra.overrides.task") or []:
        k, _, v = o.partition("=")
        params[_param_key(k)] = track.redact(v)[:6000]

    # rerun=true starts a new parent: the one a killed run of this sweep left open is closed
    # (failed, sweep.complete=false), not left RUNNING
    stale = []
    if rerun:
        from .sync import close_stale_parents

        stale = close_stale_parents(records_dir, sweep_key)
    # the parent's local record: resumed when a killed run of the same sweep left one open
    prev = None if rerun else _local_parent(records_dir, sweep_key)
    if prev is not None:
        pfolder, prec = prev
    else:
        started = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        prec = records.RunRecord.new(
            f"sweep {name} {started}", params, {"sweep.role": "parent", "sweep.key": sweep_key, "sweep.name": name}
        )
        pfolder = records.folder(records_dir, prec.record_id)

    parent_id, exp_id, resumed, offline = None, None, prev is not None, None
    try:
        exp_id = track.setup(tracking)
        client = _client(uri)
        if prec.open_run_id:  # this record's parent run, created by the killed run
            run = client.get_run(prec.open_run_id)
            if run.info.lifecycle_stage == "active" and run.info.status != "FINISHED":
                parent_id = prec.open_run_id
        if parent_id is None and not rerun:
            found = client.search_runs(
                [exp_id],
                filter_string=f"tags.`sweep.key` = '{sweep_key}' and tags.`sweep.role` = 'parent'",
                order_by=["attributes.start_time DESC"],
                max_results=1,
            )
            if found and found[0].info.status != "FINISHED":
                parent_id, resumed = found[0].info.run_id, True
                rid = found[0].data.tags.get("record_id")
                if rid and rid != prec.record_id and prev is None:  # started on another machine
                    prec.record_id, pfolder = rid, records.folder(records_dir, rid)
        if parent_id is not None:
            client.update_run(parent_id, status="RUNNING")
        else:
            run = client.create_run(exp_id, run_name=prec.run_name, start_time=int(prec.created * 1000),
                                    tags={**prec.all_tags(), "mlflow.runName": prec.run_name})
            parent_id = run.info.run_id
            from mlflow.entities import Param

            client.log_batch(parent_id, params=[Param(k, v) for k, v in prec.params.items()])
        for sfolder, srec in stale:  # the killed run's parent: its MLflow run ends FAILED too
            track.log_record(tracking, sfolder, srec)
    except Exception as exc:  # unreachable server, locked store: the sweep runs, results stay local
        offline = _why(exc)
        track.mark_down(uri, exc)
    prec.open_run_id = parent_id or prec.open_run_id
    prec.status = "running"
    records.write(pfolder, prec)
    STATE = SweepState(name, parent_id, exp_id, uri, jobs, swept, rerun, records_dir, prec.record_id, sweep_key, resumed=resumed)
    os.environ[STATE_ENV] = STATE.to_env()
    if offline:
        print(
            f"[sweep {name}] {len(jobs)} jobs; MLflow ({track.redact(uri)}) is unreachable ({offline}).\n"
            f"[sweep {name}] the sweep runs anyway: every job's results are kept in {records_dir}/ "
            f"(sweep record {prec.record_id}); they are logged at the end if MLflow is back, else by\n"
            f"    {_sync_command(STATE)}",
            file=sys.stderr,
            flush=True,
        )
    else:
        print(
            f"[sweep {name}] {len(jobs)} jobs, {'resuming' if resumed else 'parent'} run {parent_id} "
            f"(experiment {tracking.experiment}, {track.redact(uri)})",
            flush=True,
        )
    return STATE


_LOCK = None  # the running sweep's lock on its parent record (released when the process ends)


class SweepBusy(RuntimeError):
    """The same sweep is running in another process on these records."""


def _lock_path(records_dir: str, sweep_key: str):
    from pathlib import Path

    return Path(records_dir) / f".sweep-{sweep_key}.lock"


def _hold(records_dir: str, sweep_key: str, name: str) -> None:
    """Lock this sweep (its key: name and job list) on these records for this process, before
    anything of it is looked up or created: a second run of the same sweep at the same time
    (another user, another terminal) is refused instead of sharing its parent and measuring
    every job twice under the other's load.  Held until the process ends."""
    global _LOCK
    from filelock import FileLock, Timeout

    lock = FileLock(str(_lock_path(records_dir, sweep_key)), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise SweepBusy(
            f"refused: sweep {name!r} (key {sweep_key}, records {records_dir}) is running in another process "
            "right now; wait for it to finish, or run a different sweep"
        ) from None
    if _LOCK is not None:
        _LOCK.release()
    _LOCK = lock


def sweep_lock_free(records_dir: str, sweep_key: str) -> bool:
    """True when no process holds the lock of sweep ``sweep_key`` on ``records_dir`` (its
    process is gone); a sweep this process runs counts as held."""
    from filelock import FileLock, Timeout

    path = _lock_path(records_dir, sweep_key)
    if _LOCK is not None and str(_LOCK.lock_file) == str(path):
        return False
    lock = FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        return False
    lock.release()
    return True


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


def _sync_command(st: SweepState) -> str:
    from .sync import command

    return command(st.records_dir, st.tracking_uri)


def _collect_remote_jobs(st: SweepState) -> None:
    """Jobs a cluster launcher ran in other processes: read back from their local records."""
    from . import records

    have = {r.num for r in st.records}
    for folder, rec in records.iter_records(st.records_dir):
        if rec.tags.get("sweep.parent_record") != st.parent_record or rec.is_parent:
            continue
        num = int(rec.tags.get("sweep.job", -1))
        if num in have or not 0 <= num < len(st.jobs):
            continue
        label = _label(st.jobs[num], st.swept_keys)
        st.records.append(JobRecord(num, st.jobs[num], label, rec.status, rec.mlflow_run_id, rec.reason, rec.seconds, rec.record_id))
        st.metrics[num] = dict(rec.metrics)
        have.add(num)
    if len(have) < len(st.jobs) and st.parent_run_id and st.experiment_id:
        try:  # records on the nodes' own disks: the jobs' runs in the shared tracking server
            runs = st.client().search_runs(
                [st.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{st.parent_run_id}'", max_results=5000
            )
        except Exception:
            runs = []
        for run in runs:
            num = int(run.data.tags.get("sweep.job", -1))
            if num in have or not 0 <= num < len(st.jobs) or run.data.tags.get("record.complete") != "true":
                continue
            label = _label(st.jobs[num], st.swept_keys)
            status = run.data.tags.get("status", "failed")
            st.records.append(JobRecord(num, st.jobs[num], label, status, run.info.run_id, run.data.tags.get("reason"),
                                        0.0, run.data.tags.get("record_id")))
            st.metrics[num] = dict(run.data.metrics)
            have.add(num)
    st.records.sort(key=lambda r: r.num)


def end_sweep(config: DictConfig) -> None:
    """Write jobs.json to the parent record, log what is not logged yet, decide, end the parent."""
    global _EXIT_CODE
    from . import records, track
    from .config import TrackingConfig
    from .sync import sync

    st = STATE
    if st is None:
        return
    _collect_remote_jobs(st)
    counts = {s: sum(r.status == s for r in st.records) for s in ("ok", "skipped", "failed", "done")}
    missing = len(st.jobs) - len(st.records)
    failed = bool(st.failed) or missing > 0
    pfolder = st.parent_folder
    _retime_leaders(st, config)
    # the parent's local record first: jobs.json, counts, status
    prec = records.load(pfolder)
    jobs_json = {"sweep": st.name, "jobs": [{**asdict(r), "overrides": [track.redact(o) for o in r.overrides]} for r in st.records]}
    prec.metrics.update({f"sweep.jobs_{s}": float(n) for s, n in counts.items()})
    prec.tags["sweep.complete"] = str(missing == 0).lower()
    prec.status = "failed" if failed else "ok"
    prec.seconds = time.perf_counter() - st.started
    try:
        from .export import write_atomic

        write_atomic(pfolder / "jobs.json", json.dumps(jobs_json, indent=2))
        records.write(pfolder, prec)
    except OSError as exc:  # a full disk: end the parent run truthfully, print the summary anyway
        _EXIT_CODE = Exit.FAILED
        print(f"[sweep {st.name}] the sweep's record {pfolder} could not be written ({_why(exc)}); "
              "its parent run is ended FAILED", file=sys.stderr, flush=True)
        if st.parent_run_id and not track.is_down(st.tracking_uri):
            try:
                st.client().set_terminated(st.parent_run_id, "FAILED")
            except Exception as exc2:
                print(f"[sweep {st.name}] MLflow did not take that either ({_why(exc2)})", file=sys.stderr, flush=True)
        print_summary(st.parent_run_id, config)
        return

    # log what MLflow does not have yet (the jobs it could not take, then the parent itself):
    # a store that was down gets one more try here
    tracking = TrackingConfig(**OmegaConf.to_container(config.tracking, resolve=True))
    track.retry(st.tracking_uri)
    report = sync(st.records_dir, tracking, sweep_record=st.parent_record)
    prec = records.load(pfolder)
    if prec.mlflow_run_id:
        st.parent_run_id = prec.mlflow_run_id
        for r in st.records:  # jobs logged just now
            if r.run_id is None and r.record_id:
                try:
                    r.run_id = records.load(records.folder(st.records_dir, r.record_id)).mlflow_run_id
                except (OSError, ValueError):
                    pass
    unsynced = [rid for rid in report.failed if rid]
    _EXIT_CODE = Exit.FAILED if failed else (Exit.UNSYNCED if unsynced else Exit.OK)
    on_sweep_end(st.parent_run_id if prec.mlflow_run_id else None, config)
    if unsynced:
        print(
            f"\n[sweep {st.name}] MLflow ({track.redact(st.tracking_uri)}) could not take {len(unsynced)} record(s) "
            f"(jobs and/or the sweep's parent run). Nothing is lost: they are in {st.records_dir}/. "
            f"Once MLflow is reachable, log them (each exactly once) with:\n    {_sync_command(st)}",
            file=sys.stderr,
            flush=True,
        )


def _retime_leaders(st: SweepState, config: DictConfig) -> None:
    """Time the sweep's leading configurations again, in alternation (pipeline/retime.py), so that
    the decision knows the noise between runs; a failure here costs the ties, never the sweep."""
    from . import records, retime
    from .config import to_config

    launcher = OmegaConf.select(config, "hydra.launcher._target_")
    if launcher and launcher not in SEQUENTIAL_LAUNCHERS:
        # the jobs ran on other nodes: re-timing them here (on the launching host) would compare
        # other hardware; ties rest on each criterion's tolerance
        print(f"[sweep {st.name}] leaders not re-timed: the jobs ran through {launcher.rsplit('.', 1)[-1]}, "
              "not on this host", flush=True)
        return
    mine = {r.record_id for r in st.records if r.record_id and r.status in ("ok", "done")}
    found = [(f, r) for f, r in records.iter_records(st.records_dir) if r.record_id in mine]
    try:
        typed = to_config(config)
        retime.retime_sweep(st.parent_folder, found, typed.decision, typed.cache_dir, progress=lambda m: print(m, flush=True))
    except Exception as exc:
        print(f"[sweep {st.name}] leaders not re-timed ({_why(exc)}): ties rest on each criterion's tolerance only",
              file=sys.stderr, flush=True)


def on_sweep_end(parent_run_id: str | None, cfg: DictConfig) -> None:
    """Runs once when a sweep ends: prints the summary, then the decision matrix.

    This is the single place where sweep-level analysis hooks in.  ``parent_run_id`` is None
    when the parent could not be logged (MLflow unreachable): no decision until it is synced.
    """
    print_summary(parent_run_id, cfg)
    if parent_run_id is None:
        print("[sweep] no decision: MLflow is unreachable; after `python -m pipeline.sync`, "
              "`python -m pipeline.decide` decides the sweep", flush=True)
        return
    # the decision matrix, logged on the parent run and written under reports/
    from . import decision as decision_pkg
    from .config import to_config

    try:
        typed = to_config(cfg)
        decision = decision_pkg.decide_sweep(parent_run_id, typed.decision, typed.tracking.resolved_uri(), out_dir=typed.reports_dir)
    except decision_pkg.DecideError as exc:
        print(f"[sweep] no decision: {exc}", flush=True)
        return
    except Exception as exc:  # a bug of ours, or the store went away after the sync: say which
        traceback.print_exc()
        print(f"[sweep] no decision: {_why(exc)} (python -m pipeline.decide decides the sweep again)", flush=True)
        return
    contended = decision.contended
    if len(contended):
        lines = [f"  {r['label']}: {r['contended']}" for _, r in contended.iterrows()]
        print(f"\n[sweep] {len(contended)} configuration(s) measured on a busy machine; their latencies are not "
              "comparable and support no go:\n" + "\n".join(lines), flush=True)
    print(f"\n{decision.recommendation}\n(report: {decision.out_dir / 'report.md'})", flush=True)


def print_summary(parent_run_id: str | None, cfg: DictConfig | None = None) -> None:
    """A table of the sweep's jobs (from the jobs' local records, or MLflow for reused runs)."""
    st = STATE
    if st is None or (parent_run_id is not None and st.parent_run_id != parent_run_id):
        return
    header = ("job", "config", "status", "p50 ms", "p95 ms", "sent/s", "STS", "nodes", "time", "run", "note")
    rows = []
    for r in st.records:
        m: dict[str, float] = st.metrics.get(r.num, {})
        if not m and r.run_id and r.status in ("ok", "done"):
            try:
                m = st.client().get_run(r.run_id).data.metrics
            except Exception:
                m = {}

        def f(name: str, fmt: str) -> str:
            return format(m[name], fmt) if name in m else "-"

        rows.append(
            (
                f"{r.num + 1}/{len(st.jobs)}",
                r.label,
                ("done (reused)" if r.status == "done" else r.status) + (" (contended)" if m.get("bench.contended") == 1.0 else ""),
                f("latency.p50_ms", ".2f"),
                f("latency.p95_ms", ".2f"),
                f("throughput.sentences_per_s", ".1f"),
                f("quality.stsb_spearman", ".2f"),
                f("provider.node_share", ".2f"),
                _fmt_s(r.seconds),
                (r.run_id or "local")[:8],
                (r.reason or "")[:100],
            )
        )
    loaded = [st.metrics.get(r.num, {}) for r in st.records]
    if any("load.max_qps_at_p95_target" in m for m in loaded):  # a load sweep: what each sustains
        header = header[:6] + ("qps@p95", "p95@100/s") + header[6:]
        rows = [
            row[:6] + (
                format(m["load.max_qps_at_p95_target"], ".0f") if "load.max_qps_at_p95_target" in m else "-",
                format(m["load.p95_ms_at_100qps"], ".1f") if "load.p95_ms_at_100qps" in m else "-",
            ) + row[6:]
            for row, m in zip(rows, loaded)
        ]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda row: "  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip()  # noqa: E731
    counts = {s: sum(r.status == s for r in st.records) for s in ("ok", "done", "skipped", "failed")}
    out = [
        "",
        f"[sweep {st.name}] summary: parent run {parent_run_id or '(not logged yet)'}, {len(st.records)}/{len(st.jobs)} jobs, "
        f"{counts['ok']} ok, {counts['done']} already done, {counts['skipped']} skipped, {counts['failed']} failed, "
        f"{_fmt_s(time.perf_counter() - st.started)}",
        line(header),
        line(["-" * w for w in widths]),
        *(line(r) for r in rows),
        "",
    ]
    print("\n".join(out), flush=True)


COMPOSED = False  # set once Hydra composed the config (a callback ran): later errors are not config errors


def _refuse_credentials(config: DictConfig) -> None:
    """Before Hydra writes its output folder (.hydra/overrides.yaml) or prints launch lines:
    a ``tracking.uri`` given on the command line or in a config file must not hold credentials;
    they would be written and printed as they are.  The environment carries them instead."""
    global COMPOSED
    from . import track
    from .config import has_credentials

    COMPOSED = True
    track.redact_logging()
    raw = OmegaConf.to_container(config.tracking, resolve=False).get("uri") if "tracking" in config else None
    given = [o for o in (OmegaConf.select(config, "hydra.overrides.task") or []) if track.has_url_credentials(o)]
    if given or (isinstance(raw, str) and not raw.startswith("${") and has_credentials(raw)):
        field = given[0].split("=", 1)[0].lstrip("+~") if given else "tracking.uri"
        print(
            f"config error: {field}: holds credentials (user:password@); they would be written to Hydra's "
            "output folder and printed. Put them in MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD "
            "(or the whole URI in MLFLOW_TRACKING_URI) instead. Nothing was run.",
            file=sys.stderr, flush=True,
        )
        raise SystemExit(Exit.CONFIG)


class SweepCallback(Callback):
    """Hydra callback: the parent run around a multirun (see the module docstring)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _refuse_credentials(config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _refuse_credentials(config)
        try:
            start_sweep(config)
        except SweepBusy as exc:  # Hydra only warns about a callback's exception: stop here
            print(str(exc), file=sys.stderr, flush=True)
            raise SystemExit(Exit.BUSY) from None
        except SweepConfigError as exc:
            print(str(exc), file=sys.stderr, flush=True)
            raise SystemExit(Exit.CONFIG) from None  # as a bad single job
        except Exception:  # Hydra would only warn; a sweep without its parent must not run
            traceback.print_exc()
            raise

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            end_sweep(config)
        except Exception:
            global _EXIT_CODE
            _EXIT_CODE = 1
            traceback.print_exc()
            raise


# -- one job of a sweep ----------------------------------------------------------------------------
def find_done(client, experiment_id: str, chash: str):
    """The latest FINISHED run with status=ok and this config hash, or None."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.config_hash = '{chash}' and tags.status = 'ok' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None


def find_done_locally(records_dir: str, chash: str, tracking_uri: str):
    """The latest local record with status ok and this config hash that belongs to this store
    (logged to it, or not logged anywhere yet), or None."""
    from . import records

    found = [
        r for _, r in records.iter_records(records_dir)
        if r.status == "ok" and r.tags.get("config_hash") == chash and (r.tracking_uri in (None, tracking_uri))
    ]
    return found[-1] if found else None


def _progress(st: SweepState, num: int, label: str) -> None:
    elapsed = time.perf_counter() - st.started
    ran = [r.seconds for r in st.records if r.status in ("ok", "failed")]
    left = len(st.jobs) - len(st.records)
    eta = f"~{_fmt_s(sum(ran) / len(ran) * left)} left" if ran else "time left unknown"
    print(f"[sweep {st.name}] job {num + 1}/{len(st.jobs)}: {label} | elapsed {_fmt_s(elapsed)}, {eta}", flush=True)


def _record_failed_job(st: SweepState, dcfg: DictConfig, num: int, overrides: list[str], tags: dict, exc: BaseException, tb: str):
    """A failed job that raised before it had a record of its own (bad config, wrong weights):
    a failed record (overrides, traceback), logged like any other."""
    from . import records, track
    from .config import TrackingConfig

    rec = records.RunRecord.new(f"{st.name}-job{num}-failed", {}, tags)
    rec.status, rec.reason = "failed", track.redact(f"{type(exc).__name__}: {str(exc)[:400]}")
    folder = records.folder(st.records_dir, rec.record_id)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "overrides.txt").write_text(track.redact("\n".join(overrides) + "\n"))
    (folder / "traceback.txt").write_text(track.redact(tb))
    records.save(folder, rec)
    tracking = TrackingConfig(**OmegaConf.to_container(dcfg.tracking, resolve=True))
    return rec.record_id, track.log_record(tracking, folder, rec)


def _state_from_env() -> SweepState | None:
    raw = os.environ.get(STATE_ENV)
    if not raw:
        return None
    return SweepState(**json.loads(raw))


def run_job(dcfg: DictConfig) -> JobRecord:
    """Run one job of a multirun; never raises for a job's own failure."""
    global STATE
    from pathlib import Path

    from hydra.core.hydra_config import HydraConfig

    from . import records, track
    from .config import to_config
    from .job import execute

    hc = HydraConfig.get()
    problem = launcher_problem(OmegaConf.select(hc, "launcher._target_"), OmegaConf.select(hc, "launcher"))
    if problem:
        raise RuntimeError(problem)  # stops the multirun: nothing is measured in parallel
    st = STATE
    if st is None:  # a job a cluster launcher started in a process of its own
        st = STATE = _state_from_env()
    if st is None:
        raise RuntimeError("no sweep state: the SweepCallback (hydra.callbacks.sweep in conf/config.yaml) did not run")
    num = int(hc.job.num)
    overrides = list(hc.overrides.task)
    label = _label(overrides, st.swept_keys)
    _progress(st, num, label)
    t0 = time.perf_counter()
    t0_s = time.time() - 0.001
    chash = None
    tags = {"sweep.parent_record": st.parent_record, "sweep.key": st.sweep_key, "sweep.job": str(num), "sweep.name": st.name}
    if st.parent_run_id:
        tags["mlflow.parentRunId"] = st.parent_run_id
    if os.environ.get("SLURM_JOB_ID"):  # the Slurm job this runs in, as sacct and submitit name it
        array = os.environ.get("SLURM_ARRAY_JOB_ID")
        tags["slurm.job_id"] = f"{array}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array else os.environ["SLURM_JOB_ID"]
    try:
        chash = config_hash(dcfg)
        tags["config_hash"] = chash
        cfg = to_config(dcfg)
        if not st.rerun:
            prior, where, prior_record = None, None, None
            if st.parent_run_id is not None and not track.is_down(st.tracking_uri):  # MLflow answered at the start
                try:
                    found = find_done(st.client(), st.experiment_id, chash)
                    if found is not None:
                        prior, where = found.info.run_id, f"run {found.info.run_id}"
                except Exception as exc:
                    track.mark_down(st.tracking_uri, exc)
                    print(f"[sweep {st.name}]   MLflow did not answer ({_why(exc)}); looking in the local records", flush=True)
            if prior is None:
                local = find_done_locally(st.records_dir, chash, st.tracking_uri)
                if local is not None:
                    prior = local.mlflow_run_id
                    where = f"run {prior}" if prior else f"local record {local.record_id} (not logged yet)"
                    st.metrics[num] = dict(local.metrics)
                    prior_record = local.record_id
            if where is not None:
                rec = JobRecord(num, overrides, label, "done", prior, reason=None, seconds=0.0, record_id=prior_record)
                print(f"[sweep {st.name}]   already done: {where} (rerun=true runs it again)", flush=True)
                st.records.append(rec)
                return rec
        result = execute(cfg, dcfg, Path(hc.runtime.output_dir), tags=tags)
        st.metrics[num] = dict(result.metrics)
        rid = result.record.name if result.record else None
        rec = JobRecord(num, overrides, label, result.status, result.run_id, result.reason, time.perf_counter() - t0, rid)
    except Exception as exc:
        tb = traceback.format_exc()
        # a job that failed inside execute() has its record (and maybe its run) already
        mine = [
            (f, r) for f, r in records.iter_records(st.records_dir)
            if r.tags.get("sweep.parent_record") == st.parent_record and r.tags.get("sweep.job") == str(num) and r.created >= t0_s
        ]
        if mine:
            record_id, run_id = mine[-1][1].record_id, mine[-1][1].mlflow_run_id
        else:
            try:
                record_id, run_id = _record_failed_job(st, dcfg, num, overrides, tags, exc, tb)
            except OSError as exc2:  # the records folder filled up: say so, the sweep goes on
                record_id, run_id = None, None
                print(f"[sweep {st.name}]   job {num + 1}: its failure could not be recorded either "
                      f"({_why(exc2)})", file=sys.stderr, flush=True)
        rec = JobRecord(num, overrides, label, "failed", run_id, _why(exc), time.perf_counter() - t0, record_id)
        print(tb, file=sys.stderr, flush=True)
    st.records.append(rec)
    extra = f" ({rec.reason})" if rec.reason and rec.status != "ok" else ""
    where = f"run {rec.run_id}" if rec.run_id else f"kept locally, record {rec.record_id} (MLflow unreachable)"
    print(f"[sweep {st.name}]   {rec.status} in {rec.seconds:.1f} s, {where}{extra}", flush=True)
    return rec
