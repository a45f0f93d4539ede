"""Sweeps against a real `mlflow server` (SQLite backend, local artifact store, 127.0.0.1 only):
a normal sweep, a server that is down from the start, and one that goes away mid-sweep.
Nothing is lost and nothing is logged twice: every job's record reaches the server once, by
the sweep's own retry or by `python -m pipeline.sync`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from conftest import ROOT, tiny_overrides
from mlflow.tracking import MlflowClient

from pipeline.tracking import records

EXIT_UNSYNCED = 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


class Server:
    """`mlflow server` on 127.0.0.1:<port>, its store and artifacts under ``root``."""

    def __init__(self, root: Path, port: int):
        self.root, self.port = root, port
        self.uri = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90) -> "Server":
        self.root.mkdir(parents=True, exist_ok=True)
        log = open(self.root / "server.log", "a")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                "--backend-store-uri",
                f"sqlite:///{self.root}/server.db",
                "--artifacts-destination",
                str(self.root / "artifacts"),
                "--host",
                "127.0.0.1",  # loopback only
                "--port",
                str(self.port),
                "--workers",
                "1",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_env(),
            start_new_session=True,
        )
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("mlflow server exited:\n" + (self.root / "server.log").read_text()[-3000:])
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError("mlflow server did not answer /health in time")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # gone at once, as a crashed server would be
            self.proc.wait()
        self.proc = None

    def client(self) -> MlflowClient:
        return MlflowClient(self.uri)

    def runs(self, filt: str = "") -> list:
        c = self.client()
        exp = c.get_experiment_by_name("embedding-pipeline")
        return c.search_runs([exp.experiment_id], filter_string=filt, max_results=1000) if exp else []


@pytest.fixture
def server(tmp_path):
    srv = Server(tmp_path / "server", _free_port())
    yield srv
    srv.stop()  # every server process ends with its test


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("server-cache")


def _sweep_args(tiny_bert, tiny_sts_dir, tmp: Path, cache: Path, uri: str, batches: str) -> list[str]:
    args = [o for o in tiny_overrides(tiny_bert, tiny_sts_dir, tmp) if not o.startswith(("tracking.", "cache_dir="))]
    return [
        "-m",
        *args,
        f"cache_dir={cache}",
        f"tracking.uri={uri}",
        f"bench.batch_size={batches}",
        "bench.iterations=10",
        "bench.max_seconds=1",
    ]


def _sync(tmp: Path, uri: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.sync", "--records-dir", str(tmp / "records"), "--tracking-uri", uri],
        cwd=tmp,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _assert_each_record_once(srv: Server, tmp: Path, n_jobs: int) -> None:
    """Every local record is in the server exactly once; the jobs sit under one parent."""
    runs = srv.runs()
    per_record = Counter(r.data.tags.get("record_id") for r in runs)
    local = [r for _, r in records.iter_records(tmp / "records")]
    assert len(local) == n_jobs + 1  # the jobs and their sweep's parent
    assert all(r.logged for r in local), [r.record_id for r in local if not r.logged]
    assert {r.record_id for r in local} == set(per_record), per_record
    assert set(per_record.values()) == {1}, per_record  # nothing logged twice
    (parent,) = [r for r in runs if r.data.tags.get("sweep.role") == "parent"]
    assert parent.info.status == "FINISHED" and parent.data.tags["record.complete"] == "true"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == n_jobs
    for child in children:
        assert child.data.tags["status"] == "ok" and child.info.status == "FINISHED"
        assert "latency.p50_ms" in child.data.metrics
        arts = {a.path for a in srv.client().list_artifacts(child.info.run_id)}
        assert {"latency_samples_ns.csv", "config.yaml", "validation.json"} <= arts
    assert "jobs.json" in {a.path for a in srv.client().list_artifacts(parent.info.run_id)}


def test_sweep_against_a_real_server(server, tiny_bert, tiny_sts_dir, tmp_path, cache):
    server.start()
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", *_sweep_args(tiny_bert, tiny_sts_dir, tmp_path, cache, server.uri, "1,2")],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    _assert_each_record_once(server, tmp_path, 2)
    (parent,) = server.runs("tags.`sweep.role` = 'parent'")
    assert parent.data.tags.get("decision.winner_run_id")  # the decision ran against the server
    assert "unreachable" not in proc.stderr


def test_server_down_from_the_start_then_sync(server, tiny_bert, tiny_sts_dir, tmp_path, cache):
    """Nothing answers on the port: the sweep runs, keeps everything locally, says how to sync."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", *_sweep_args(tiny_bert, tiny_sts_dir, tmp_path, cache, server.uri, "1,2")],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    offline_wall = time.perf_counter() - t0
    assert proc.returncode == EXIT_UNSYNCED, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "is unreachable" in proc.stderr
    cmd = f"python -m pipeline.sync --records-dir {tmp_path / 'records'} --tracking-uri {server.uri}"
    assert cmd in proc.stderr  # the exact command to run later
    assert "Nothing is lost" in proc.stderr
    assert "2 ok" in proc.stdout and "0 failed" in proc.stdout  # the jobs themselves ran fine
    local = [r for _, r in records.iter_records(tmp_path / "records")]
    assert len(local) == 3 and not any(r.logged for r in local)
    assert all(r.status == "ok" for r in local if not r.is_parent)
    assert offline_wall < 150, f"an unreachable server stalled the sweep ({offline_wall:.0f} s)"

    server.start()
    first = _sync(tmp_path, server.uri)
    assert first.returncode == 0, first.stderr
    assert "3 logged, 0 not logged" in first.stdout
    _assert_each_record_once(server, tmp_path, 2)
    again = _sync(tmp_path, server.uri)  # a second sync logs nothing more
    assert again.returncode == 0 and "0 logged, 0 not logged" in again.stdout
    _assert_each_record_once(server, tmp_path, 2)
    # the synced sweep decides like any other (the command the sweep pointed to)
    decided = subprocess.run(
        [sys.executable, "-m", "pipeline.decide", "--tracking-uri", server.uri, "--out", str(tmp_path / "reports")],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert decided.returncode == 0, decided.stderr[-3000:]
    (parent,) = server.runs("tags.`sweep.role` = 'parent'")
    children = {r.info.run_id for r in server.runs("tags.status = 'ok'")}
    assert parent.data.tags["decision.winner_run_id"] in children


def test_server_goes_away_mid_sweep(server, tiny_bert, tiny_sts_dir, tmp_path, cache):
    """The server is killed once job 1 is logged; jobs 2-3 are kept locally; sync completes the sweep."""
    server.start()
    args = _sweep_args(tiny_bert, tiny_sts_dir, tmp_path, cache, server.uri, "1,2,3")
    out_lines: list[str] = []
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", *args],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    killed_at_job2 = False
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            out_lines.append(line)
            if "job 2/3" in line and not killed_at_job2:
                assert any("ok in" in x and "run " in x for x in out_lines), "job 1 was not logged"
                server.stop()  # job 1 is in the server; the rest of the sweep sees no server
                killed_at_job2 = True
        proc.wait(timeout=240)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    out = "".join(out_lines)
    assert killed_at_job2, out[-3000:]
    assert proc.returncode == EXIT_UNSYNCED, out[-3000:]
    assert "kept locally" in out and "python -m pipeline.sync --records-dir" in out
    local = {r.record_id: r for _, r in records.iter_records(tmp_path / "records")}
    assert sum(r.logged for r in local.values()) == 1  # job 1 only
    assert len(local) == 4

    server.start()  # the same store comes back
    synced = _sync(tmp_path, server.uri)
    assert synced.returncode == 0, synced.stderr
    assert "3 logged" in synced.stdout  # jobs 2 and 3 and the parent; job 1 was not logged again
    _assert_each_record_once(server, tmp_path, 3)
