"""Scale-out on a real cluster: a one-node Slurm cluster (munge, slurmdbd, slurmctld, slurmd) and
an `mlflow server` on PostgreSQL, all on loopback (``pipeline.cluster.local``), driven by
``python -m pipeline +sweep=smoke hydra/launcher=slurm tracking=shared`` on the tiny model.

Every count below is read from where it lives: Slurm's accounting (``sacct``) for the jobs,
the MLflow tables in PostgreSQL for the runs.  Faults: a job cancelled mid-run (``scancel``),
the tracking server killed and restarted while jobs run, ``slurmd`` stopped with jobs queued.

Marker ``cluster`` (``pytest -m cluster``); ``.ci/run`` installs the Debian packages and runs
them.  Outside CI they skip, saying why, where the packages are missing or we are not root.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import ROOT, tiny_overrides

from pipeline.tracking import records

pytestmark = pytest.mark.cluster

SWEEP = ["+sweep=smoke", "hydra/launcher=slurm", "tracking=shared"]


@pytest.fixture(scope="module")
def cluster():
    from pipeline.cluster.local import LocalCluster, missing

    why = None
    if os.geteuid() != 0:
        why = "the local Slurm cluster runs its daemons as root (run the tests as root, as .ci/run does)"
    elif missing():
        why = "not installed: " + ", ".join(missing()) + " (.ci/run installs them with apt-get)"
    else:
        try:
            import psycopg2  # noqa: F401
        except ImportError:
            why = "psycopg2 is not installed (pip install -e '.[cluster]')"
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the cluster tests: {why}")
        pytest.skip(why)
    root = Path(tempfile.mkdtemp(prefix="pipeline-cluster-"))
    c = LocalCluster(root)
    t0 = time.perf_counter()
    c.start()
    print(f"\n[cluster] started in {time.perf_counter() - t0:.0f} s: {c.env()}")
    yield c
    c.stop()
    shutil.rmtree(root, ignore_errors=True)


def test_the_daemons_listen_on_loopback_and_no_password_is_on_a_command_line(cluster):
    """Issue 28, breaks 9 and 23: the local cluster is for one trusted machine: nothing listens
    beyond loopback, and no local user reads the database password in ``ps``."""
    import psutil

    procs = []
    for pid in cluster.state["pids"].values():
        try:
            p = psutil.Process(pid)
            procs += [p, *p.children(recursive=True)]
        except psutil.NoSuchProcess:
            pass
    pids = {p.pid for p in procs}
    listening = [c for c in psutil.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN and c.pid in pids]
    wide = {psutil.Process(c.pid).name() for c in listening if c.laddr.ip not in ("127.0.0.1", "::1")}
    # slurmd, MLflow, PostgreSQL and MariaDB bind to loopback by their settings; slurmctld (one port) and slurmdbd
    # ignore theirs and are kept there by pipeline.cluster.loopback's bind shim, which needs a C compiler: without one the
    # cluster says so in its state, and only those two may listen wider
    open_ = cluster.state.get("wide_open")
    assert listening and wide <= (set(open_["daemons"]) if open_ else set()), (wide, open_)
    assert open_ is None or "compiler" in open_["why"] or "compile" in open_["why"]
    for p in psutil.process_iter(["cmdline"]):
        line = " ".join(p.info["cmdline"] or [])
        assert cluster.state["pg_password"] not in line and cluster.state["db_password"] not in line, line


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cluster-cache")  # the tiny model's export, shared by the sweeps


def _env(cluster) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env.update(cluster.env())
    return env


def _args(tiny_bert, tiny_sts_dir, tmp: Path, cache: Path, experiment: str, *extra: str) -> list[str]:
    args = [o for o in tiny_overrides(tiny_bert, tiny_sts_dir, tmp) if not o.startswith(("tracking.", "cache_dir="))]
    return [
        sys.executable,
        "-m",
        "pipeline",
        *SWEEP,
        *args,
        f"cache_dir={cache}",
        f"tracking.experiment={experiment}",
        "hydra.launcher.poll_s=1",
        *extra,
    ]


def _slurm_ids(out: str) -> list[str]:
    """The Slurm job of every job of the sweep, as the launcher printed them (submitit's ids)."""
    return [m.group(2) for m in sorted(re.finditer(r"\[slurm\] job (\d+)/\d+: Slurm job (\S+)", out), key=lambda m: int(m.group(1)))]


def _runs(cluster, experiment: str) -> list[dict]:
    """Every run of the experiment as PostgreSQL holds it: id, status, lifecycle and tags."""
    rows = cluster.sql(
        "SELECT r.run_uuid, r.status, r.lifecycle_stage, t.key, t.value FROM runs r "
        "JOIN experiments e ON e.experiment_id = r.experiment_id LEFT JOIN tags t ON t.run_uuid = r.run_uuid "
        "WHERE e.name = %s",
        (experiment,),
    )
    runs: dict[str, dict] = {}
    for run_id, status, stage, key, value in rows:
        run = runs.setdefault(run_id, {"run_id": run_id, "status": status, "stage": stage, "tags": {}})
        if key is not None:
            run["tags"][key] = value
    return list(runs.values())


def _count_once(cluster, experiment: str, records_dir: Path) -> tuple[dict, list[dict]]:
    """Every local record is one active run in PostgreSQL, none twice; returns (parent, children)."""
    runs = [r for r in _runs(cluster, experiment) if r["stage"] == "active"]
    per_record: dict[str, int] = {}
    for r in runs:
        per_record[r["tags"].get("record_id")] = per_record.get(r["tags"].get("record_id"), 0) + 1
    local = [r for _, r in records.iter_records(records_dir)]
    assert all(r.logged for r in local), [r.record_id for r in local if not r.logged]
    assert per_record == {r.record_id: 1 for r in local}, per_record  # each record once, no other run
    parents = [r for r in runs if r["tags"].get("sweep.role") == "parent"]
    assert len(parents) == 1, parents
    children = [r for r in runs if r["tags"].get("mlflow.parentRunId") == parents[0]["run_id"]]
    assert len(children) == len(runs) - 1  # every other run hangs under that parent
    return parents[0], children


def _sacct(cluster, array_id: str, timeout: float = 90) -> list[dict]:
    """Slurm's accounting once every job has its final state (a job writes its result a moment
    before Slurm records it as ended)."""
    deadline = time.time() + timeout
    while True:
        acct = cluster.sacct(array_id)
        if time.time() > deadline or not any(j["State"] in ("PENDING", "RUNNING", "COMPLETING", "REQUEUED") for j in acct):
            return acct
        time.sleep(1)


def _job_log(tmp: Path, slurm_id: str) -> str:
    logs = list(tmp.glob(f"multirun/*/*/.submitit/{slurm_id.split('_')[0]}*/{slurm_id}_0_log.out"))
    return logs[0].read_text() if logs else ""


def _run_sweep(cmd: list[str], cwd: Path, env: dict, timeout: float, on_line=None) -> tuple[int, str, float]:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if on_line is not None:
                on_line("".join(lines))
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, "".join(lines), time.perf_counter() - t0


def _counts(children: list[dict], **extra) -> dict:
    """What PostgreSQL holds for the sweep: its runs, and its jobs' runs by status."""
    out = {"runs": len(children) + 1, "parent": 1, "jobs": len(children)}
    for c in children:
        out[c["tags"]["status"]] = out.get(c["tags"]["status"], 0) + 1
    return {**out, **extra}


def _report(name: str, cmd: list[str], wall: float, sacct: list[dict], counts: dict) -> None:
    print(
        f"\n[{name}] {' '.join(cmd[2:])}\n[{name}] wall {wall:.0f} s; Slurm jobs: "
        + ", ".join(f"{j['JobID']}={j['State']}" for j in sacct)
        + f"; PostgreSQL: {counts}"
    )


def test_sweep_on_slurm_with_a_postgres_tracking_server(cluster, tiny_bert, tiny_sts_dir, tmp_path, cache):
    cmd = _args(tiny_bert, tiny_sts_dir, tmp_path, cache, "e2e")
    rc, out, wall = _run_sweep(cmd, tmp_path, _env(cluster), timeout=600)
    assert rc == 0, out[-4000:]
    ids = _slurm_ids(out)
    assert len(ids) == 4, out[-3000:]  # smoke: cpu,cuda x batch 1,8
    acct = _sacct(cluster, ids[0].split("_")[0])
    assert sorted(j["JobID"] for j in acct) == sorted(ids)  # Slurm ran exactly these jobs
    assert {j["State"] for j in acct} == {"COMPLETED"}, acct
    parent, children = _count_once(cluster, "e2e", tmp_path / "records")
    assert len(children) == 4
    assert sorted(c["tags"]["slurm.job_id"] for c in children) == sorted(ids)  # each job logged from its Slurm job
    status = sorted(c["tags"]["status"] for c in children)
    assert status == ["ok", "ok", "skipped", "skipped"], status  # this onnxruntime has no CUDA: skipped, said so
    assert parent["status"] == "FINISHED" and parent["tags"].get("record.complete") == "true"
    winner = parent["tags"].get("decision.winner_run_id")  # the decision, made from the server's runs
    assert winner in {c["run_id"] for c in children if c["tags"]["status"] == "ok"}, parent["tags"]
    assert list((tmp_path / "reports" / parent["run_id"]).glob("report.md"))
    _report("e2e", cmd, wall, acct, _counts(children))


def test_a_job_cancelled_mid_run_is_a_failed_job_and_the_rerun_measures_only_it(cluster, tiny_bert, tiny_sts_dir, tmp_path, cache):
    # long enough benchmarks that the job is still measuring when Slurm kills it (KillWait=5 s)
    # detection off: the rerun's reuse of job 2 must not hang on whether the test machine was busy
    # (a contended timing is never reused)
    cmd = _args(
        tiny_bert,
        tiny_sts_dir,
        tmp_path,
        cache,
        "scancel",
        "provider=cpu",
        "bench.iterations=1000000",
        "bench.max_seconds=8",
        "bench.contention.enabled=false",
    )
    cancelled: list[str] = []

    def cancel_job1_once_it_runs(out: str) -> None:
        ids = _slurm_ids(out)
        if cancelled or len(ids) < 2:
            return
        deadline = time.time() + 240
        while time.time() < deadline and "job 1/2" not in _job_log(tmp_path, ids[0]):
            time.sleep(0.5)  # until job 1 runs our code on the node
        subprocess.run(["scancel", ids[0]], env=_env(cluster), check=True)
        cancelled.append(ids[0])

    rc, out, wall = _run_sweep(cmd, tmp_path, _env(cluster), timeout=600, on_line=cancel_job1_once_it_runs)
    assert cancelled, out[-3000:]
    assert rc == 1, out[-4000:]  # a failed job
    ids = _slurm_ids(out)
    acct = {j["JobID"]: j for j in _sacct(cluster, ids[0].split("_")[0])}
    assert acct[ids[0]]["State"].startswith("CANCELLED"), acct  # what Slurm says happened
    assert acct[ids[1]]["State"] == "COMPLETED", acct
    parent, children = _count_once(cluster, "scancel", tmp_path / "records")
    by_job = {c["tags"]["sweep.job"]: c for c in children}
    assert sorted(by_job) == ["0", "1"] and len(children) == 2
    assert by_job["0"]["tags"]["status"] == "failed" and by_job["0"]["status"] == "FAILED"
    assert f"Slurm job {ids[0]} ended CANCELLED" in by_job["0"]["tags"]["reason"], by_job["0"]["tags"]
    assert by_job["1"]["tags"]["status"] == "ok"
    assert "1 failed" in out and "1 ok" in out
    _report("scancel", cmd, wall, list(acct.values()), _counts(children))

    # the same command again: job 1 is measured again, job 2 is already done
    ok_before = {r.record_id for _, r in records.iter_records(tmp_path / "records") if r.status == "ok"}
    rc, out2, wall2 = _run_sweep(cmd, tmp_path, _env(cluster), timeout=600)
    assert rc == 0, out2[-4000:]
    assert "1 ok, 1 already done" in out2, out2[-3000:]
    new_ok = [
        r for _, r in records.iter_records(tmp_path / "records") if r.status == "ok" and not r.is_parent and r.record_id not in ok_before
    ]
    assert [r.tags["sweep.job"] for r in new_ok] == ["0"]  # only the cancelled job was measured
    ids2 = _slurm_ids(out2)
    acct2 = _sacct(cluster, ids2[0].split("_")[0])
    assert {j["State"] for j in acct2} == {"COMPLETED"}, acct2
    parent2, children2 = _count_once(cluster, "scancel", tmp_path / "records")
    assert parent2["run_id"] == parent["run_id"]  # resumed: one parent for both runs of the sweep
    assert sorted((c["tags"]["sweep.job"], c["tags"]["status"]) for c in children2) == [("0", "failed"), ("0", "ok"), ("1", "ok")]
    _report("scancel-rerun", cmd, wall2, acct2, _counts(children2, measured_now=len(new_ok)))


def test_tracking_server_restarted_while_jobs_run(cluster, tiny_bert, tiny_sts_dir, tmp_path, cache):
    """The server is killed once job 1 runs and started again once job 1 has kept its record
    locally; the sweep's end logs it, `python -m pipeline.sync` then has nothing left to log."""
    cmd = _args(tiny_bert, tiny_sts_dir, tmp_path, cache, "restart", "provider=cpu", "bench.iterations=1000000", "bench.max_seconds=4")
    events: list[str] = []

    def restart_server_around_job1(out: str) -> None:
        ids = _slurm_ids(out)
        if events or len(ids) < 2:
            return
        deadline = time.time() + 240
        while time.time() < deadline and "job 1/2" not in _job_log(tmp_path, ids[0]):
            time.sleep(0.5)
        cluster.stop_daemon("mlflow", signal.SIGKILL)  # gone at once, as a crash
        events.append("killed")
        while time.time() < deadline and "kept locally" not in _job_log(tmp_path, ids[0]):
            time.sleep(0.5)  # job 1 ended without the server: its record waits on disk
        unlogged = [r for _, r in records.iter_records(tmp_path / "records") if not r.is_parent and not r.logged]
        events.append(f"unlogged:{len(unlogged)}")
        cluster.start_daemon("mlflow")  # the same PostgreSQL store comes back
        events.append("restarted")

    rc, out, wall = _run_sweep(cmd, tmp_path, _env(cluster), timeout=600, on_line=restart_server_around_job1)
    assert events == ["killed", "unlogged:1", "restarted"], (events, out[-3000:])
    assert rc == 0, out[-4000:]  # the sweep's end logged job 1's record (pipeline.tracking.sync.sync)
    ids = _slurm_ids(out)
    acct = _sacct(cluster, ids[0].split("_")[0])
    assert {j["State"] for j in acct} == {"COMPLETED"}, acct
    synced = subprocess.run(
        [sys.executable, "-m", "pipeline.sync", "--records-dir", str(tmp_path / "records")],
        cwd=tmp_path,
        env=_env(cluster),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert synced.returncode == 0, synced.stderr
    assert "0 logged, 0 not logged" in synced.stdout  # nothing left, nothing logged twice
    parent, children = _count_once(cluster, "restart", tmp_path / "records")
    assert sorted(c["tags"]["status"] for c in children) == ["ok", "ok"]
    assert parent["tags"].get("decision.winner_run_id")
    _report("restart", cmd, wall, acct, _counts(children, kept_locally_then_logged=int(events[1].split(":")[1])))


def test_slurmd_stopped_with_jobs_queued_ends_the_sweep(cluster, tiny_bert, tiny_sts_dir, tmp_path, cache):
    """No node to run on: the jobs wait (PENDING) and the sweep stops after stall_timeout_min."""
    cluster.stop_daemon("slurmd")
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not cluster.node_state().endswith("*"):
            time.sleep(2)  # slurmctld notices the node stopped answering (SlurmdTimeout=30 s)
        assert cluster.node_state().endswith("*"), cluster.node_state()
        cmd = _args(tiny_bert, tiny_sts_dir, tmp_path, cache, "slurmd", "provider=cpu", "hydra.launcher.stall_timeout_min=0.5")
        rc, out, wall = _run_sweep(cmd, tmp_path, _env(cluster), timeout=300)
    finally:
        cluster.start_daemon("slurmd")
    assert rc == 1, out[-4000:]
    assert wall < 30 + 60, wall  # the stall timeout, plus starting and ending the sweep
    ids = _slurm_ids(out)
    assert len(ids) == 2
    # Slurm's own pending reason, reported (ReqNodeNotAvail..., Nodes required for job are DOWN...)
    assert re.search(r"Slurm job \S+ was still PENDING \((?!squeue)[^)]*(Node|node)", out), out[-3000:]
    acct = _sacct(cluster, ids[0].split("_")[0])
    assert {j["State"] for j in acct} == {"CANCELLED by 0"}, acct
    parent, children = _count_once(cluster, "slurmd", tmp_path / "records")
    assert sorted(c["tags"]["status"] for c in children) == ["failed", "failed"]
    assert all("cancelled" in c["tags"]["reason"] and c["tags"]["slurm.job_id"] in ids for c in children)
    assert "2 failed" in out
    _report("slurmd", cmd, wall, acct, _counts(children))
