"""Which temporaries and processes are ours: the one policy for cleanup and for signals.

- A temporary folder is ours only if it holds a marker (:data:`MARKER`) written when it was made,
  naming the host, the pid and the start time of the process that made it.  Cleanup removes a
  folder only when its marker proves it is ours, names THIS host, and that process is gone (no
  process with that pid, or one with another start time: the pid was reused).  A folder of
  another host (a cache or records folder on a shared filesystem) is never removed by pid; a
  folder without a readable marker (a user's, or one whose marker was not yet written) is left.
- A temporary file cannot hold a marker, so its name carries the same facts
  (:func:`temp_file`: ``.<name>.<pid>-<start ms>-<host>.tmp``); cleanup applies the same rule.
- A process is signalled only after its identity is checked (:func:`same_process`): the pid,
  its start time and its command line, recorded when it was started.

A leaf module (it imports nothing from the package).
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import socket
from pathlib import Path

MARKER = ".pipeline-owner.json"
_FILE = re.compile(r"^\..+\.(?P<pid>\d+)-(?P<start>\d+)-(?P<host>[A-Za-z0-9_]+)\.tmp$")
_TOLERANCE_S = 0.05  # create_time is derived from clock ticks: equal for one process, read twice


def host() -> str:
    return socket.gethostname()


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", name) or "_"


def process_identity(pid: int | None = None) -> dict:
    """The facts that tell a process from a later one with the same pid."""
    import psutil  # here, not at the top: a provider's own environment imports this module without psutil

    p = psutil.Process(pid or os.getpid())
    try:
        cmdline = p.cmdline()
    except (psutil.AccessDenied, psutil.ZombieProcess):
        cmdline = []
    return {"host": host(), "pid": p.pid, "start": p.create_time(), "cmdline": cmdline}


def same_process(identity: dict) -> bool:
    """Whether the process ``identity`` names is still running on this host (not a zombie, not
    another process that reuses its pid).  A command line is compared when it was recorded."""
    import psutil

    if identity.get("host", host()) != host():
        return False
    try:
        p = psutil.Process(int(identity["pid"]))
        if p.status() == psutil.STATUS_ZOMBIE:
            return False
        if abs(p.create_time() - float(identity["start"])) > _TOLERANCE_S:
            return False
        want = identity.get("cmdline")
        if want:
            try:
                return p.cmdline() == list(want)
            except psutil.AccessDenied:
                return True  # start time and pid match; the command line is not ours to read
        return True
    except (psutil.NoSuchProcess, KeyError, TypeError, ValueError):
        return False
    except psutil.AccessDenied:
        return True  # it exists and we cannot tell more: never treat it as gone


def dies_with_parent() -> None:
    """A ``preexec_fn`` for :mod:`subprocess`: the child is killed when the process that started it
    ends, killed included (Linux: PR_SET_PDEATHSIG), so that a pip, or a sweep, of a killed stage
    does not write on into the folder the next run rebuilds."""
    import ctypes
    import signal
    import sys

    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # 1: PR_SET_PDEATHSIG


@functools.lru_cache(maxsize=8)
def _start_of(pid: int) -> float:
    import psutil

    return psutil.Process(pid).create_time()


def _own() -> dict:
    """This process's host, pid and start time (cached per pid: a forked child is another)."""
    return {"host": host(), "pid": os.getpid(), "start": _start_of(os.getpid())}


def mark(folder: str | Path) -> None:
    """Write the marker that makes ``folder`` provably this process's temporary."""
    (Path(folder) / MARKER).write_text(json.dumps(_own()))


def unmark(folder: str | Path) -> None:
    (Path(folder) / MARKER).unlink(missing_ok=True)


def make_temp_dir(path: str | Path) -> Path:
    """Create ``path`` (it must not exist) as a marked temporary folder of this process."""
    path = Path(path)
    path.mkdir()
    mark(path)
    return path


def _owner_gone(ident: dict) -> bool:
    return ident.get("host") == host() and not same_process(ident)


def stale_dir(folder: str | Path) -> bool:
    """Whether ``folder`` is a marked temporary of this host whose process is gone."""
    try:
        ident = json.loads((Path(folder) / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(ident, dict) and _owner_gone(ident)


def temp_file(path: str | Path) -> Path:
    """The name of this process's temporary file for ``path`` (in the same folder)."""
    path = Path(path)
    ident = _own()
    return path.with_name(f".{path.name}.{ident['pid']}-{int(ident['start'] * 1000)}-{_slug(host())}.tmp")


def stale_file(path: str | Path) -> bool:
    m = _FILE.match(Path(path).name)
    if not m or m.group("host") != _slug(host()):
        return False
    return _owner_gone({"host": host(), "pid": int(m.group("pid")), "start": int(m.group("start")) / 1000})


def clean_stale(folder: str | Path, prefix: str = "") -> list[Path]:
    """Remove what killed processes of this host left in ``folder``: marked folders (whose name
    starts with ``prefix``) and named temporary files, each only when :func:`stale_dir` /
    :func:`stale_file` prove it.  Returns what was removed."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for p in entries:
        if not p.name.startswith(prefix):
            continue
        try:
            if p.is_dir() and not p.is_symlink() and stale_dir(p):
                shutil.rmtree(p, ignore_errors=True)
            elif p.is_file() and stale_file(p):
                p.unlink(missing_ok=True)
            else:
                continue
        except OSError:
            continue
        removed.append(p)
    return removed
