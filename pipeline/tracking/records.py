"""Run records: every job's results on local disk, before and apart from MLflow.

Each job writes ``<records_dir>/<record_id>/`` holding ``record.json`` (params, tags, metrics, status) and the
job's artifact files. It is written before the job is logged to MLflow, so a tracking server that is down or
goes away loses nothing: the record says it is not logged yet, and ``python -m pipeline.sync`` logs it later
(once: a run carries its ``record_id`` tag, and a record already in the store is not logged again). The same
files let the DVC stages and the decision matrix work without any MLflow store.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from pipeline.core import ownership
from pipeline.core.cache import clean_stale
from pipeline.core.errors import PipelineError
from pipeline.core.vocab import Status

if TYPE_CHECKING:
    pass

RECORD = "record.json"
# tags by which records are looked up (resume, a sweep's jobs, a sweep's parent): an index of
# <records_dir>/.index/<tag>/<value>/<record_id>, so a lookup reads the few records it names
# instead of every record the folder has ever held
INDEXED_TAGS = ("config_hash", "sweep.key", "sweep.parent_record")
INDEX = ".index"
log = logging.getLogger(__name__)
_INDEX_COMPLETE = "complete"
_ALL = "_all"  # .index/_all/<record_id>: every record the index covers (written once it covers the whole folder)


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
        """A record made now, in this process: it carries the context it runs in (user, source,
        git commit, environment, Hydra overrides: :func:`pipeline.tracking.context.context_tags`); ``tags``
        given here win."""
        from pipeline.tracking.context import context_tags

        return cls(uuid.uuid4().hex, run_name, {k: str(v) for k, v in params.items()}, {**context_tags(), **tags})

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


class RecordError(PipelineError, OSError):
    """A record that could not be written; the message names the folder and the cause."""


class UnreadableRecord(PipelineError, ValueError):
    """A ``record.json`` that is not a run record (truncated, damaged, foreign)."""


def _safe(value: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(value))[:120] or "_"


def _index(records_dir: Path, rec: "RunRecord") -> None:
    """Add ``rec`` to the index of its folder (idempotent; an entry is an empty file).  The first
    record of a new folder marks its index complete; a folder with records from before the
    index is indexed whole on its first lookup.  ``.index/_all`` names every record indexed, so
    a record copied in from elsewhere is noticed by the next lookup."""
    index = records_dir / INDEX
    if not index.is_dir():
        others = [p for p in records_dir.iterdir() if p.name != rec.record_id and (p / RECORD).is_file()]
        index.mkdir(parents=True, exist_ok=True)
        if not others:
            (index / _ALL).mkdir(exist_ok=True)
            (index / _INDEX_COMPLETE).touch()
    for tag in INDEXED_TAGS:
        value = rec.tags.get(tag)
        if value:
            entry = records_dir / INDEX / tag / _safe(value)
            entry.mkdir(parents=True, exist_ok=True)
            (entry / rec.record_id).touch()
    (index / _ALL).mkdir(exist_ok=True)
    (index / _ALL / rec.record_id).touch()


def _index_after_write(records_dir: Path, rec: "RunRecord") -> None:
    """Index a record already on disk.  The index only speeds lookups up: if it cannot be
    written (damaged, a file in its place), it is dropped, and the next lookup rebuilds it; the
    record stays written."""
    try:
        _index(records_dir, rec)
    except OSError as exc:
        log.warning(
            "the records index %s could not take %s (%s): it is rebuilt on the next lookup", records_dir / INDEX, rec.record_id, exc
        )
        with contextlib.suppress(OSError):
            _drop_index(records_dir)


def _drop_index(records_dir: Path) -> None:
    index = records_dir / INDEX
    if index.is_dir() and not index.is_symlink():
        shutil.rmtree(index, ignore_errors=True)
    elif index.exists() or index.is_symlink():
        index.unlink()


def _rebuild_index(records_dir: Path) -> None:
    for sub, rec in scan(records_dir)[0]:
        if sub.name == rec.record_id:
            _index(records_dir, rec)
    (records_dir / INDEX / _ALL).mkdir(parents=True, exist_ok=True)
    (records_dir / INDEX / _INDEX_COMPLETE).touch()


def _refresh_index(root: Path) -> None:
    """Make the index cover every record of ``root``: rebuilt when incomplete, else the record
    folders it does not name yet (copied in from another records folder) are added (a listing of
    names: no record is read unless it is new)."""
    if not (root / INDEX / _INDEX_COMPLETE).exists() or not (root / INDEX / _ALL).is_dir():
        _rebuild_index(root)
        return
    known = set(os.listdir(root / INDEX / _ALL))
    for sub in root.iterdir():
        if sub.name in known or sub.name.startswith(".") or not (sub / RECORD).is_file():
            continue
        try:
            rec = load(sub)
        except (UnreadableRecord, OSError):
            continue
        if rec.record_id == sub.name:
            _index(root, rec)


def _lookup(root: Path, tag: str, value: str) -> list[tuple[Path, "RunRecord"]]:
    found = []
    entry = root / INDEX / tag / _safe(value)
    for name in sorted(p.name for p in entry.iterdir()) if entry.is_dir() else []:
        try:
            rec = load(root / name)
        except (UnreadableRecord, OSError):  # removed or damaged since: not a result
            continue
        if rec.tags.get(tag) == value:
            found.append((root / name, rec))
    return found


def find(records_dir: str | Path, tag: str, value: str) -> list[tuple[Path, RunRecord]]:
    """The readable records whose tag ``tag`` (one of :data:`INDEXED_TAGS`) is ``value``, oldest
    first, read through the index (built by one scan the first time a folder is asked; a damaged
    index is rebuilt, and if it cannot be, the records are scanned)."""
    if tag not in INDEXED_TAGS:
        raise ValueError(f"records are not indexed by {tag!r}; indexed: {', '.join(INDEXED_TAGS)}")
    root = Path(records_dir)
    if not root.is_dir():
        return []
    try:
        try:
            _refresh_index(root)
            found = _lookup(root, tag, value)
        except OSError as exc:
            log.warning("the records index %s is damaged (%s): rebuilding it", root / INDEX, exc)
            _drop_index(root)
            _rebuild_index(root)
            found = _lookup(root, tag, value)
    except OSError as exc:
        log.warning("the records index %s cannot be rebuilt (%s): scanning the records", root / INDEX, exc)
        found = [(p, r) for p, r in scan(root)[0] if r.tags.get(tag) == value]
    found.sort(key=lambda fr: (fr[1].created, fr[1].record_id))
    return found


def _write_json(path: Path, payload: dict) -> None:
    tmp = ownership.temp_file(path)
    try:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))
        tmp.replace(path)  # atomic: a reader never sees half a record
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk leaves no half-written file behind
        raise


def check_writable(records_dir: str | Path) -> None:
    """Refuse, before any work, a records folder that cannot take a record (read-only, full,
    not a folder): raises :class:`RecordError` naming it."""
    root = Path(records_dir)
    probe = root / f".write-check.{os.getpid()}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"x" * 4096)
    except OSError as exc:
        raise RecordError(
            f"records_dir {root} cannot be written ({type(exc).__name__}: {exc.strerror or exc}); "
            "nothing was run: point records_dir at a writable folder"
        ) from None
    finally:
        try:
            probe.unlink(missing_ok=True)
        except OSError:
            pass
    clean_stale(root)


def save(dest: Path, rec: RunRecord, artifacts_from: Path | None = None) -> None:
    """Write ``rec`` to ``dest/record.json``; copy the artifact files of ``artifacts_from`` beside it.

    All or nothing: the folder is assembled under a temporary name and renamed into place, so a
    failure (a full disk) leaves no half-written record; it raises :class:`RecordError`.
    """
    dest = Path(dest)
    same = artifacts_from is not None and dest.is_dir() and Path(artifacts_from).resolve() == dest.resolve()
    try:
        if same or dest.is_dir():  # the job wrote its artifacts here: only the record is missing
            if artifacts_from is not None and not same:
                for f in Path(artifacts_from).iterdir():
                    if f.is_file() and f.name != RECORD:
                        shutil.copy2(f, dest / f.name)
            _write_json(dest / RECORD, asdict(rec))
            _index_after_write(dest.parent, rec)
            return
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.parent / f".tmp-{dest.name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            ownership.make_temp_dir(tmp)  # marked: only this host's cleanup may remove it, once this process is gone
            if artifacts_from is not None:
                for f in Path(artifacts_from).iterdir():
                    if f.is_file() and f.name != RECORD:
                        shutil.copy2(f, tmp / f.name)
            _write_json(tmp / RECORD, asdict(rec))
            ownership.unmark(tmp)
            os.rename(tmp, dest)
            _index_after_write(dest.parent, rec)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError as exc:
        raise RecordError(f"the record {dest} could not be written ({type(exc).__name__}: {exc.strerror or exc})") from exc


_FIELDS = {f for f in RunRecord.__dataclass_fields__}  # noqa: C416


def load(path: Path) -> RunRecord:
    """The record in ``path``; raises :class:`UnreadableRecord` naming the file and what is wrong."""
    file = Path(path) / RECORD
    try:
        data = json.loads(file.read_text())
    except UnicodeDecodeError as exc:
        raise UnreadableRecord(f"{file}: not UTF-8 text ({exc.reason})") from None
    except ValueError as exc:
        raise UnreadableRecord(f"{file}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UnreadableRecord(f"{file}: expected a JSON object, got {type(data).__name__}")
    missing = sorted({"record_id", "run_name", "params", "tags"} - set(data))
    unknown = sorted(set(data) - _FIELDS)
    if missing or unknown:
        raise UnreadableRecord(
            f"{file}: "
            + "; ".join(
                ([f"missing field(s) {', '.join(missing)}"] if missing else [])
                + ([f"unknown field(s) {', '.join(unknown)}"] if unknown else [])
            )
        )
    for name, kind in (("params", dict), ("tags", dict), ("metrics", dict), ("record_id", str)):
        if name in data and not isinstance(data[name], kind):
            raise UnreadableRecord(f"{file}: field {name} must be a {kind.__name__}, got {type(data[name]).__name__}")
    return RunRecord(**data)


def artifacts(path: Path) -> list[Path]:
    return sorted(f for f in Path(path).iterdir() if f.is_file() and f.name != RECORD and not f.name.startswith("."))


def mark_logged(path: Path, rec: RunRecord, run_id: str, tracking_uri: str) -> None:
    """Note that ``rec`` is logged as MLflow run ``run_id`` of the store ``tracking_uri`` (which
    the caller has redacted: never a credential on disk)."""
    rec.mlflow_run_id, rec.tracking_uri = run_id, tracking_uri
    _write_json(Path(path) / RECORD, asdict(rec))


def write(path: Path, rec: RunRecord) -> None:
    """Rewrite ``rec`` in its folder (atomically)."""
    Path(path).mkdir(parents=True, exist_ok=True)
    _write_json(Path(path) / RECORD, asdict(rec))
    _index_after_write(Path(path).parent, rec)


def unlogged(records_dir: str | Path) -> list[tuple[Path, RunRecord]]:
    """Finished records not yet in any MLflow store (a job still running is not a result)."""
    return [(f, r) for f, r in iter_records(records_dir) if not r.logged and r.status != Status.RUNNING]


def scan(records_dir: str | Path) -> tuple[list[tuple[Path, RunRecord]], list[tuple[Path, str]]]:
    """Every record under ``records_dir``, oldest first, and the ``record.json`` files that
    cannot be read, each with what is wrong (``python -m pipeline.sync`` reports those; nothing is
    silently left out)."""
    root = Path(records_dir)
    found, broken = [], []
    if not root.is_dir():
        return found, broken
    for sub in root.iterdir():
        if (sub / RECORD).is_file():
            try:
                found.append((sub, load(sub)))
            except (UnreadableRecord, OSError) as exc:
                broken.append((sub, str(exc)))
    found.sort(key=lambda fr: (fr[1].created, fr[1].record_id))
    return found, sorted(broken)


def iter_records(records_dir: str | Path) -> Iterator[tuple[Path, RunRecord]]:
    """Every readable record under ``records_dir``, oldest first (:func:`scan` lists the unreadable too)."""
    yield from scan(records_dir)[0]
