"""One benchmark at a time on a machine: a file lock shared by every checkout and user.

A leaf module (it imports nothing from the package).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

LOCK_NAME = "pipeline-benchmark.lock"


# where the lock lives: the first of these folders that this user can write in (or that already
# holds a lock file this user can open).  None of them follows $TMPDIR, which per-user and per-job
# temp folders (pam_tmpdir, systemd PrivateTmp, Slurm's per-job TMPDIR) make private.
LOCK_DIRS = ("/run/lock", "/var/lock", "/dev/shm", "/tmp")


def machine_lock_path() -> Path:
    """One lock file per machine, shared by every checkout, user and job: ``$PIPELINE_MACHINE_LOCK``
    if set, else ``pipeline-benchmark.lock`` in the first usable folder of :data:`LOCK_DIRS`
    (never ``$TMPDIR``)."""
    override = os.environ.get("PIPELINE_MACHINE_LOCK")
    if override:
        return Path(override)
    for folder in LOCK_DIRS:
        path = Path(folder) / LOCK_NAME
        if os.access(path, os.R_OK | os.W_OK) or (os.path.isdir(folder) and os.access(folder, os.W_OK | os.X_OK)):
            return path
    return Path(LOCK_DIRS[-1]) / LOCK_NAME


class MachineLock:
    """Held while a benchmark is timed, so that two pipelines on one machine do not measure
    each other.  A second benchmark waits up to ``wait_s`` for the first; if it is still held, the
    measurement goes on and is marked contended, naming the holder."""

    def __init__(self, wait_s: float, label: str = ""):
        from filelock import FileLock

        self.path = machine_lock_path()
        self.wait_s = wait_s
        self.label = label
        self._lock = FileLock(str(self.path), mode=0o666)  # every user of the machine shares it
        self.held = False
        self.holder: str | None = None
        self.waited_s = 0.0

    def _owner_file(self) -> Path:
        return self.path.with_name(self.path.name + ".owner")

    def __enter__(self) -> "MachineLock":
        from filelock import Timeout

        t0 = time.perf_counter()
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            holder = self._read_owner()
            print(f"[bench] another benchmark holds this machine ({holder}); waiting up to {self.wait_s:.0f} s", flush=True)
            try:
                self._lock.acquire(timeout=self.wait_s)
            except Timeout:
                self.holder = holder
        except OSError as exc:  # (after Timeout, an OSError too) a lock file this user cannot open
            print(
                f"[bench] the machine-wide benchmark lock {self.path} is not usable ({exc}); "
                "another pipeline benchmark on this machine would go unseen",
                flush=True,
            )
            return self
        self.waited_s = time.perf_counter() - t0
        self.held = self._lock.is_locked
        if self.held:
            try:
                self._owner_file().write_text(f"pid {os.getpid()} {self.label}".strip())
            except OSError:
                pass
        return self

    def _read_owner(self) -> str:
        try:
            return self._owner_file().read_text().strip() or "unknown process"
        except OSError:
            return "unknown process"

    @property
    def contention(self) -> str | None:
        """Why the measurement under this lock is contended (set on entry; None: it had the machine)."""
        if self.holder is None:
            return None
        return f"another pipeline benchmark held the machine for more than {self.wait_s:.0f} s ({self.holder})"

    def __exit__(self, *exc) -> None:
        if self.held:
            self._lock.release()
            self.held = False
