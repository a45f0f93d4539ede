"""Who ran a job, what ran and where: the tags every record gets where it is made (MLflow's own
run-context tags, the git commit, the environment, the Hydra job's overrides).  Imports nothing
that imports the records (pipeline.tracking.records calls :func:`context_tags`)."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from pipeline.core.redaction import redact

log = logging.getLogger(__name__)
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")  # user:token@ in a remote's URL: never kept

_CONTEXT: dict[str, str] | None = None
ENV_PACKAGES = ("onnxruntime", "optimum", "transformers", "torch", "sentence-transformers", "mlflow", "hydra-core")


def system_tags() -> dict[str, str]:
    """MLflow's own run-context tags (``mlflow.user``, ``mlflow.source.name``/``type``,
    ``mlflow.source.git.commit``/``branch``/``repoURL``, as ``mlflow.start_run`` sets them) and the
    environment a benchmark ran in (``env.*``: CPU model, cores, OS, Python, the versions of the
    packages on the measured path).  The git tags describe the checkout of this package (not the
    current folder); ``git.dirty`` says whether its tree had uncommitted changes.  Computed once
    per process: a record carries the tags of the process that ran it, not of a later sync."""
    global _CONTEXT
    if _CONTEXT is not None:
        return dict(_CONTEXT)
    import platform
    from importlib import metadata

    tags: dict[str, str] = {}
    try:
        from mlflow.tracking.context.registry import resolve_tags

        tags.update(resolve_tags())
    except Exception as exc:  # MLflow's context providers are best effort: say why there are none
        log.debug("mlflow run context unavailable: %s", exc)
    tags.setdefault("mlflow.source.type", "LOCAL")
    if "mlflow.user" not in tags:
        import getpass

        try:
            tags["mlflow.user"] = getpass.getuser()
        except Exception:
            tags["mlflow.user"] = "unknown"
    tags["mlflow.source.name"] = _source_name(tags.get("mlflow.source.name"))
    tags.update(_git_tags(Path(__file__).resolve().parent))
    from pipeline.core.machine import cpu_model

    tags.update(
        {
            "env.cpu_model": cpu_model(),
            "env.cores": str(os.cpu_count() or 1),
            "env.machine": platform.machine(),
            "env.os": platform.platform(),
            "env.python": platform.python_version(),
        }
    )
    for pkg in ENV_PACKAGES:
        try:
            tags[f"env.{pkg}"] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            tags[f"env.{pkg}"] = "not installed"
    _CONTEXT = {k: str(v)[:5000] for k, v in tags.items() if v is not None}  # track redacts what it logs
    return dict(_CONTEXT)


def _source_name(default: str | None) -> str:
    """What ran, as its user typed it: ``pipeline`` for the console script and for ``python -m
    pipeline`` (whose argv[0] is ``.../pipeline/__main__.py``), ``pipeline.sync`` for a module of
    the package run with -m; else MLflow's own (the main file)."""
    import sys

    main = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if main is None:
        return default or "<console>"
    package = Path(__file__).resolve().parents[1]
    try:
        resolved = main.resolve()
    except OSError:
        resolved = main
    if resolved.is_relative_to(package) and resolved.suffix == ".py":
        if resolved == package / "__main__.py":
            return "pipeline"
        return ".".join(("pipeline", *resolved.relative_to(package).with_suffix("").parts))
    if main.name == "pipeline":  # the console script
        return "pipeline"
    return default or str(main)


def _git_tags(where: Path) -> dict[str, str]:
    """The git commit, branch, remote and dirtiness of the checkout holding ``where`` ({} outside git)."""
    try:
        import git

        repo = git.Repo(where, search_parent_directories=True)
    except Exception:
        return {}
    tags = {}
    try:
        tags["mlflow.source.git.commit"] = repo.head.commit.hexsha
        tags["git.dirty"] = str(repo.is_dirty(untracked_files=False)).lower()
    except Exception:
        return {}
    try:
        tags["mlflow.source.git.branch"] = repo.active_branch.name
    except Exception:
        pass
    try:
        if repo.remotes:
            tags["mlflow.source.git.repoURL"] = _USERINFO.sub("", next(iter(repo.remote().urls)))
    except Exception:
        pass
    return tags


def hydra_tags() -> dict[str, str]:
    """Inside a Hydra job: its overrides (``hydra.overrides``, what reruns it) and, in a multirun,
    the Hydra keys its sweep varies (``sweep.varies``: the sweeper's params with more than one
    value).  A sweep that knows its axes otherwise (``-m a=1,2`` on the command line) tags
    ``sweep.varies`` itself; a tag given by the caller wins."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode
        from omegaconf import OmegaConf

        if not HydraConfig.initialized():
            return {}
        hc = HydraConfig.get()
        # a credential in an override is refused before any job runs (pipeline.sweep); track redacts the rest
        tags = {"hydra.overrides": " ".join(hc.overrides.task)[:5000]}
        if hc.mode == RunMode.MULTIRUN:
            varies = _swept_keys()
            if varies is None:
                sweeper = OmegaConf.select(hc, "sweeper.params") or {}
                varies = [k.lstrip("+~") for k, v in sweeper.items() if _several(str(v))]
            if varies:
                tags["sweep.varies"] = ",".join(varies)
        return tags
    except Exception:
        return {}


def _swept_keys() -> list[str] | None:
    """The keys the running sweep varies, as the sweep listed them (``swept_keys`` of its state in
    ``$PIPELINE_SWEEP_STATE``, which pipeline.sweep sets in its own process and hands to a cluster
    launcher's jobs); None when unknown.  Read from the environment, not imported: the sweep
    imports the records, which import this module."""
    import json

    raw = os.environ.get("PIPELINE_SWEEP_STATE")
    try:
        keys = json.loads(raw).get("swept_keys") if raw else None
    except (ValueError, AttributeError):
        return None
    return None if keys is None else [str(k).lstrip("+~") for k in keys]


def _several(value: str) -> bool:
    """A sweeper value that holds several values (``1,8``, ``range(1,4)``, ``choice(a,b)``)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        (override,) = OverridesParser.create().parse_overrides([f"x={value}"])
        return override.is_sweep_override()
    except Exception:
        return "," in value


def context_tags() -> dict[str, str]:
    """The tags every record gets when it is created: :func:`system_tags` and :func:`hydra_tags`,
    secrets masked (an override may carry a token; the record is written to disk as it is), and
    ``stage.run``: the run of the DVC stage that started this process (``$PIPELINE_STAGE_RUN``),
    by which the decide stage keeps only the records of its own run."""
    stage = {"stage.run": os.environ["PIPELINE_STAGE_RUN"]} if os.environ.get("PIPELINE_STAGE_RUN") else {}
    return {k: redact(v) for k, v in {**system_tags(), **hydra_tags(), **stage}.items()}
