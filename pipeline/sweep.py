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
  cores, caches and memory bandwidth, so each measures the others' load.
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


def launcher_problem(launcher_target: str | None) -> str | None:
    """Why a launcher is refused for benchmark jobs, or None when it runs them one by one."""
    if not launcher_target or launcher_target in SEQUENTIAL_LAUNCHERS:
        return None
    return (
        f"refused: launcher {launcher_target} runs jobs in parallel; benchmark jobs on one host would "
        f"share its {os.cpu_count()} CPU cores, caches and memory bandwidth, so each latency would include "
        "the other jobs' load. Use the default basic launcher (jobs one after another)."
    )


# -- state of the sweep in this process -----------------------------------------------------------
@dataclass
class JobRecord:
    num: int
    overrides: list[str]
    label: str
    status: str  # ok | skipped | failed | done (already done by an earlier run: reused)
    run_id: str | None
    reason: str | None = None
    seconds: float = 0.0


@dataclass
class SweepState:
    name: str
    parent_run_id: str
    experiment_id: str
    tracking_uri: str
    jobs: list[list[str]]
    swept_keys: list[str]
    rerun: bool
    started: float = field(default_factory=time.perf_counter)
    records: list[JobRecord] = field(default_factory=list)
    resumed: bool = False

    @property
    def failed(self) -> list[JobRecord]:
        return [r for r in self.records if r.status == "failed"]

    def client(self):
        from mlflow.tracking import MlflowClient

        return MlflowClient(self.tracking_uri)


STATE: SweepState | None = None
_EXIT_CODE = 0


def exit_code() -> int:
    """1 when a job of the last sweep in this process failed, else 0."""
    return _EXIT_CODE


def _fmt_s(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def _label(overrides: list[str], swept: list[str]) -> str:
    picked = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") in swept]
    return " ".join(picked or overrides) or "(defaults)"


def _param_key(k: str) -> str:
    return "sweep." + "".join(c if c.isalnum() or c in "._-/ " else "_" for c in k.lstrip("+~"))


# -- parent run ----------------------------------------------------------------------------------
def start_sweep(config: DictConfig) -> SweepState:
    """Create (or resume) the parent run; called from on_multirun_start."""
    global STATE, _EXIT_CODE
    from . import track
    from .config import TrackingConfig

    _EXIT_CODE = 0
    track.quiet()
    name = OmegaConf.select(config, "hydra.runtime.choices.sweep") or "cli"
    jobs = job_list(config)
    swept: list[str] = []
    seen: dict[str, set[str]] = {}
    for job in jobs:
        for o in job:
            k, _, v = o.partition("=")
            seen.setdefault(k.lstrip("+~"), set()).add(v)
    swept = [k for k, vs in seen.items() if len(vs) > 1]
    rerun = bool(OmegaConf.select(config, "rerun", default=False))
    key_jobs = [[o for o in job if o.split("=", 1)[0].lstrip("+~") != "rerun"] for job in jobs]
    sweep_key = hashlib.sha256(json.dumps({"name": name, "jobs": key_jobs}, sort_keys=True).encode()).hexdigest()[:16]

    tracking = TrackingConfig(**OmegaConf.to_container(config.tracking, resolve=True))
    exp_id = track.setup(tracking)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking.resolved_uri())
    parent_id, resumed = None, False
    if not rerun:
        prev = client.search_runs(
            [exp_id],
            filter_string=f"tags.`sweep.key` = '{sweep_key}' and tags.`sweep.role` = 'parent'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if prev and prev[0].info.status != "FINISHED":
            parent_id, resumed = prev[0].info.run_id, True
            client.update_run(parent_id, status="RUNNING")
    if parent_id is None:
        started = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        run = client.create_run(
            exp_id,
            run_name=f"sweep {name} {started}",
            tags={"sweep.role": "parent", "sweep.key": sweep_key, "sweep.name": name},
        )
        parent_id = run.info.run_id
        params = {"sweep": name, "sweep.jobs": str(len(jobs))}
        for k, v in (OmegaConf.select(config, "hydra.sweeper.params") or {}).items():
            params[_param_key(k)] = str(v)
        for o in OmegaConf.select(config, "hydra.overrides.task") or []:
            k, _, v = o.partition("=")
            params[_param_key(k)] = v[:6000]
        from mlflow.entities import Param

        client.log_batch(parent_id, params=[Param(k, v) for k, v in params.items()])
    STATE = SweepState(name, parent_id, exp_id, tracking.resolved_uri(), jobs, swept, rerun, resumed=resumed)
    print(
        f"[sweep {name}] {len(jobs)} jobs, {'resuming' if resumed else 'parent'} run {parent_id} "
        f"(experiment {tracking.experiment}, {tracking.resolved_uri()})",
        flush=True,
    )
    problem = launcher_problem(OmegaConf.select(config, "hydra.launcher._target_"))
    if problem:
        print(f"[sweep {name}] {problem}", file=sys.stderr, flush=True)
    return STATE


def end_sweep(config: DictConfig) -> None:
    """Write jobs.json to the parent, call on_sweep_end, end the parent run."""
    global _EXIT_CODE
    st = STATE
    if st is None:
        return
    client = st.client()
    counts = {s: sum(r.status == s for r in st.records) for s in ("ok", "skipped", "failed", "done")}
    missing = len(st.jobs) - len(st.records)
    client.log_dict(st.parent_run_id, {"sweep": st.name, "jobs": [asdict(r) for r in st.records]}, "jobs.json")
    for s, n in counts.items():
        client.log_metric(st.parent_run_id, f"sweep.jobs_{s}", n)
    client.set_tag(st.parent_run_id, "sweep.complete", str(missing == 0).lower())
    failed = bool(st.failed) or missing > 0
    _EXIT_CODE = 1 if failed else 0
    try:
        on_sweep_end(st.parent_run_id, config)
    finally:
        client.set_terminated(st.parent_run_id, "FAILED" if failed else "FINISHED")


def on_sweep_end(parent_run_id: str, cfg: DictConfig) -> None:
    """Runs once when a sweep ends, with its parent run still open: prints the summary.

    This is the single place where sweep-level analysis hooks in.
    """
    print_summary(parent_run_id, cfg)
    # the decision matrix, logged on the parent run and written under reports/
    from . import decide
    from .config import to_config

    try:
        typed = to_config(cfg)
        decision = decide.decide_sweep(parent_run_id, typed.decision, typed.tracking.resolved_uri(), out_dir=typed.reports_dir)
    except decide.DecideError as exc:
        print(f"[sweep] no decision: {exc}", flush=True)
        return
    print(f"\n{decision.recommendation}\n(report: {decision.out_dir / 'report.md'})", flush=True)


def print_summary(parent_run_id: str, cfg: DictConfig | None = None) -> None:
    """A table of the sweep's jobs (from the parent's jobs.json and each run's metrics)."""
    st = STATE
    if st is None or st.parent_run_id != parent_run_id:
        return
    client = st.client()
    header = ("job", "config", "status", "p50 ms", "p95 ms", "sent/s", "STS", "nodes", "time", "run", "note")
    rows = []
    for r in st.records:
        m: dict[str, float] = {}
        if r.run_id and r.status in ("ok", "done"):
            m = client.get_run(r.run_id).data.metrics

        def f(name: str, fmt: str) -> str:
            return format(m[name], fmt) if name in m else "-"

        rows.append(
            (
                f"{r.num + 1}/{len(st.jobs)}",
                r.label,
                "done (reused)" if r.status == "done" else r.status,
                f("latency.p50_ms", ".2f"),
                f("latency.p95_ms", ".2f"),
                f("throughput.sentences_per_s", ".1f"),
                f("quality.stsb_spearman", ".2f"),
                f("provider.node_share", ".2f"),
                _fmt_s(r.seconds),
                (r.run_id or "-")[:8],
                (r.reason or "")[:100],
            )
        )
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda row: "  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip()  # noqa: E731
    counts = {s: sum(r.status == s for r in st.records) for s in ("ok", "done", "skipped", "failed")}
    out = [
        "",
        f"[sweep {st.name}] summary: parent run {parent_run_id}, {len(st.records)}/{len(st.jobs)} jobs, "
        f"{counts['ok']} ok, {counts['done']} already done, {counts['skipped']} skipped, {counts['failed']} failed, "
        f"{_fmt_s(time.perf_counter() - st.started)}",
        line(header),
        line(["-" * w for w in widths]),
        *(line(r) for r in rows),
        "",
    ]
    print("\n".join(out), flush=True)


class SweepCallback(Callback):
    """Hydra callback: the parent run around a multirun (see the module docstring)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            start_sweep(config)
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


def _progress(st: SweepState, num: int, label: str) -> None:
    elapsed = time.perf_counter() - st.started
    ran = [r.seconds for r in st.records if r.status in ("ok", "failed")]
    left = len(st.jobs) - len(st.records)
    eta = f"~{_fmt_s(sum(ran) / len(ran) * left)} left" if ran else "time left unknown"
    print(f"[sweep {st.name}] job {num + 1}/{len(st.jobs)}: {label} | elapsed {_fmt_s(elapsed)}, {eta}", flush=True)


def _log_failed_run(st: SweepState, num: int, overrides: list[str], chash: str | None, exc: BaseException, tb: str) -> str:
    """A failed job that raised before it had a run of its own (bad config, wrong weights)."""
    client = st.client()
    tags = {
        "mlflow.parentRunId": st.parent_run_id,
        "sweep.job": str(num),
        "status": "failed",
        "reason": f"{type(exc).__name__}: {str(exc)[:400]}",
    }
    if chash:
        tags["config_hash"] = chash
    run = client.create_run(st.experiment_id, run_name=f"{st.name}-job{num}-failed", tags=tags)
    client.log_text(run.info.run_id, "\n".join(overrides) + "\n", "overrides.txt")
    client.log_text(run.info.run_id, tb, "traceback.txt")
    client.set_terminated(run.info.run_id, "FAILED")
    return run.info.run_id


def run_job(dcfg: DictConfig) -> JobRecord:
    """Run one job of a multirun; never raises for a job's own failure."""
    from pathlib import Path

    from hydra.core.hydra_config import HydraConfig

    from .config import to_config
    from .job import execute

    hc = HydraConfig.get()
    problem = launcher_problem(OmegaConf.select(hc, "launcher._target_"))
    if problem:
        raise RuntimeError(problem)  # stops the multirun: nothing is measured in parallel
    st = STATE
    if st is None:
        raise RuntimeError("no sweep state: the SweepCallback (hydra.callbacks.sweep in conf/config.yaml) did not run")
    num = int(hc.job.num)
    overrides = list(hc.overrides.task)
    label = _label(overrides, st.swept_keys)
    _progress(st, num, label)
    t0 = time.perf_counter()
    t0_ms = int(time.time() * 1000) - 1
    chash = None
    try:
        chash = config_hash(dcfg)
        cfg = to_config(dcfg)
        if not st.rerun:
            prior = find_done(st.client(), st.experiment_id, chash)
            if prior is not None:
                rec = JobRecord(num, overrides, label, "done", prior.info.run_id, reason=None, seconds=0.0)
                print(f"[sweep {st.name}]   already done: run {prior.info.run_id} (rerun=true runs it again)", flush=True)
                st.records.append(rec)
                return rec
        tags = {"mlflow.parentRunId": st.parent_run_id, "config_hash": chash, "sweep.job": str(num), "sweep.name": st.name}
        result = execute(cfg, dcfg, Path(hc.runtime.output_dir), tags=tags)
        rec = JobRecord(num, overrides, label, result.status, result.run_id, result.reason, time.perf_counter() - t0)
    except Exception as exc:
        tb = traceback.format_exc()
        client = st.client()
        filt = f"tags.`mlflow.parentRunId` = '{st.parent_run_id}' and tags.`sweep.job` = '{num}' and attributes.start_time >= {t0_ms}"
        logged = client.search_runs([st.experiment_id], filter_string=filt, max_results=1)
        run_id = logged[0].info.run_id if logged else _log_failed_run(st, num, overrides, chash, exc, tb)
        reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else ''}"
        rec = JobRecord(num, overrides, label, "failed", run_id, reason, time.perf_counter() - t0)
        print(tb, file=sys.stderr, flush=True)
    st.records.append(rec)
    extra = f" ({rec.reason})" if rec.reason and rec.status != "ok" else ""
    print(f"[sweep {st.name}]   {rec.status} in {rec.seconds:.1f} s, run {rec.run_id}{extra}", flush=True)
    return rec
