"""Cache primitives shared by every stage: atomic writes and the cleanup of what killed writers left.

A leaf module: it imports nothing from the package, so any stage can use it without
pulling in another stage.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

# the temporaries of this project's writers: .tmp-<name>-<pid> folders, .<name>.<pid>.tmp files
_STALE = re.compile(r"^(?:\.tmp-.+-(?P<dpid>\d+)|\..+\.(?P<fpid>\d+)\.tmp)$")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def clean_stale(folder: str | Path) -> list[Path]:
    """Remove the temporaries a killed process left in ``folder``: ``.tmp-<name>-<pid>`` folders
    and ``.<name>.<pid>.tmp`` files whose process is gone (a live one may still be writing)."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for p in entries:
        m = _STALE.match(p.name)
        if not m:
            continue
        pid = int(m.group("dpid") or m.group("fpid"))
        if pid == os.getpid() or pid_alive(pid):
            continue
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def write_atomic(path: Path, text: str) -> None:
    """Write a cache file so that a concurrent reader sees the old file or the whole new one,
    never half of it (a temporary file of this process, then an atomic rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path.parent)  # what a killed writer left
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
