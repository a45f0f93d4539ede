"""Cache primitives shared by every stage: atomic writes and content keys.

A leaf module: it imports nothing from the package, so any stage can use it without
pulling in another stage.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def write_atomic(path: Path, text: str) -> None:
    """Write a cache file so that a concurrent reader sees the old file or the whole new one,
    never half of it (a temporary file of this process, then an atomic rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def key_of(payload, length: int = 20) -> str:
    """A stable content key: the sha256 of the payload as sorted JSON, cut to ``length``."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:length]
