"""Past one machine: the Slurm launcher config (submitit), the shared tracking profile, and the
measurement rule that only a launcher giving each job a machine of its own may run jobs at once."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import CONF_DIR, ROOT, tiny_overrides

from pipeline.config import ConfigError, to_config
from pipeline.study.stages import compose_config
from pipeline.sweep import launcher_problem
from pipeline.tracking import records

SLURM = "hydra_plugins.pipeline_slurm.SlurmLauncher"


def test_the_slurm_launcher_config_composes_with_one_exclusive_node_per_job():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    cfg = compose_config(["+sweep=batch", "hydra/launcher=slurm", "hydra.launcher.partition=cpu"], hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_ == SLURM
    assert launcher.additional_parameters.exclusive is True
    assert launcher.tasks_per_node == 1 and launcher.nodes == 1 and launcher.partition == "cpu"
    assert launcher_problem(launcher._target_, launcher) is None  # allowed: a node per job


def test_a_cluster_launcher_sharing_nodes_and_local_parallel_launchers_are_refused():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    shared = compose_config(
        ["+sweep=batch", "hydra/launcher=slurm", "hydra.launcher.additional_parameters.exclusive=false"], hydra_config=True
    )
    reason = launcher_problem(SLURM, shared.hydra.launcher)
    assert reason and "node of its own" in reason and "exclusive=true" in reason
    local = compose_config(["+sweep=batch", "hydra/launcher=submitit_local"], hydra_config=True)
    reason = launcher_problem(local.hydra.launcher._target_, local.hydra.launcher)
    assert reason and "in parallel" in reason


def test_the_shared_tracking_profile_takes_the_server_from_the_environment(monkeypatch):
    text = (CONF_DIR / "tracking" / "shared.yaml").read_text()
    assert "${oc.env:MLFLOW_TRACKING_URI}" in text
    assert "uri: http" not in text and "@" not in text.split("uri:")[1].splitlines()[0]  # no address, no secret here
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    cfg = to_config(compose_config(["tracking=shared"], hydra_config=True))
    assert cfg.tracking.resolved_uri() == "http://127.0.0.1:5999"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    with pytest.raises(ConfigError, match="MLFLOW_TRACKING_URI"):  # unset: refused, never a local store instead
        to_config(compose_config(["tracking=shared"], hydra_config=True))


def test_the_basic_launcher_runs_the_jobs_one_at_a_time(tiny_bert, tiny_sts_dir, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    args = [
        "-m",
        "hydra/launcher=basic",
        *tiny_overrides(tiny_bert, tiny_sts_dir, tmp_path),
        "bench.batch_size=1,2,3",
        "bench.iterations=10",
        "bench.max_seconds=1",
    ]
    proc = subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted((r for _, r in records.iter_records(tmp_path / "records") if not r.is_parent), key=lambda r: r.created)
    assert [r.params["bench.batch_size"] for r in jobs] == ["1", "2", "3"]
    for before, after in zip(jobs, jobs[1:]):  # each job started after the one before had ended
        assert after.created >= before.created + before.seconds - 0.05
