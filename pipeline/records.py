"""Run records: every job's results on local disk, before and apart from MLflow.

Each job writes ``<records_dir>/<record_id>/`` holding ``record.json`` (params, tags,
metrics, status) and the job's artifact files.  It is written before the job is logged to
MLflow, so a tracking server that is down or goes away loses nothing: the record says it is
not logged yet, and ``python -m pipeline.sync`` logs it later (once: a run carries its
``record_id`` tag, and a record already in the store is not logged again).  The same files
let the DVC stages and the decision matrix work without any MLflow store.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

RECORD = "record.json"


@dataclass
class RunRecord:
    record_id: str
    run_name: str
    params: dict[str, str]
    tags: dict[str, str]
    metrics: dict[str, float] = field(default_factory=dict)
    status: str = "running"  # ok | skipped | failed (running: the job never finished)
    reason: str | None = None
    seconds: float = 0.0
    created: float = field(default_factory=time.time)
    mlflow_run_id: str | None = None  # set once the record is logged (complete)
    tracking_uri: str | None = None
    # a sweep parent's MLflow run while the sweep is still going (created at its start)
    open_run_id: str | None = None

    @classmethod
    def new(cls, run_name: str, params: dict, tags: dict) -> "RunRecord":
        return cls(uuid.uuid4().hex, run_name, {k: str(v) for k, v in params.items()}, dict(tags))

    @property
    def logged(self) -> bool:
        return self.mlflow_run_id is not None

    @property
    def is_parent(self) -> bool:
        """A sweep's parent record (its jobs are child records tagged ``sweep.parent_record``)."""
        return self.tags.get("sweep.role") == "parent"

    def all_tags(self) -> dict[str, str]:
        if self.is_parent:  # a parent is not a job: no status tag a job query could count
            return {**self.tags, "record_id": self.record_id}
        tags = {**self.tags, "status": self.status, "record_id": self.record_id}
        if self.reason:
            tags["reason"] = self.reason
        return tags


def folder(records_dir: str | Path, record_id: str) -> Path:
    return Path(records_dir) / record_id


def _write_json(path: Path, payload: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))
    tmp.replace(path)  # atomic: a reader never sees half a record


def save(dest: Path, rec: RunRecord, artifacts_from: Path | None = None) -> None:
    """Write ``rec`` to ``dest/record.json``; copy the artifact files of ``artifacts_from`` beside it."""
    dest.mkdir(parents=True, exist_ok=True)
    if artifacts_from is not None and Path(artifacts_from).resolve() != dest.resolve():
        for f in Path(artifacts_from).iterdir():
            if f.is_file() and f.name != RECORD:
                shutil.copy2(f, dest / f.name)
    _write_json(dest / RECORD, asdict(rec))


def load(path: Path) -> RunRecord:
    data = json.loads((Path(path) / RECORD).read_text())
    return RunRecord(**data)


def artifacts(path: Path) -> list[Path]:
    return sorted(f for f in Path(path).iterdir() if f.is_file() and f.name != RECORD and not f.name.startswith("."))


def mark_logged(path: Path, rec: RunRecord, run_id: str, tracking_uri: str) -> None:
    rec.mlflow_run_id, rec.tracking_uri = run_id, tracking_uri
    _write_json(Path(path) / RECORD, asdict(rec))


def write(path: Path, rec: RunRecord) -> None:
    """Rewrite ``rec`` in its folder (atomically)."""
    Path(path).mkdir(parents=True, exist_ok=True)
    _write_json(Path(path) / RECORD, asdict(rec))


def unlogged(records_dir: str | Path) -> list[tuple[Path, RunRecord]]:
    """Finished records not yet in any MLflow store (a job still running is not a result)."""
    return [(f, r) for f, r in iter_records(records_dir) if not r.logged and r.status != "running"]


def iter_records(records_dir: str | Path) -> Iterator[tuple[Path, RunRecord]]:
    """Every readable record under ``records_dir``, oldest first."""
    root = Path(records_dir)
    if not root.is_dir():
        return
    found = []
    for sub in root.iterdir():
        if (sub / RECORD).is_file():
            try:
                found.append((sub, load(sub)))
            except (ValueError, TypeError):
                continue  # a foreign or damaged file: not a record of ours
    yield from sorted(found, key=lambda fr: (fr[1].created, fr[1].record_id))
