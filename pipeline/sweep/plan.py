"""The sweep's plan: its jobs, what they vary, their config hash, and which launchers may run them."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from pipeline.core.errors import Exit, PipelineError
from pipeline.tracking.names import NOT_JOB_SETTINGS

SEQUENTIAL_LAUNCHERS = ("hydra._internal.core_plugins.basic_launcher.BasicLauncher",)
# launchers that put each job on its own machine (a node reserved for it); see conf/hydra/launcher/
CLUSTER_LAUNCHERS = ("hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher", "hydra_plugins.pipeline_slurm.SlurmLauncher")
# keys that do not change what a job measures; left out of the config hash (resume depends on it:
# tests/test_sweep_plan.py pins this list)


class SweepConfigError(PipelineError, ValueError):
    """A job of the sweep names a config option that does not exist, or the launcher is refused;
    nothing was run."""

    exit = Exit.CONFIG


def config_hash(dcfg: DictConfig | dict) -> str:
    """A stable hash of the resolved config, without the keys of :data:`pipeline.tracking.names.NOT_JOB_SETTINGS`."""
    data = OmegaConf.to_container(dcfg, resolve=True) if isinstance(dcfg, DictConfig) else dict(dcfg)
    for key in NOT_JOB_SETTINGS:
        data.pop(key, None)
    _drop_added_defaults(data)
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _added_defaults() -> dict[tuple[str, ...], Any]:
    """Settings added after runs were hashed, at the value that measures what those runs measured:
    left out of the hash at that value, so a sweep run before them still resumes."""
    from dataclasses import asdict

    from pipeline.config import WorkloadConfig

    return {("workload",): asdict(WorkloadConfig()), ("provider", "max_sequence"): 0}


def _drop_added_defaults(data: dict) -> None:
    for path, default in _added_defaults().items():
        node = data
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and path[-1] in node and node[path[-1]] == default:
            node.pop(path[-1])


def job_list(config: DictConfig) -> list[list[str]]:
    """The override lists the basic sweeper will launch, in its order."""
    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    args = [f"{k}={v}" for k, v in params.items()]
    args += list(OmegaConf.select(config, "hydra.overrides.task") or [])
    parsed = OverridesParser.create().parse_overrides(args)
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def swept_keys(jobs: list[list[str]]) -> list[str]:
    """The keys whose value differs between jobs (what the sweep varies), in first-seen order."""
    seen: dict[str, set[str]] = {}
    for job in jobs:
        for o in job:
            seen.setdefault(_key(o), set()).add(o.partition("=")[2])
    return [k for k, vs in seen.items() if len(vs) > 1]


def sweep_key(name: str, jobs: list[list[str]]) -> str:
    """The sweep's identity (its name and job list, ``rerun`` aside): a killed run of the same
    sweep is resumed under the same key."""
    key_jobs = [[o for o in job if _key(o) != "rerun"] for job in jobs]
    return hashlib.sha256(json.dumps({"name": name, "jobs": key_jobs}, sort_keys=True).encode()).hexdigest()[:16]


def label(overrides: list[str], swept: list[str]) -> str:
    """A job's name: the overrides of what the sweep varies (all of them if it varies nothing)."""
    picked = [o for o in overrides if _key(o) in swept]
    return " ".join(picked or overrides) or "(defaults)"


def param_key(k: str) -> str:
    """An override's key as a parent run's param name (``sweep.<key>``)."""
    return "sweep." + "".join(c if c.isalnum() or c in "._-/ " else "_" for c in k.lstrip("+~"))


def launcher_problem(launcher_target: str | None, launcher_cfg: Any = None) -> str | None:
    """Why a launcher is refused for benchmark jobs, or None when it runs them one by one or
    each job alone on a node of its own (a Slurm job with an exclusive node, one task)."""
    if not launcher_target or launcher_target in SEQUENTIAL_LAUNCHERS:
        return None
    if launcher_target in CLUSTER_LAUNCHERS:
        get = (lambda k, d=None: OmegaConf.select(launcher_cfg, k, default=d)) if launcher_cfg is not None else (lambda k, d=None: d)
        extra = get("additional_parameters", {}) or {}
        exclusive = str(extra.get("exclusive", "")).lower() in ("true", "1", "yes", "user", "mcs")
        if exclusive and (get("tasks_per_node", 1) or 1) == 1 and (get("nodes", 1) or 1) == 1:
            return None
        return (
            f"refused: launcher {launcher_target} must give each benchmark job a node of its own "
            "(hydra.launcher.additional_parameters.exclusive=true, tasks_per_node=1, nodes=1), or jobs "
            "sharing a node would measure each other's load; see conf/hydra/launcher/slurm.yaml"
        )
    return (
        f"refused: launcher {launcher_target} runs jobs in parallel; benchmark jobs on one host would "
        f"share its {os.cpu_count()} CPU cores, caches and memory bandwidth, so each latency would include "
        "the other jobs' load. Use the default basic launcher (jobs one after another), or a cluster "
        "launcher with one job per node (hydra/launcher=slurm)."
    )


def runs_elsewhere(launcher_target: str | None) -> bool:
    """The jobs run on other machines than the launching host (a cluster launcher)."""
    return bool(launcher_target) and launcher_target not in SEQUENTIAL_LAUNCHERS


def check_jobs_compose(config: DictConfig, jobs: list[list[str]]) -> None:
    """Compose every job's config before anything runs or is logged: a sweep that names an
    option that does not exist (``model=nope``) is refused at once, not after hours of jobs."""
    from hydra.core.global_hydra import GlobalHydra

    gh = GlobalHydra.instance()
    if not gh.is_initialized():
        return
    loader = gh.config_loader()
    for num, job in enumerate(jobs):
        try:
            loader.load_sweep_config(config, list(job))
        except Exception as exc:
            msg = str(exc).split("\nConfig search path")[0].strip()
            raise SweepConfigError(
                f"config error: sweep job {num + 1}/{len(jobs)} ({' '.join(job)}): {msg}\nnothing was run and no run was logged"
            ) from None
