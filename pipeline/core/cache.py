"""Cache primitives shared by every stage: atomic writes, JSON cache entries (one reader: a damaged
entry is logged, removed and computed again), the cleanup of what killed writers left,
file digests, and content-addressed build folders (:func:`cached_build`: built in a temporary
folder, renamed into place when complete, trusted again only while every file matches its
manifest).

Of the package it imports only :mod:`pipeline.core.ownership`, so any stage can use it without
pulling in another stage.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

from pipeline.core import ownership

log = logging.getLogger(__name__)
T = TypeVar("T")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def clean_stale(folder: str | Path) -> list[Path]:
    """Remove the temporaries a killed process of this host left in ``folder``: marked
    ``.tmp-*`` folders and ``.<name>.<pid>-<start>-<host>.tmp`` files whose process is gone,
    by the one policy of :mod:`pipeline.core.ownership` (another host's, a live writer's, and
    anything unmarked are left)."""
    return ownership.clean_stale(folder, prefix=".")


def read_json_entry(path: str | Path, parse: Callable[[Any], T], what: str) -> T | None:
    """The one way a cache entry is read: ``parse`` of the JSON in ``path``, or None when there is no
    entry.  An entry that cannot be read or parsed (a damaged file, another version's fields) is
    said in the log, removed and read as none: the caller computes it again.  ``parse`` may return
    None for an entry that is whole but not usable (too old, contended): it stays on disk."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return parse(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        log.warning("%s cache entry %s is unreadable (%s: %s): computing it again", what, path, type(exc).__name__, exc)
        path.unlink(missing_ok=True)
        return None


def write_json_entry(path: str | Path, value: Any, indent: int | None = None) -> None:
    """A cache entry, written atomically (:func:`write_atomic`)."""
    write_atomic(Path(path), json.dumps(value, indent=indent, default=str))


def write_atomic(path: Path, text: str) -> None:
    """Write a cache file so that a concurrent reader sees the old file or the whole new one,
    never half of it (a temporary file of this process, then an atomic rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path.parent)  # what a killed writer left
    tmp = ownership.temp_file(path)
    try:
        tmp.write_text(text)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# -- content-addressed build folders ----------------------------------------------------------------
MANIFEST = "manifest.json"
log = logging.getLogger(__name__)


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_manifest(folder: Path, info: dict) -> None:
    files = {
        str(p.relative_to(folder)): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }
    (folder / MANIFEST).write_text(json.dumps({"files": files, **info}, indent=2, sort_keys=True))


def verify_manifest(folder: Path) -> str | None:
    """None when every file matches the manifest, else what is wrong."""
    mf = folder / MANIFEST
    if not mf.is_file():
        return "no manifest (an interrupted export)"
    try:
        files = json.loads(mf.read_text())["files"]
    except (ValueError, KeyError) as exc:
        return f"unreadable manifest ({exc})"
    for rel, meta in files.items():
        p = folder / rel
        if not p.is_file():
            return f"{rel} is missing"
        if p.stat().st_size != meta["bytes"]:
            return f"{rel} has {p.stat().st_size} bytes, manifest says {meta['bytes']}"
        if sha256_file(p) != meta["sha256"]:
            return f"{rel} does not match its sha256"
    return None


def cached_build(folder: Path, build, info: dict) -> tuple[bool, float]:
    """Reuse ``folder`` if it is a complete, intact cache entry, else run ``build(tmp)``.

    Returns (cached, seconds spent building).  ``build`` writes into a temporary folder
    that is renamed into place only when complete, so a killed export leaves no entry.
    """
    if folder.parent.is_dir():
        clean_stale(folder.parent)  # the half-built entries of killed exports
    if folder.is_dir():
        problem = verify_manifest(folder)
        if problem is None:
            return True, 0.0
        log.warning("cache entry %s is not trusted (%s): rebuilding it", folder, problem)
        shutil.rmtree(folder, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".tmp-{folder.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    ownership.make_temp_dir(tmp)  # marked: only this host's cleanup may remove it, once this process is gone
    t0 = time.perf_counter()
    try:
        build(tmp)
        ownership.unmark(tmp)
        write_manifest(tmp, info)
        try:
            os.rename(tmp, folder)
        except OSError:  # another process finished the same entry first
            if verify_manifest(folder) is not None:
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return False, time.perf_counter() - t0
