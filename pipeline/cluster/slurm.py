"""The sweep's Slurm launcher (``hydra/launcher=slurm``): Hydra's submitit launcher, plus the two
things a benchmark sweep needs that the plugin leaves out.

Hydra's ``SlurmLauncher`` submits the jobs as one Slurm job array and then waits on
``job.results()`` for each, in order.  Two outcomes of a real cluster break that:

- **A job that ends without a result** (``scancel``, a node failure, the time limit, out of
  memory): submitit raises, the launcher raises, and the whole sweep stops before its end (no
  ``jobs.json``, no decision, the parent left open).  Here such a job is one failed job of the
  sweep: a record (and MLflow run) with ``status=failed`` and Slurm's own final state as the
  reason (``Slurm job 7_1 ended CANCELLED by 0 without a result``, the state submitit reads from
  ``sacct``); the other jobs go on; the sweep exits 1, and a rerun measures only the failed job.
- **Jobs that never start** (every node down, ``slurmd`` stopped, a partition that never frees):
  submitit waits for ever.  Here, when jobs of the sweep wait in the queue while none of its jobs
  runs or finishes for ``stall_timeout_min`` minutes, the waiting jobs are cancelled
  (``scancel``) and recorded as failed with Slurm's pending reason (``squeue %r``), and the sweep
  exits 1.  Jobs waiting behind each other (one node, exclusive) are not a stall: the clock
  restarts whenever a job of the sweep runs or ends.  Default 60 minutes
  (``conf/hydra/launcher/slurm.yaml``); a busy shared cluster may need more.

Everything else (submission, the job array, resources, the pickled job) is the plugin's.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf, SlurmQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as _PluginSlurmLauncher
from omegaconf import OmegaConf

TARGET = "hydra_plugins.pipeline_slurm.SlurmLauncher"  # Hydra takes plugins only from there
# submitit's states of a job that has not ended (core.InfoWatcher.is_done); the first three run
RUNNING = ("RUNNING", "COMPLETING", "CONFIGURING")
WAITING = ("PENDING", "REQUEUED", "READY", "UNKNOWN", "PREEMPTED", "SUSPENDED", "RESIZING", "REQUEUE_HOLD", "REQUEUE_FED")


@dataclass
class PipelineSlurmConf(SlurmQueueConf):
    _target_: str = TARGET
    # minutes jobs of the sweep may wait in the queue while none of them runs or ends
    stall_timeout_min: float = 60.0
    # seconds between two looks at the jobs' states (one sacct call for the whole array)
    poll_s: float = 5.0


class SweepSlurmLauncher(_PluginSlurmLauncher):
    """Registered with Hydra as ``hydra_plugins.pipeline_slurm.SlurmLauncher``."""

    def __init__(self, **params: Any) -> None:
        self.stall_timeout_s = float(params.pop("stall_timeout_min", 60.0)) * 60
        self.poll_s = float(params.pop("poll_s", 5.0))
        super().__init__(**params)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import submitit

        assert self.config is not None
        # the executor, exactly as the plugin builds it (BaseSubmititLauncher.launch)
        params = dict(self.params)
        init_params = {"folder": params["submitit_folder"]}
        specific_init_keys = {"max_num_timeout"}
        init_params.update(**{f"{self._EXECUTOR}_{x}": y for x, y in params.items() if x in specific_init_keys})
        init_keys = specific_init_keys | {"submitit_folder"}
        executor = submitit.AutoExecutor(cluster=self._EXECUTOR, **init_params)
        baseparams = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(
            **{x if x in baseparams else f"{self._EXECUTOR}_{x}": y for x, y in params.items() if x not in init_keys}
        )
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        job_params = []
        for idx, overrides in enumerate(job_overrides):
            idx = initial_job_idx + idx
            job_params.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state()))
        submitted = time.time()
        jobs = executor.map_array(self, *zip(*job_params))
        from pipeline import sweep

        st = sweep.current()
        for (overrides, _, idx, _, _), job in zip(job_params, jobs):
            label = sweep.label(overrides, st.swept_keys) if st else " ".join(filter_overrides(overrides))
            print(f"[slurm] job {idx + 1}/{len(jobs)}: Slurm job {job.job_id} ({label})", flush=True)
        return self._wait(jobs, job_params, submitted)

    # -- waiting --------------------------------------------------------------------------------
    def _wait(self, jobs: list, job_params: list, submitted: float) -> list[JobReturn]:
        results: dict[int, JobReturn] = {}
        last_progress = time.time()
        watcher = jobs[0].watcher
        while len(results) < len(jobs):
            watcher.update()  # one sacct call for every job of the array
            for i, job in enumerate(jobs):
                if i not in results and job.done():
                    results[i] = self._outcome(job, job_params[i], submitted)
                    last_progress = time.time()
            left = [i for i in range(len(jobs)) if i not in results]
            if not left:
                break
            states = {i: jobs[i].state.split()[0].upper() for i in left}
            if any(s in RUNNING for s in states.values()):
                last_progress = time.time()
            elif time.time() - last_progress > self.stall_timeout_s:
                for i in left:
                    results[i] = self._stalled(jobs[i], job_params[i], states[i], submitted)
                break
            time.sleep(self.poll_s)
        return [results[i] for i in range(len(jobs))]

    def _outcome(self, job, jp: tuple, submitted: float) -> JobReturn:
        """The job's own JobReturn, or, for a job that ended without one, a failed job record."""
        from submitit.core.utils import UncompletedJobError

        try:
            ret = job.results()[0]
        except UncompletedJobError as exc:  # FailedJobError included
            state = job.state  # Slurm's final state, from sacct (e.g. "CANCELLED by 0", "NODE_FAIL")
            first = next((ln for ln in str(exc).splitlines() if ln.strip()), "")
            reason = f"Slurm job {job.job_id} ended {state} without a result ({first[:200]})"
            return self._lost(jp, reason, job.job_id, submitted)
        self._collect(ret)
        return ret

    def _stalled(self, job, jp: tuple, state: str, submitted: float) -> JobReturn:
        why = _pending_reason(job.job_id)
        job.cancel(check=False)  # submitit's scancel
        reason = (
            f"Slurm job {job.job_id} was still {state} ({why}) with no job of this sweep running for "
            f"{self.stall_timeout_s / 60:g} min (hydra.launcher.stall_timeout_min); cancelled"
        )
        print(f"[slurm] {reason}", file=sys.stderr, flush=True)
        return self._lost(jp, reason, job.job_id, submitted)

    def _collect(self, ret: JobReturn) -> None:
        """The job's JobOutcome (what ``run_job`` returned on the node) joins the sweep's state."""
        from pipeline import sweep
        from pipeline.tracking import records

        st = sweep.current()
        rec = ret._return_value if ret.status == JobStatus.COMPLETED else None
        if st is None or not isinstance(rec, sweep.JobOutcome) or st.has(rec.num):
            return
        st.records.append(rec)
        if rec.record_id:
            try:
                st.metrics[rec.num] = dict(records.load(records.folder(st.records_dir, rec.record_id)).metrics)
            except (OSError, ValueError):
                pass

    def _lost(self, jp: tuple, reason: str, slurm_id: str, submitted: float) -> JobReturn:
        """A failed record (and run) for a job that left none, added to the sweep's state."""
        from pipeline import sweep
        from pipeline.config import TrackingConfig
        from pipeline.sweep import resume

        overrides, _, num, _, _ = jp
        st = sweep.current()
        if st is None:
            raise RuntimeError(reason)
        mine = resume.job_records(st.records_dir, st.parent_record, num, since=submitted)
        if mine:  # it wrote its record before it was stopped: that is its result
            r = mine[-1][1]
            rec = sweep.JobOutcome(
                num, overrides, sweep.label(overrides, st.swept_keys), r.status, r.mlflow_run_id, r.reason, r.seconds, r.record_id
            )
        else:
            tags = {**st.job_tags(num), "slurm.job_id": str(slurm_id)}
            try:
                tags["config_hash"] = sweep.config_hash(self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides)))
            except Exception:
                pass
            tracking = TrackingConfig(**OmegaConf.to_container(self.config.tracking, resolve=True))
            rec = sweep.failed_record(st, tracking, num, list(overrides), tags, reason, suffix="slurm")
        if not st.has(num):
            st.records.append(rec)
        print(f"[sweep {st.name}]   job {num + 1} failed: {rec.reason}", file=sys.stderr, flush=True)
        return JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED, _return_value=rec)


def _pending_reason(job_id: str) -> str:
    """Slurm's reason a job waits (``squeue -o %r``), e.g. ``ReqNodeNotAvail, UnavailableNodes:n1``."""
    try:
        out = subprocess.run(["squeue", "-h", "-j", str(job_id), "-o", "%r"], capture_output=True, text=True, timeout=30)
        return out.stdout.strip() or f"squeue: {out.stderr.strip()[:200] or 'no reason given'}"
    except (OSError, subprocess.SubprocessError) as exc:
        return f"squeue failed: {exc}"
