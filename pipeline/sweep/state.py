"""One object holds a running sweep's state: :class:`SweepState`.

Hydra calls the sweep's callback and its jobs as separate functions, so the state has one
registry (:func:`current`), set when the sweep starts.  A job that a cluster launcher starts in
another process (on another machine) rebuilds it from ``$PIPELINE_SWEEP_STATE``
(:meth:`SweepState.to_env`).  The sweep's lock on its records is held by ``sweep_lock.hold_sweep`` (pipeline/tracking/sweep_lock.py).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.core.errors import Exit
from pipeline.core.vocab import Status
from pipeline.tracking import records, track

# the sweep's state for jobs a cluster launcher runs in other processes (on other machines)
STATE_ENV = "PIPELINE_SWEEP_STATE"


@dataclass
class JobOutcome:
    """One job of the sweep, as the sweep's summary and ``jobs.json`` list it."""

    num: int
    overrides: list[str]
    label: str
    status: str  # a vocab.Status: ok | skipped | failed | done (already done by an earlier run: reused)
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
    records: list[JobOutcome] = field(default_factory=list)
    resumed: bool = False
    metrics: dict[int, dict[str, float]] = field(default_factory=dict)  # per job num, for the summary
    exit_code: Exit = Exit.OK

    _ENV_KEYS = (
        "name",
        "parent_run_id",
        "experiment_id",
        "tracking_uri",
        "jobs",
        "swept_keys",
        "rerun",
        "records_dir",
        "parent_record",
        "sweep_key",
    )

    @property
    def failed(self) -> list[JobOutcome]:
        return [r for r in self.records if r.status == Status.FAILED]

    @property
    def parent_folder(self) -> Path:
        return records.folder(self.records_dir, self.parent_record)

    def client(self):

        return track.client(self.tracking_uri)

    def job_tags(self, num: int) -> dict[str, str]:
        """The tags that tie job ``num``'s run and record to this sweep."""
        tags = {"sweep.parent_record": self.parent_record, "sweep.key": self.sweep_key, "sweep.job": str(num), "sweep.name": self.name}
        if self.parent_run_id:
            tags["mlflow.parentRunId"] = self.parent_run_id
        return tags

    def has(self, num: int) -> bool:
        return any(r.num == num for r in self.records)

    def to_env(self) -> str:
        return json.dumps({k: getattr(self, k) for k in self._ENV_KEYS})

    @classmethod
    def from_env(cls) -> "SweepState | None":
        raw = os.environ.get(STATE_ENV)
        return cls(**json.loads(raw)) if raw else None


_CURRENT: SweepState | None = None


def current() -> SweepState | None:
    """The sweep this process runs (or runs a job of), or None outside a sweep."""
    global _CURRENT
    if _CURRENT is None:
        _CURRENT = SweepState.from_env()  # a job a cluster launcher started in a process of its own
    return _CURRENT


def set_current(st: SweepState | None) -> None:
    global _CURRENT
    _CURRENT = st
    if st is not None:
        os.environ[STATE_ENV] = st.to_env()
