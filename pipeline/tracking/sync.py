"""``python -m pipeline.sync``: log every local run record that is not in MLflow yet.

    python -m pipeline.sync                                   # reports/runs -> the configured store
    python -m pipeline.sync --records-dir reports/runs --tracking-uri http://mlflow.example:5000

Every job writes its record (``records.py``) before it is logged; when the tracking server
was unreachable, or went away during a sweep, the record stays on disk marked unlogged.  This
command logs them once the server is back.  Nothing is logged twice: a record already in the
store (a run tagged with its ``record_id`` and ``record.complete``) is only marked logged.
A sweep's parent is logged before its jobs, so each job is attached to it
(``mlflow.parentRunId``).  A sweep ends with the same step on its own.
A sweep whose process was killed leaves its parent record open (status running); once no process
holds that sweep's lock, sync closes it as failed (``sweep.complete=false``) and logs it, so no
parent stays RUNNING.  A ``record.json`` that cannot be read is named on stderr, and so are the
jobs held back because their sweep's parent record is one of them.
Exit code: 0 when every finished record is logged; 1 when some could not be logged or read;
2 for a bad ``--tracking-uri``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.config import ConfigError, TrackingConfig
from pipeline.core.errors import Exit
from pipeline.core.redaction import redact
from pipeline.core.vocab import Status
from pipeline.tracking import records, sweep_lock, track

COMMAND = "python -m pipeline.sync"


def command(records_dir: str | Path, tracking_uri: str) -> str:
    """The exact command that logs what ``records_dir`` holds to ``tracking_uri`` (redacted;
    shell-quoted, so it can be pasted as it is)."""
    return f"{COMMAND} --records-dir {shlex.quote(str(records_dir))} --tracking-uri {shlex.quote(redact(tracking_uri))}"


@dataclass
class SyncReport:
    logged: list[str] = field(default_factory=list)  # record ids logged now (or found already logged)
    failed: list[str] = field(default_factory=list)  # could not be logged (store unreachable)
    waiting: list[str] = field(default_factory=list)  # jobs of a sweep that is still running
    unreadable: list[str] = field(default_factory=list)  # "<folder>: why" of each record.json that cannot be read
    held: list[str] = field(default_factory=list)  # jobs whose sweep's parent record cannot be read
    closed: list[str] = field(default_factory=list)  # parents of killed sweeps, closed as failed now

    @property
    def ok(self) -> bool:
        return not (self.failed or self.unreadable or self.held)


def close_stale_parents(records_dir: str | Path, sweep_key: str | None = None) -> list[tuple[Path, records.RunRecord]]:
    """Close the parent records of sweeps whose process is gone (status running, their sweep
    lock free): status failed, ``sweep.complete=false``.  ``sweep_key``: only that sweep's, whose
    lock the caller holds (a sweep starting again with rerun=true)."""
    closed = []
    candidates = records.find(records_dir, "sweep.key", sweep_key) if sweep_key else records.iter_records(records_dir)
    for folder, rec in candidates:
        if not rec.is_parent or rec.status != Status.RUNNING or (sweep_key and rec.tags.get("sweep.key") != sweep_key):
            continue
        if not sweep_key and not sweep_lock.sweep_lock_free(records_dir, rec.tags.get("sweep.key", "")):
            continue  # its sweep is still running
        rec.status = "failed"
        rec.reason = "the sweep's process ended before the sweep did (killed); its finished jobs are kept"
        rec.tags["sweep.complete"] = "false"
        records.write(folder, rec)
        closed.append((folder, rec))
    return closed


def sync(records_dir: str | Path, tracking: TrackingConfig, sweep_record: str | None = None) -> SyncReport:
    """Log the unlogged, finished records under ``records_dir``: sweep parents first, then jobs.

    ``sweep_record``: only that sweep's parent record and its jobs (a sweep syncing at its end
    leaves other sweeps' records to them).
    """
    report = SyncReport()
    if sweep_record is None:
        report.closed = [r.record_id for _, r in close_stale_parents(records_dir)]
    found, broken = records.scan(records_dir)
    report.unreadable = [f"{folder}: {why}" for folder, why in broken]
    broken_ids = {folder.name for folder, _ in broken}
    pending = [(f, r) for f, r in found if not r.logged and r.status != Status.RUNNING]
    if sweep_record is not None:
        pending = [(f, r) for f, r in pending if sweep_record in (r.record_id, r.tags.get("sweep.parent_record"))]
    pending.sort(key=lambda fr: (not fr[1].is_parent, fr[1].created))
    all_recs = {r.record_id: (f, r) for f, r in found}
    for folder, rec in pending:
        parent_id = rec.tags.get("sweep.parent_record")
        if parent_id and "mlflow.parentRunId" not in rec.tags and parent_id not in all_recs and parent_id in broken_ids:
            # logged now, it would be an orphan outside its sweep: kept until its parent is repaired
            report.held.append(f"{rec.record_id} (its sweep's parent record {parent_id} cannot be read)")
            continue
        if parent_id and "mlflow.parentRunId" not in rec.tags:
            _, parent = all_recs.get(parent_id, (None, None))
            if parent is not None and parent.mlflow_run_id is None:
                parent = records.load(all_recs[parent_id][0])  # logged a moment ago?
            run_of_parent = parent.mlflow_run_id or parent.open_run_id if parent is not None else None
            if run_of_parent is None and parent is not None and parent.status == Status.RUNNING:
                report.waiting.append(rec.record_id)  # its sweep has not ended: it logs it itself
                continue
            if run_of_parent:
                rec.tags["mlflow.parentRunId"] = run_of_parent
                records.write(folder, rec)
        if track.log_record(tracking, folder, rec) is None:
            report.failed.append(rec.record_id)
        else:
            report.logged.append(rec.record_id)
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[0])
    ap.add_argument("--records-dir", default="reports/runs", help="the records folder (records_dir; default reports/runs)")
    ap.add_argument("--tracking-uri", default="", help="the MLflow store (default: $MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db)")
    ap.add_argument("--experiment", default=TrackingConfig.experiment)
    ap.add_argument("--artifact-location", default=TrackingConfig.artifact_location, help="artifact root of a new local store's experiment")
    args = ap.parse_args(argv)

    track.redact_logging()
    try:
        tracking = TrackingConfig(uri=args.tracking_uri, artifact_location=args.artifact_location, experiment=args.experiment)
    except ConfigError as exc:
        print(str(exc).replace("tracking.uri", "--tracking-uri"), file=sys.stderr)
        return Exit.CONFIG
    if not Path(args.records_dir).is_dir():
        print(f"no records folder {args.records_dir}", file=sys.stderr)
        return Exit.FAILED
    report = sync(args.records_dir, tracking)
    uri = redact(tracking.resolved_uri())
    print(
        f"sync {args.records_dir} -> {uri}: {len(report.logged)} logged, {len(report.failed)} not logged, "
        f"{len(report.waiting)} waiting for their sweep to end, {len(report.unreadable)} unreadable, "
        f"{len(report.held)} held back"
    )
    for rid in report.closed:
        print(f"closed the parent record {rid} of a killed sweep (status failed, sweep.complete=false)")
    for line in report.unreadable:
        print(f"unreadable record {line}: not logged; repair or remove it", file=sys.stderr)
    for line in report.held:
        print(f"held back: job record {line}", file=sys.stderr)
    if report.failed:
        print(
            f"MLflow ({uri}) did not take {len(report.failed)} record(s); they stay in {args.records_dir}; "
            f"run `{command(args.records_dir, tracking.resolved_uri())}` again once it is reachable",
            file=sys.stderr,
        )
    return Exit.OK if report.ok else Exit.FAILED


if __name__ == "__main__":
    sys.exit(main())
