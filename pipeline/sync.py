"""``python -m pipeline.sync``: log every local run record that is not in MLflow yet.

    python -m pipeline.sync                                   # reports/runs -> the configured store
    python -m pipeline.sync --records-dir reports/runs --tracking-uri http://mlflow.example:5000

Every job writes its record (``records.py``) before it is logged; when the tracking server
was unreachable, or went away during a sweep, the record stays on disk marked unlogged.  This
command logs them once the server is back.  Nothing is logged twice: a record already in the
store (a run tagged with its ``record_id`` and ``record.complete``) is only marked logged.
A sweep's parent is logged before its jobs, so each job is attached to it
(``mlflow.parentRunId``).  A sweep ends with the same step on its own.
Exit code: 0 when every finished record is logged, 1 when some could not be.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

from . import records, track
from .config import TrackingConfig

COMMAND = "python -m pipeline.sync"


def command(records_dir: str | Path, tracking_uri: str) -> str:
    """The exact command that logs what ``records_dir`` holds to ``tracking_uri`` (redacted)."""
    return f"{COMMAND} --records-dir {records_dir} --tracking-uri {track.redact(tracking_uri)}"


@dataclass
class SyncReport:
    logged: list[str] = field(default_factory=list)  # record ids logged now (or found already logged)
    failed: list[str] = field(default_factory=list)  # could not be logged (store unreachable)
    waiting: list[str] = field(default_factory=list)  # jobs of a sweep that is still running

    @property
    def ok(self) -> bool:
        return not self.failed


def sync(records_dir: str | Path, tracking: TrackingConfig, sweep_record: str | None = None) -> SyncReport:
    """Log the unlogged, finished records under ``records_dir``: sweep parents first, then jobs.

    ``sweep_record``: only that sweep's parent record and its jobs (a sweep syncing at its end
    leaves other sweeps' records to them).
    """
    report = SyncReport()
    pending = records.unlogged(records_dir)
    if sweep_record is not None:
        pending = [(f, r) for f, r in pending if sweep_record in (r.record_id, r.tags.get("sweep.parent_record"))]
    pending.sort(key=lambda fr: (not fr[1].is_parent, fr[1].created))
    all_recs = {r.record_id: (f, r) for f, r in records.iter_records(records_dir)}
    for folder, rec in pending:
        parent_id = rec.tags.get("sweep.parent_record")
        if parent_id and "mlflow.parentRunId" not in rec.tags:
            _, parent = all_recs.get(parent_id, (None, None))
            if parent is not None and parent.mlflow_run_id is None:
                parent = records.load(all_recs[parent_id][0])  # logged a moment ago?
            run_of_parent = parent.mlflow_run_id or parent.open_run_id if parent is not None else None
            if run_of_parent is None and parent is not None and parent.status == "running":
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
    tracking = TrackingConfig(uri=args.tracking_uri, artifact_location=args.artifact_location, experiment=args.experiment)
    if not Path(args.records_dir).is_dir():
        print(f"no records folder {args.records_dir}", file=sys.stderr)
        return 1
    report = sync(args.records_dir, tracking)
    uri = track.redact(tracking.resolved_uri())
    print(f"sync {args.records_dir} -> {uri}: {len(report.logged)} logged, {len(report.failed)} not logged, "
          f"{len(report.waiting)} waiting for their sweep to end")
    if report.failed:
        print(f"MLflow ({uri}) did not take {len(report.failed)} record(s); they stay in {args.records_dir}; "
              f"run `{command(args.records_dir, tracking.resolved_uri())}` again once it is reachable", file=sys.stderr)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
