"""Sweeps: a Hydra multirun with one MLflow parent run and one child run per job.

    python -m pipeline +sweep=providers          # a sweep config from conf/sweep/
    python -m pipeline -m pooling=mean,cls       # any dimension from the command line
    python -m pipeline +sweep=batch rerun=true   # run every job again, even those already done

How it fits together:

- ``plan``: the job list the basic sweeper will launch, what the sweep varies, each job's
  config hash, and which launchers may run benchmark jobs.
- ``state``: :class:`SweepState`, the one object that holds a running sweep (its jobs, their
  outcomes, its parent, its lock and its exit code), and :func:`current`, its registry.
- ``parent``: the parent run's lifecycle.  :class:`SweepCallback` (``callback``,
  ``hydra.callbacks.sweep`` in ``conf/config.yaml``) runs in the process that launches the
  jobs: ``on_multirun_start`` creates (or resumes) the parent run (:func:`parent.start`);
  ``on_multirun_end`` writes ``jobs.json``, re-times the leaders, decides and ends the parent
  (:func:`parent.end`), and raises ``SystemExit`` with the sweep's exit code when it is not 0.
- ``jobs``: :func:`run_job`, what ``__main__`` calls for each job of a multirun.  It never
  raises: a job that fails is logged as ``status=failed`` (traceback artifact) and the sweep
  goes on; the command exits 1 at the end.  Skipped jobs are not failures.
- ``resume``: the lookups by config hash and sweep key (through the records' index).
- ``console``: what the sweep prints.
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
  is unreachable the sweep goes on, retries at its end (:func:`pipeline.tracking.sync.sync`) and exits
  4 (``EXIT_UNSYNCED``) if some results are still only local, printing the sync command.
"""

from __future__ import annotations

from pipeline.sweep.callback import SweepCallback
from pipeline.sweep.jobs import failed_record, run_job
from pipeline.sweep.parent import finish as on_sweep_end
from pipeline.sweep.plan import (
    CLUSTER_LAUNCHERS,
    SEQUENTIAL_LAUNCHERS,
    SweepConfigError,
    config_hash,
    job_list,
    label,
    launcher_problem,
    swept_keys,
)
from pipeline.sweep.resume import find_done, find_done_locally
from pipeline.sweep.state import STATE_ENV, JobOutcome, SweepState, current
from pipeline.tracking.sweep_lock import SweepBusy, sweep_lock_free

__all__ = [
    "CLUSTER_LAUNCHERS",
    "SEQUENTIAL_LAUNCHERS",
    "STATE_ENV",
    "JobOutcome",
    "SweepBusy",
    "SweepCallback",
    "SweepConfigError",
    "SweepState",
    "config_hash",
    "current",
    "failed_record",
    "find_done",
    "find_done_locally",
    "job_list",
    "label",
    "launcher_problem",
    "on_sweep_end",
    "run_job",
    "sweep_lock_free",
    "swept_keys",
]
