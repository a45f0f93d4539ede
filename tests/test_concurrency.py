"""Two users at once: two sweeps on the same local store, records folder and cache at the same
time finish without corrupting it or each other's runs; the same sweep twice at once is refused."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from conftest import ROOT, tiny_overrides
from mlflow.tracking import MlflowClient

from pipeline.core.cache import verify_manifest
from pipeline.tracking import records


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def _start(args: list[str], cwd: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", *args], cwd=cwd, env=_env(), stdout=open(log, "w"), stderr=subprocess.STDOUT, text=True
    )


def _args(tiny_bert, tiny_sts_dir, tmp: Path, batches: str) -> list[str]:
    return [
        "-m",
        *tiny_overrides(tiny_bert, tiny_sts_dir, tmp),
        f"bench.batch_size={batches}",
        "bench.iterations=10",
        "bench.max_seconds=1",
    ]


def test_two_sweeps_at_once_on_one_store(tiny_bert, tiny_sts_dir, tmp_path):
    # both start on a store, records folder and export cache that do not exist yet
    a = _start(_args(tiny_bert, tiny_sts_dir, tmp_path, "1,2"), tmp_path, tmp_path / "a.log")
    b = _start(_args(tiny_bert, tiny_sts_dir, tmp_path, "3,4"), tmp_path, tmp_path / "b.log")
    a.wait(timeout=300), b.wait(timeout=300)
    assert a.returncode == 0, (tmp_path / "a.log").read_text()[-3000:]
    assert b.returncode == 0, (tmp_path / "b.log").read_text()[-3000:]

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    (exp,) = [e for e in client.search_experiments() if e.name == "embedding-pipeline"]
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = {r.info.run_id: r for r in runs if r.data.tags.get("sweep.role") == "parent"}
    assert len(parents) == 2 and all(p.info.status == "FINISHED" for p in parents.values())
    by_parent: dict[str, list[str]] = {pid: [] for pid in parents}
    for r in runs:
        if r.info.run_id in parents:
            continue
        assert r.data.tags["status"] == "ok" and r.info.status == "FINISHED"
        assert "latency.p50_ms" in r.data.metrics
        by_parent[r.data.tags["mlflow.parentRunId"]].append(r.data.params["bench.batch_size"])
    assert sorted(sorted(v) for v in by_parent.values()) == [["1", "2"], ["3", "4"]]  # each sweep's own jobs
    # every local record logged once, none lost
    local = [r for _, r in records.iter_records(tmp_path / "records")]
    assert len(local) == 6 and all(r.logged for r in local)
    assert set(Counter(r.data.tags["record_id"] for r in runs).values()) == {1}
    # the shared export cache holds one intact entry, not a mix of two exports
    entries = [p for p in (tmp_path / "cache" / "exports").iterdir() if not p.name.startswith(".")]
    assert len(entries) == 1 and verify_manifest(entries[0]) is None
    assert not list((tmp_path / "cache").rglob("*.tmp")) and not list((tmp_path / "cache" / "exports").glob(".tmp-*"))


def test_the_same_sweep_twice_at_once_is_refused(tiny_bert, tiny_sts_dir, tmp_path):
    args = _args(tiny_bert, tiny_sts_dir, tmp_path, "1,2")
    first = _start(args, tmp_path, tmp_path / "first.log")
    try:
        # start the second once the first holds its sweep record
        import time

        deadline = time.time() + 120
        while "job 1/2" not in (tmp_path / "first.log").read_text() and time.time() < deadline:
            assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            time.sleep(0.2)
        second = subprocess.run(
            [sys.executable, "-m", "pipeline", *args], cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120
        )
    finally:
        first.wait(timeout=300)
    assert second.returncode == 5, second.stdout[-2000:] + second.stderr[-2000:]
    assert "is running in another process right now" in second.stderr
    assert "job 1/2" not in second.stdout  # it ran nothing
    assert first.returncode == 0, (tmp_path / "first.log").read_text()[-3000:]
    local = [r for _, r in records.iter_records(tmp_path / "records")]
    assert len(local) == 3 and all(r.logged for r in local)  # only the first sweep's records
