"""Execution providers from their own builds: the runtime a provider names, and its processes.

On PyPI the execution providers ship as builds of onnxruntime that replace one another
(``onnxruntime``, ``onnxruntime-gpu``, ``onnxruntime-openvino``, ``onnxruntime-directml``,
``onnxruntime-qnn`` all install the one ``onnxruntime`` module), and plugin EPs
(``onnxruntime-ep-*``, ``onnxruntime-ggml``) pin onnxruntime ranges.  No single environment can
hold them all, so a provider config (``conf/provider/*.yaml``) names the packages of its runtime;
this module makes (once, cached by :mod:`pipeline.runtime.envs` under ``<cache_dir>/envs``) an environment
holding only those packages (the onnxruntime build, numpy, tokenizers: the embedder needs no
torch) and runs the provider's measurements in processes of it (:mod:`pipeline.runtime.worker`, and the
benchmark, :mod:`pipeline.measure.bench`).  A provider with no packages runs in this environment, as
before, with no process hop of its own.

    rt = runtime(cfg.provider, cfg.cache_dir)   # Runtime, or raises Unavailable with the reason
    emb = RemoteEmbedder(rt, spec)              # .embed(texts) in that environment
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core import child
from pipeline.core.errors import PipelineError
from pipeline.core.vocab import Status
from pipeline.embedder.plugin_eps import ProviderFallback
from pipeline.embedder.spec import EmbedderSpec
from pipeline.runtime import envs
from pipeline.runtime.placement import NodeAssignment

ROOT = Path(__file__).resolve().parents[2]  # on the worker's PYTHONPATH: the package, not installed there


class Unavailable(PipelineError, RuntimeError):
    """The provider cannot run here (platform, hardware, package, device): the job is skipped with this."""


class WorkerError(PipelineError, RuntimeError):
    """The provider's process failed for another reason: the job fails with it."""


@dataclass(frozen=True)
class Runtime:
    """Where a provider's measurements run: this environment, or one made for its packages."""

    python: str  # the interpreter
    env: str  # "main", or the environment's folder name under <cache_dir>/envs
    packages: tuple[str, ...] = ()
    versions: dict[str, str] = field(default_factory=dict)  # distributions installed there
    created_s: float = 0.0  # seconds spent making it in this job (0: it was cached)
    size_mb: float = 0.0

    @property
    def own(self) -> bool:
        return self.env != "main"

    def process_env(self) -> dict[str, str]:
        """The environment variables of its processes: the package's root on PYTHONPATH (the
        environment has only the runtime's packages, not this project)."""
        env = dict(os.environ)
        env.pop("OMP_NUM_THREADS", None)
        if self.own:
            env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
        return env

    def tags(self) -> dict[str, str]:
        t = {"runtime.env": self.env, "runtime.python": self.python}
        if self.packages:
            t["runtime.packages"] = " ".join(self.packages)
        if self.created_s:
            t["runtime.env_created_s"] = f"{self.created_s:.1f}"
        return t


MAIN = "main"


def main_runtime() -> Runtime:
    return Runtime(sys.executable, MAIN)


def env_root(cache_dir: str | Path) -> Path:
    """``$PIPELINE_ENVS_DIR``, else ``<cache_dir>/envs``: where the providers' environments live."""
    return Path(os.environ.get("PIPELINE_ENVS_DIR") or Path(cache_dir) / "envs")


def env_name(packages: list[str] | tuple[str, ...]) -> str:
    """The environment's name: its first package's distribution name (``onnxruntime-openvino``);
    for a local wheel or a URL, the name its file begins with.  Always one plain folder name
    (letters, digits, ``_ . -``), so the environment stays inside the envs folder."""
    import re

    if not packages:
        return "env"
    first = str(packages[0]).strip()
    if re.match(r"^[A-Za-z0-9_.\-\[\], ]+@", first):  # name @ URL
        first = first.split("@", 1)[0]
    if "/" in first or "\\" in first:  # a path or a URL: its last part (name-version-...whl)
        first = re.split(r"[/\\]", first.split("#")[0].split("?")[0].rstrip("/\\"))[-1].split("-")[0]
    name = re.split(r"[<>=!~\[; @]", first, maxsplit=1)[0].strip().lower()
    return re.sub(r"[^a-z0-9_.-]", "_", name).lstrip(".") or "env"


def _nvidia_gpu() -> str | None:
    """Why there is no NVIDIA GPU here (None: there is one)."""
    if Path("/dev/nvidiactl").exists() or shutil.which("nvidia-smi"):
        return None
    return "no NVIDIA GPU on this machine (no /dev/nvidiactl, no nvidia-smi)"


HARDWARE_CHECKS = {"nvidia-gpu": _nvidia_gpu}


def prerequisite_problem(p) -> str | None:
    """Why provider ``p`` (a ProviderConfig) cannot run on this machine before any environment is
    made: its builds are for other platforms, or it needs hardware that is not here."""
    if p.platforms and sys.platform not in p.platforms:
        return f"{p.ep} ({p.name}): its onnxruntime builds are for {', '.join(p.platforms)} only; this machine is {sys.platform}"
    check = HARDWARE_CHECKS.get(p.hardware)
    why = check() if check else None
    return f"{p.ep} ({p.name}): {why}" if why else None


def runtime(p, cache_dir: str | Path, log=None) -> Runtime:
    """The runtime of provider ``p``: this environment when it names no packages, else its own
    environment, made on first use.  Raises :class:`Unavailable` with the reason when it cannot
    run here (pip's own words when the packages cannot be installed, offline for example)."""
    why = prerequisite_problem(p)
    if why:
        raise Unavailable(why)
    if not p.packages:
        return main_runtime()
    env = envs.ensure(
        list(p.packages), env_root(cache_dir), name=env_name(p.packages), pip_args=list(p.pip_args), inherit=p.inherit, log=log
    )
    if not env.ok:
        raise Unavailable(f"{p.ep} ({p.name}): its environment could not be made: {env.reason}")
    rt = Runtime(str(env.python), env.path.name, tuple(env.packages), dict(env.versions), env.created_s, env.size_mb)
    lacking = missing_modules(rt)
    if lacking:
        raise Unavailable(
            f"{p.ep} ({p.name}): its environment {env.path.name} has no {', '.join(lacking)}, which the "
            "measurements need: add them to provider.packages (or set provider.inherit=true)"
        )
    return rt


NEEDED_MODULES = ("numpy", "onnxruntime", "tokenizers")  # what pipeline.runtime.worker and pipeline.measure.bench import there
_CHECKED: dict[str, tuple[str, ...]] = {}


def missing_modules(rt: Runtime) -> tuple[str, ...]:
    """The modules of :data:`NEEDED_MODULES` that the runtime's interpreter cannot import (found
    without importing them; checked once per interpreter and process)."""
    if rt.python not in _CHECKED:
        code = "import importlib.util, sys; print(' '.join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))"
        proc = subprocess.run([rt.python, "-c", code, *NEEDED_MODULES], capture_output=True, text=True, env=rt.process_env(), timeout=120)
        _CHECKED[rt.python] = tuple(proc.stdout.split()) if proc.returncode == 0 else NEEDED_MODULES
    return _CHECKED[rt.python]


@dataclass(frozen=True)
class WorkerResult:
    """One process of the provider's runtime: what ran, where its nodes went, its vectors."""

    runtime: dict[str, Any]  # pipeline.runtime.worker.runtime_info(): versions, providers, devices
    assignment: NodeAssignment | None
    vectors: np.ndarray | None
    dim: int | None


def call(
    rt: Runtime,
    spec: EmbedderSpec,
    texts: list[str] | None = None,
    batch_size: int | None = None,
    assignment: bool = False,
    timeout_s: float = 900,
) -> WorkerResult:
    """Run :mod:`pipeline.runtime.worker` once in ``rt``: build the embedder, optionally record where the
    nodes went and embed ``texts``.  Raises Unavailable (no such provider or device there),
    ProviderFallback (it ran elsewhere), or WorkerError."""
    with tempfile.TemporaryDirectory(prefix="provider-worker-") as tmp:
        task = {"spec": spec.to_dict(), "texts": texts, "batch_size": batch_size, "assignment": assignment, "out_dir": tmp}
        try:
            result = child.call(
                "pipeline.runtime.worker",
                task,
                what=f"the provider's process ({rt.env})",
                timeout=timeout_s,
                python=rt.python,
                env=rt.process_env(),
                folder=tmp,
            )
        except child.ChildFailed as exc:
            raise WorkerError(str(exc)) from exc
        status, reason = result.get("status"), result.get("reason", "")
        if status == "unavailable":
            raise Unavailable(reason)
        if status == "fallback":
            exc = ProviderFallback(reason)
            exc.assignment = NodeAssignment.from_dict(result["assignment"]) if result.get("assignment") else None
            raise exc
        if status != Status.OK:
            raise WorkerError(f"the provider's process ({rt.env}): {reason}\n{result.get('traceback', '')[-2000:]}")
        vectors = np.load(Path(tmp) / result["vectors"]) if result.get("vectors") else None
    a = result.get("assignment")
    return WorkerResult(result.get("runtime", {}), NodeAssignment.from_dict(a) if a else None, vectors, result.get("dim"))


class RemoteEmbedder:
    """``embed(texts, batch_size=None)`` done by a process of the provider's runtime (one process a
    call: the provider's measurements need few calls; the benchmark has its own process)."""

    def __init__(self, rt: Runtime, spec: EmbedderSpec):
        self.runtime, self.spec = rt, spec

    def embed(self, texts, batch_size: int | None = None) -> np.ndarray:
        texts = [texts] if isinstance(texts, str) else list(texts)
        out = call(self.runtime, self.spec, texts, batch_size).vectors
        assert out is not None
        return out

    __call__ = embed


def version_tags(info: dict[str, Any]) -> dict[str, str]:
    """The versions a run records: onnxruntime's, and those of the distributions that provide the EP."""
    t = {}
    if info.get("onnxruntime"):
        t["runtime.onnxruntime"] = str(info["onnxruntime"])
    if info.get("openvino"):
        t["runtime.openvino"] = str(info["openvino"])
    dists = info.get("distributions") or {}
    if dists:
        t["runtime.distributions"] = json.dumps(dists, sort_keys=True)[:4000]
    eps = sorted(
        {
            f"{d['ep_name']} {d['ep_metadata'].get('version', '')}".strip()
            for d in info.get("ep_devices") or []
            if d.get("ep_name") not in (None, "CPUExecutionProvider")
        }
    )
    if eps:
        t["runtime.ep_devices"] = "; ".join(eps)[:4000]
    return t
