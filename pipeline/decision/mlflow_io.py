"""The MLflow producer and consumer of a decision: read a sweep's runs, log the decision on
its parent run.  The only module of the decision that talks to MLflow."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path

import pandas as pd

from pipeline.decision import report
from pipeline.decision.inputs import RETIME_FILE, rounds_frame, run_row, runs_frame, samples_from_csv
from pipeline.decision.types import DecideError, Decision, Inputs

log = logging.getLogger(__name__)


def client(tracking_uri: str):
    from mlflow.tracking import MlflowClient

    from pipeline.tracking import track

    track.quiet()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return MlflowClient(tracking_uri=tracking_uri)


def _experiment_ids(c) -> list[str]:
    return [e.experiment_id for e in c.search_experiments()]


def _search_all(c, filter_string: str, max_results: int = 1000) -> list:
    runs, token = [], None
    ids = _experiment_ids(c)
    if not ids:
        return runs
    while True:
        page = c.search_runs(ids, filter_string=filter_string, max_results=max_results, page_token=token)
        runs.extend(page)
        token = page.token
        if not token or len(page) < max_results:
            return runs


def latest_parent(c) -> str:
    """The parent run of the most recent sweep: a run tagged sweep.role=parent or one with children."""
    candidates = []
    ids = _experiment_ids(c)
    if ids:
        for flt in ("tags.`sweep.role` = 'parent'", "tags.`mlflow.parentRunId` IS NOT NULL"):
            page = c.search_runs(ids, filter_string=flt, max_results=1, order_by=["attributes.start_time DESC"])
            if page:
                run = page[0]
                candidates.append(run.info.run_id if "role" in flt else run.data.tags["mlflow.parentRunId"])
    if not candidates:
        raise DecideError("no sweep in this tracking store: no run has children or the tag sweep.role=parent")
    parents = [c.get_run(pid) for pid in dict.fromkeys(candidates)]
    return max(parents, key=lambda r: (r.info.start_time or 0, r.info.run_id)).info.run_id


def _artifact_json(c, run_id: str, name: str) -> dict | None:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            return json.loads(Path(c.download_artifacts(run_id, name, tmp)).read_text())
        except Exception:
            return None


def load_children(c, parent_run_id: str) -> pd.DataFrame:
    """One row per child run (:func:`pipeline.decision.inputs.run_row`), plus the jobs the
    parent's ``jobs.json`` lists that live under another parent (reused by a resumed sweep)."""
    runs = _search_all(c, f"tags.`mlflow.parentRunId` = '{parent_run_id}'")
    # a reused job's reference under this parent (sweep.reused_run) stands for its run, read below
    runs = [r for r in runs if not r.data.tags.get("sweep.reused_run")]
    seen = {r.info.run_id for r in runs}
    listed = (_artifact_json(c, parent_run_id, "jobs.json") or {}).get("jobs", [])
    for run_id in [j["run_id"] for j in listed if j.get("run_id")]:
        if run_id not in seen:
            try:
                runs.append(c.get_run(run_id))
                seen.add(run_id)
            except Exception as exc:  # deleted since: the sweep's own children still count
                log.warning("job run %s listed in jobs.json is gone (%s)", run_id, type(exc).__name__)
    rows = [
        run_row(
            run_id=r.info.run_id,
            run_name=r.info.run_name or "",
            status=r.data.tags.get("status"),
            reason=r.data.tags.get("reason", ""),
            start_time=r.info.start_time or 0,
            params=r.data.params,
            metrics=r.data.metrics,
            tags=r.data.tags,
            finished=r.info.status != "RUNNING",
        )
        for r in runs
    ]
    return runs_frame(rows)


def load_samples_ms(c, run_id: str, artifact: str):
    """The raw per-call latency samples of a run, in ms (None when the run has no such artifact)."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = c.download_artifacts(run_id, artifact, tmp)
        except Exception as exc:  # the artifact is optional: the noise check reports what it lacks
            log.info("run %s: no %s (%s)", run_id, artifact, type(exc).__name__)
            return None
        return samples_from_csv(path)


def load_inputs(c, parent_run_id: str, cfg) -> Inputs:
    """A sweep's :class:`Inputs` from MLflow: its runs, the leaders' raw samples, the re-timings."""
    from pipeline.decision.matrix import leaders

    try:
        parent = c.get_run(parent_run_id)
    except Exception as exc:
        if getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
            raise DecideError(f"no run {parent_run_id!r} in this store") from None
        from pipeline.core.redaction import redact

        first = str(exc).splitlines()[0] if str(exc) else ""
        raise DecideError(f"the run {parent_run_id!r} could not be read: {type(exc).__name__}: {redact(first)[:300]}") from None
    tags = parent.data.tags
    sweep = tags.get("sweep.name") or tags.get("sweep") or parent.info.run_name or parent_run_id
    runs = load_children(c, parent_run_id)
    if runs.empty:
        raise DecideError(f"run {parent_run_id} ({sweep}) has no child runs: it is not a sweep parent")
    samples = {}
    for _, row in leaders(runs, cfg, cfg.robustness.top_k).iterrows():
        s = load_samples_ms(c, row["run_id"], cfg.samples_artifact)
        if s is not None:
            samples[row["label"]] = s
    complete = {"true": True, "false": False}.get(tags.get("sweep.complete", ""))
    return Inputs(
        runs=runs,
        samples_ms=samples,
        rounds=rounds_frame(_artifact_json(c, parent_run_id, RETIME_FILE)),
        parent_run_id=parent_run_id,
        sweep=sweep,
        complete=complete,
    )


def has_decision(c, parent_run_id: str) -> bool:
    """Whether the sweep already has a decision of record (the tag ``decision.verdict`` on its parent)."""
    try:
        return "decision.verdict" in c.get_run(parent_run_id).data.tags
    except Exception:  # no such run: load_inputs says so in its own words
        return False


def log_on_parent(c, decision: Decision, folder: Path) -> None:
    """The decision's files under ``decision/``, the winner's metrics as ``best.*``, the verdict as tags."""
    from mlflow.entities import Metric, RunTag

    run_id = decision.parent_run_id
    c.log_artifacts(run_id, str(folder), artifact_path="decision")
    now = int(time.time() * 1000)
    metrics = []
    w = decision.winner
    if w is not None:
        metrics += [Metric(f"best.{k}", float(v), now, 0) for k, v in w.metrics.items()]
        metrics.append(Metric("best.score_pct", w.score_pct, now, 0))
    for key, value in (
        ("decision.winner_stability", decision.robustness.winner_stability),
        ("decision.noise_stability", decision.robustness.noise_stability),
        ("decision.contended", float(len(decision.contended))),
    ):
        if value is not None:
            metrics.append(Metric(key, float(value), now, 0))
    tags = [
        RunTag("decision.winner", w.label if w else "none"),
        RunTag("decision.winner_run_id", w.run_id if w else ""),
        RunTag("decision.verdict", decision.verdict),
        RunTag("decision.profile", decision.profile),
        RunTag("decision.recommendation", decision.recommendation[:4000]),
        RunTag("mlflow.note.content", report.note(decision)),  # the run's description in the UI
    ]
    if w is not None:
        tags.append(RunTag("decision.command", w.command))
    c.log_batch(run_id, metrics=metrics, tags=tags)
    tag_children(c, decision)


def tag_children(c, decision: Decision) -> None:
    """Each ranked job's run gets its place in the decision of record: ``decision.rank`` (of how
    many), ``decision.verdict`` and ``decision.score_pct``, so the UI's run list sorts and filters by
    them; ``decision.parent`` names the sweep whose decision it is (a reused run belongs to several)."""
    from mlflow.entities import RunTag

    n = len(decision.ranking)
    for _, row in decision.ranking.iterrows():
        tags = [
            RunTag("decision.rank", str(int(row["rank"]))),
            RunTag("decision.of", str(n)),
            RunTag("decision.verdict", str(row["verdict"])),
            RunTag("decision.parent", decision.parent_run_id),
            RunTag("decision.score_pct", f"{float(row['total_pct']):.1f}"),
        ]
        try:
            c.log_batch(str(row["run_id"]), tags=tags)
        except Exception as exc:  # a run deleted since it was read: the decision stands without its tag
            log.warning("could not tag run %s with its rank: %s", row["run_id"], type(exc).__name__)
