"""Tracking: MLflow store setup and the names every run logs (see design.md)."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from pipeline.core.redaction import redact
from pipeline.core.vocab import Status
from pipeline.tracking.context import system_tags
from pipeline.tracking.names import (
    GROUPS,
    MAX_PARAM_VALUE,
    NOT_JOB_SETTINGS,
    dataset_input,
    display_name,
    flatten,
    hydra_choices,
    metric_rank,
)

log = logging.getLogger(__name__)


# the pipeline's own calls give up on an unreachable tracking server within seconds (MLflow's
# defaults retry for minutes); results are kept locally and `python -m pipeline.sync` logs them
# later.  A value the user sets in the environment wins.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
}

# Stores that failed to answer in this process (uri -> why).  Once a store is known to be down
# the pipeline stops waiting on it: each later call gives up at once (results stay local) until
# :func:`retry` clears it (a sweep's end and `python -m pipeline.sync` try once more).
_DOWN: dict[str, str] = {}


def is_down(uri: str) -> str | None:
    """Why ``uri`` is known to be down in this process, or None."""
    return _DOWN.get(uri)


def mark_down(uri: str, exc: BaseException) -> None:
    if _unreachable(exc):
        _DOWN[uri] = f"{type(exc).__name__}: {redact(str(exc).splitlines()[0] if str(exc) else '')}"[:300]


def retry(uri: str) -> None:
    """Forget that ``uri`` was down: the next call tries it again."""
    _DOWN.pop(uri, None)


class StoreDown(ConnectionError):
    """The tracking store did not answer earlier in this process; not tried again."""


def _unreachable(exc: BaseException) -> bool:
    """A connection that failed or timed out (not an error the store answered with)."""
    import requests

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ConnectionError, TimeoutError, StoreDown)):
            return True
        text = str(exc)
        if "Max retries exceeded" in text or "timed out" in text or "Connection refused" in text or "Connection aborted" in text:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def tracking_problem(uri: str, timeout: float = 5.0) -> str | None:
    """Why the MLflow server at ``uri`` cannot be reached now, or None (local stores always can)."""
    import urllib.error
    import urllib.request

    if not uri.startswith(("http://", "https://")):
        return None
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout):
            return None
    except urllib.error.HTTPError as exc:  # it answers: a proxy or an older server without /health
        return None if exc.code < 500 else f"{redact(uri)} answers HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        return f"{redact(uri)} cannot be reached ({type(exc).__name__}: {redact(str(exc))})"


def setup(tracking_cfg) -> str:
    """Point MLflow at the configured store and experiment; returns the experiment id."""
    import mlflow

    quiet()
    uri = tracking_cfg.resolved_uri()
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///") :])
        db.parent.mkdir(parents=True, exist_ok=True)
        # two processes creating the same store at once race in its schema migration:
        # the first one creates it while the other waits
        from filelock import FileLock

        with FileLock(str(db) + ".lock", timeout=120):
            mlflow.set_tracking_uri(uri)
            return _experiment(mlflow, uri, tracking_cfg)
    mlflow.set_tracking_uri(uri)
    return _experiment(mlflow, uri, tracking_cfg)


def _experiment(mlflow, uri: str, tracking_cfg) -> str:
    exp = mlflow.get_experiment_by_name(tracking_cfg.experiment)
    if exp is not None:
        return exp.experiment_id
    artifact_location = None
    if "://" not in uri or uri.startswith("sqlite:") or uri.startswith("file:"):
        artifact_location = Path(tracking_cfg.artifact_location).resolve().as_uri()
    try:
        return mlflow.create_experiment(tracking_cfg.experiment, artifact_location=artifact_location)
    except Exception:  # created by a concurrent process in the meantime
        exp = mlflow.get_experiment_by_name(tracking_cfg.experiment)
        if exp is None:
            raise
        return exp.experiment_id


def job_params(cfg) -> dict[str, str]:
    """A job's params under their Hydra keys, as a Hydra user filters on them
    (``params.bench.batch_size``, ``params.provider.threads``): the resolved config, flattened,
    without what does not change the measurement (tracking, decision profile, paths); plus each
    config group's choice under the group's name (``model``, ``variant``, ``provider``,
    ``pooling``; ``candidate``, ``serve`` where one was picked)."""
    from dataclasses import asdict, is_dataclass

    data = asdict(cfg) if is_dataclass(cfg) else dict(cfg)
    for key in NOT_JOB_SETTINGS:
        data.pop(key, None)
    params = {
        "model": cfg.model.name,
        "variant": cfg.variant.name,
        "provider": cfg.provider.name,
        "pooling": cfg.pooling.mode,
        "precision": cfg.precision(),  # the provider's (OpenVINO bf16) or the variant's (int8, fp16), else fp32
    }
    if getattr(cfg, "workload", None) is not None:  # the texts measured (conf/workload/)
        params["workload"] = cfg.workload.name
    for group, choice in hydra_choices().items():
        if group not in GROUPS and group not in NOT_JOB_SETTINGS:
            params[group] = choice
    params.update(flatten(data))
    if "workload" in params:  # one param for its name, one for its weights (MLflow takes 100 params a call)
        params.pop("workload.name", None)
        weights = {k.rsplit(".", 1)[1]: params.pop(k) for k in [k for k in params if k.startswith("workload.weights.")]}
        params["workload.weights"] = json.dumps(weights, sort_keys=True) if weights else params.get("workload.weights", "{}")
    return {k: redact(v)[:MAX_PARAM_VALUE] for k, v in params.items() if applies(cfg, k)}


# settings that change nothing unless the job is of their kind: no param of a run they do not apply to
QUANTIZE_ONLY = (
    "variant.quantization",
    "variant.instruction_set",
    "variant.per_channel",
    "variant.reduce_range",
    "variant.operators",
    "variant.weights_only",
)


def applies(cfg, key: str) -> bool:
    """Whether the setting ``key`` can change this job's measurement: calibration only for static
    int8, quantizer settings only for a quantized variant, ``bench.load.*`` only for the load scenario."""
    variant, bench = getattr(cfg, "variant", None), getattr(cfg, "bench", None)
    if variant is not None:
        if key.startswith("variant.calibration_") and getattr(variant, "quantization", None) != "static":
            return False
        if key in QUANTIZE_ONLY and getattr(variant, "kind", None) != "quantize":
            return False
    if bench is not None and key.startswith("bench.load.") and getattr(bench, "scenario", None) != "load":
        return False
    return True


# params of runs logged before the Hydra keys (read by the decision, pipeline/decision/inputs.py)


def client(uri: str):
    """The MLflow client for ``uri`` (the one factory the package uses)."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


def quiet() -> None:
    """Keep MLflow's and alembic's chatter out of the terminal."""
    os.environ.setdefault("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")
    for name, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)
    for name in ("alembic", "mlflow", "mlflow.store", "mlflow.tracking"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # urllib3's own "Retrying ..." lines for an unreachable server: the pipeline says it once, clearly
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)


_FACTORY_INSTALLED = False


def redact_logging() -> None:
    """Pass every log record of this process (MLflow's, Hydra's, ours) through :func:`redact`,
    whatever handler writes it (console, a job's log file).  Installed once, at start."""
    global _FACTORY_INSTALLED
    if _FACTORY_INSTALLED:
        return
    base = logging.getLogRecordFactory()

    def factory(*args, **kwargs):
        record = base(*args, **kwargs)
        try:
            msg = record.getMessage()
        except Exception:  # a broken format: leave it to the handler to report
            return record
        clean = redact(msg)
        if clean != msg:
            record.msg, record.args = clean, None
        return record

    logging.setLogRecordFactory(factory)
    _FACTORY_INSTALLED = True


def log_record(tracking_cfg, folder: Path, rec) -> str | None:
    """Log a job's record as an MLflow run; returns its run id, or None when MLflow could not be
    reached (the record stays on disk, unlogged, for ``python -m pipeline.sync``).

    Logging is idempotent: a run tagged with the record's ``record_id`` that is already
    complete is reused; a half-logged one (the connection dropped midway) is replaced.
    """
    uri = tracking_cfg.resolved_uri()
    try:
        if is_down(uri):
            raise StoreDown(f"it did not answer earlier ({is_down(uri)}); not waiting on it again")
        for attempt in range(4):
            try:
                return _log_record(tracking_cfg, folder, rec, uri)
            except Exception as exc:  # a store another process holds: wait and try again
                if "database is locked" not in str(exc) or attempt == 3:
                    raise
                time.sleep(0.5 * 2**attempt)
    except Exception as exc:  # unreachable server, locked store, ...: nothing is lost
        mark_down(uri, exc)
        log.warning(
            "MLflow (%s) could not take this run (%s: %s); its results are kept in %s; "
            "`python -m pipeline.sync` logs them once the store is back",
            redact(uri),
            type(exc).__name__,
            redact(str(exc).splitlines()[0] if str(exc) else ""),
            folder,
        )
        return None


def _log_record(tracking_cfg, folder: Path, rec, uri: str) -> str:
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    from pipeline.tracking import records

    quiet()
    exp_id = setup(tracking_cfg)
    client = MlflowClient(uri)
    existing = client.search_runs([exp_id], filter_string=f"tags.record_id = '{rec.record_id}'", max_results=10)
    run_id, have_params = None, {}
    for run in existing:
        if run.info.status in ("FINISHED", "FAILED") and run.data.tags.get("record.complete") == "true":
            records.mark_logged(folder, rec, run.info.run_id, redact(uri))
            return run.info.run_id
        if rec.is_parent and run_id is None:
            # a sweep's parent opened at its start: its children point at it, so complete it
            run_id, have_params = run.info.run_id, run.data.params
            continue
        client.delete_run(run.info.run_id)  # half-logged: replace it
    start_ms = int(rec.created * 1000)
    tags = {k: redact(str(v)) for k, v in run_tags(rec).items()}
    if run_id is None:
        run_id = client.create_run(exp_id, start_time=start_ms, tags=tags).info.run_id
    else:
        from mlflow.entities import RunTag

        client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
    now = int(time.time() * 1000)
    params = [Param(k, redact(str(v))[:MAX_PARAM_VALUE]) for k, v in rec.params.items() if k not in have_params]
    metrics = [Metric(k, float(v), now, 0) for k, v in sorted(rec.metrics.items(), key=lambda kv: metric_rank(kv[0]))]
    # log_batch takes at most 1000 metrics and 100 params a call
    for i in range(0, max(len(metrics), len(params), 1), 100):
        client.log_batch(run_id, metrics=metrics[i : i + 100], params=params[i : i + 100])
    dataset = dataset_input(rec)
    if dataset is not None:
        client.log_inputs(run_id, datasets=[dataset])
    for f in records.artifacts(folder):
        client.log_artifact(run_id, str(f))
    client.set_tag(run_id, "record.complete", "true")
    client.set_terminated(run_id, "FAILED" if rec.status == Status.FAILED else "FINISHED", end_time=start_ms + int(rec.seconds * 1000))
    records.mark_logged(folder, rec, run_id, redact(uri))
    return run_id


# the order a run's metrics are logged in, which is the order of the run page's metrics table:
# the numbers a decision rests on first, bookkeeping (bench.*, conditions.*, export.*) last
def run_tags(rec) -> dict[str, str]:
    """The tags a record's run gets: its own (with the context it was created in), the MLflow
    name, and, for a record made before the context tags existed, this process's context."""
    tags = {**system_tags(), **rec.all_tags()}
    tags["mlflow.runName"] = rec.run_name if rec.is_parent else display_name(rec.run_name, rec.params, tags, rec.status)
    return tags
