"""A sweep's lock on its records: one run of a sweep (its name and job list) at a time on a records
folder, held by the process that runs it until it ends."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.core.errors import Exit, PipelineError

if TYPE_CHECKING:
    from filelock import FileLock


class SweepBusy(PipelineError, RuntimeError):
    """The same sweep is running in another process on these records."""

    exit = Exit.BUSY


_HELD: dict[str, "FileLock"] = {}  # the sweep locks this process holds, by lock file


def _sweep_lock_path(records_dir: str | Path, sweep_key: str) -> Path:
    return Path(records_dir) / f".sweep-{sweep_key}.lock"


def hold_sweep(records_dir: str | Path, sweep_key: str, name: str) -> "FileLock":
    """Lock sweep ``sweep_key`` (its name and job list) on these records for this process, before
    anything of it is looked up or created: a second run of the same sweep at the same time
    (another user, another terminal) is refused (:class:`SweepBusy`) instead of sharing its
    parent and measuring every job twice under the other's load.  Held until released or the
    process ends; a lock this process held for another sweep is released."""
    from filelock import FileLock, Timeout

    path = str(_sweep_lock_path(records_dir, sweep_key))
    lock = FileLock(path, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise SweepBusy(
            f"refused: sweep {name!r} (key {sweep_key}, records {records_dir}) is running in another process "
            "right now; wait for it to finish, or run a different sweep"
        ) from None
    for other in [p for p in _HELD if p != path]:
        _HELD.pop(other).release()
    _HELD[path] = lock
    return lock


def sweep_lock_free(records_dir: str | Path, sweep_key: str) -> bool:
    """True when no process holds the lock of sweep ``sweep_key`` on ``records_dir`` (its
    process is gone); a sweep this process runs counts as held."""
    from filelock import FileLock, Timeout

    path = str(_sweep_lock_path(records_dir, sweep_key))
    if path in _HELD:
        return False
    lock = FileLock(path, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        return False
    lock.release()
    return True
