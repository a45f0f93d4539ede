"""Virtual environments made on demand, one per package set, for packages that cannot share ours.

Execution providers ship as rival builds of the same ``onnxruntime`` module
(``onnxruntime-openvino``, ``onnxruntime-gpu``, ``onnxruntime-ggml`` ...), and some peers pin
``numpy<2``; none of them can be installed beside the main environment's packages.  Each such
package set gets its own environment under ``<root>/<name>-<hash>``, created once (``python -m
venv`` and ``pip install``), reused while its marker file says it is complete, and rebuilt when
it is not.  Nothing here imports from the package (a leaf module, like ``cache``).

    env = envs.ensure(["onnxruntime-openvino==1.24.1", "tokenizers", "numpy"], root, name="openvino")
    if env.python is None:
        print("skipped:", env.reason)          # e.g. pip could not find the package offline
    subprocess.run([str(env.python), "-m", "pipeline.runtime.worker", ...])
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import site
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock

from pipeline.core import ownership

MARKER = "pipeline-env.json"


@dataclass(frozen=True)
class Env:
    """An environment for one package set: its python, or None and exactly why not."""

    packages: tuple[str, ...]
    path: Path
    python: Path | None
    reason: str = ""  # why there is no python (pip's own last lines)
    versions: dict[str, str] = field(default_factory=dict)  # distribution -> version, as installed
    size_mb: float = 0.0
    created_s: float = 0.0  # seconds it took to create (0 when it was reused)

    @property
    def ok(self) -> bool:
        return self.python is not None


def key(packages: Sequence[str], python: str = sys.executable, inherit: bool = False) -> str:
    """Hash of the package set and the interpreter's version, the environment's identity."""
    ident = {
        "packages": sorted(packages),
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "base": str(Path(python).resolve()),
    }
    if inherit:
        ident["inherit"] = True
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:12]


def _size_mb(path: Path) -> float:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return round(total / 2**20, 1)


def _freeze(python: Path) -> dict[str, str]:
    out = subprocess.run([str(python), "-m", "pip", "list", "--format=json", "--disable-pip-version-check"], capture_output=True, text=True)
    try:
        return {d["name"].lower(): d["version"] for d in json.loads(out.stdout)}
    except (ValueError, KeyError):
        return {}


def _inherit_site(python: Path) -> None:
    """Append this interpreter's site-packages to the new environment's path, after its own."""

    own = subprocess.run([str(python), "-c", "import site; print(site.getsitepackages()[0])"], capture_output=True, text=True, check=True)
    Path(own.stdout.strip(), "_pipeline_inherit.pth").write_text("\n".join(site.getsitepackages()) + "\n")


def _tail(text: str, n: int = 3) -> str:
    lines = [ln.strip() for ln in (text or "").strip().splitlines() if ln.strip()]
    return " | ".join(lines[-n:])


def read(path: Path) -> Env | None:
    """The environment at ``path`` if its marker says it is complete, else None."""
    try:
        meta = json.loads((path / MARKER).read_text())
    except (OSError, ValueError):
        return None
    python = path / "bin" / "python"
    if not python.exists():
        return None
    return Env(tuple(meta["packages"]), path, python, versions=meta.get("versions", {}), size_mb=meta.get("size_mb", 0.0))


def ensure(
    packages: Sequence[str],
    root: str | Path,
    *,
    name: str = "env",
    pip_args: Sequence[str] = (),
    inherit: bool = False,
    timeout_s: float = 1800,
    log=None,
) -> Env:
    """The environment holding exactly ``packages`` (pip requirement strings), created on first use.

    ``pip_args`` go to ``pip install`` as they are (``--no-index``, ``--find-links DIR``,
    ``--extra-index-url URL``).  ``inherit`` lets the environment see this environment's
    packages after its own (a ``.pth`` file), to reuse a large package such as torch; the
    environment's own installs win.  Creation holds a file lock, so two processes asking for the same
    set build it once.  A failed creation leaves no marker, so the next call tries again, and
    the reason says what pip said.
    """
    packages = tuple(packages)
    root = Path(root)
    path = root / f"{name}-{key(packages, inherit=inherit)}"
    if path.parent != root or not path.name or name.startswith(".") or "/" in name:
        raise ValueError(f"environment name {name!r} would leave {root}")
    found = read(path)
    if found is not None:
        return found
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        found = read(path)  # made by another process while we waited
        if found is not None:
            return found
        if log:
            log(f"creating the environment {path.name} for {' '.join(packages)} (once; it is cached)")
        return _create(path, packages, pip_args, inherit, timeout_s)


def _create(path: Path, packages: tuple[str, ...], pip_args: Sequence[str], inherit: bool, timeout_s: float) -> Env:
    """Make the environment in ``path`` (under the caller's lock); its marker is written last."""
    shutil.rmtree(path, ignore_errors=True)
    t0 = time.perf_counter()
    python = path / "bin" / "python"
    try:
        subprocess.run(
            [sys.executable, "-m", "venv", str(path)], check=True, capture_output=True, text=True, preexec_fn=ownership.dies_with_parent
        )
        if inherit:
            _inherit_site(python)
        cmd = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *pip_args, *packages]
        # pip dies with this process: a killed pipeline leaves no pip writing into the folder
        proc = subprocess.run(
            cmd if packages else ["true"], capture_output=True, text=True, timeout=timeout_s, preexec_fn=ownership.dies_with_parent
        )
    except subprocess.CalledProcessError as exc:
        return Env(packages, path, None, f"python -m venv failed: {_tail(exc.stderr or exc.stdout)}")
    except (subprocess.SubprocessError, OSError) as exc:
        return Env(packages, path, None, f"creating {path} failed: {type(exc).__name__}: {exc}")
    if proc.returncode != 0:
        why = f"pip install {' '.join(packages)} failed (exit {proc.returncode}): {_tail(proc.stderr or proc.stdout)}"
        return Env(packages, path, None, why)
    versions = _freeze(python)
    size = _size_mb(path)
    meta = {"packages": list(packages), "versions": versions, "size_mb": size, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    tmp = path / f".{MARKER}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, path / MARKER)
    return Env(packages, path, python, versions=versions, size_mb=size, created_s=round(time.perf_counter() - t0, 1))
