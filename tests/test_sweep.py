"""Sweeps end to end on the tiny model, through `python -m pipeline` in a subprocess.

Parent and child runs in MLflow, skipped providers, failure isolation, resume after SIGKILL,
rerun=true, the single-run path, and the sweep configs themselves.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import CONF_DIR, ROOT
from conftest import tiny_overrides as _tiny_overrides
from mlflow.tracking import MlflowClient

from pipeline.config import to_config
from pipeline.study.stages import compose_config
from pipeline.sweep import job_list, launcher_problem

SWEEPS = sorted(p.stem for p in (CONF_DIR / "sweep").glob("*.yaml"))
PROVIDERS = sorted(p.stem for p in (CONF_DIR / "provider").glob("*.yaml"))


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory) -> Path:
    """One export/parity/quality cache for the module: these tests are about the sweep, not the caches."""
    return tmp_path_factory.mktemp("sweep-cache")


def _env() -> dict:
    env = dict(os.environ)
    env.pop("PIPELINE_ENVS_DIR", None)  # the providers' environments under each test's own cache_dir
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def tiny_overrides(model_dir: Path, data_dir: Path, tmp: Path, cache: Path) -> list[str]:
    return [o if not o.startswith("cache_dir=") else f"cache_dir={cache}" for o in _tiny_overrides(model_dir, data_dir, tmp)]


def _pipeline(args: list[str], cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)


def _client(tmp: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{tmp}/mlflow.db")


def _runs(tmp: Path, filt: str = "") -> list:
    client = _client(tmp)
    exp = client.get_experiment_by_name("embedding-pipeline")
    return client.search_runs([exp.experiment_id], filter_string=filt, max_results=1000) if exp else []


def _parents(tmp: Path) -> list:
    return _runs(tmp, "tags.`sweep.role` = 'parent'")


def _children(tmp: Path, parent_id: str) -> list:
    return _runs(tmp, f"tags.`mlflow.parentRunId` = '{parent_id}'")


@pytest.mark.parametrize("name", SWEEPS)
def test_every_sweep_config_is_a_multirun_of_valid_jobs(name):
    cfg = compose_config([f"+sweep={name}"], hydra_config=True)
    assert str(cfg.hydra.mode) == "RunMode.MULTIRUN"
    jobs = job_list(cfg)
    assert len(jobs) >= 1
    for job in jobs:  # every point of the sweep composes into a valid typed config
        assert f"+sweep={name}" in job
        to_config(compose_config(job))


def test_sweep_configs_cover_the_asked_dimensions():
    assert {"models", "providers", "pooling", "batch", "threads", "smoke"} <= set(SWEEPS)
    batch = job_list(compose_config(["+sweep=batch"], hydra_config=True))
    assert [job[0] for job in batch] == [f"bench.batch_size={b}" for b in (1, 8, 32, 128)]
    providers = job_list(compose_config(["+sweep=providers"], hydra_config=True))
    assert sorted(job[0].split("=")[1] for job in providers) == PROVIDERS


def test_a_parallel_launcher_is_refused_with_the_reason():
    assert launcher_problem("hydra._internal.core_plugins.basic_launcher.BasicLauncher") is None
    reason = launcher_problem("hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher")
    assert reason and "parallel" in reason and "basic launcher" in reason


def test_providers_sweep_runs_cpu_and_skips_missing_providers(tiny_bert, tiny_sts_dir, tmp_path, shared_cache):
    # offline on purpose (pip --no-index): the providers with their own builds are skipped with pip's
    # reason; the real builds run in tests/test_provider_builds.py
    proc = _pipeline(
        ["+sweep=providers", *tiny_overrides(tiny_bert, tiny_sts_dir, tmp_path, shared_cache), "provider.pip_args=['--no-index']"], tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    parents = _parents(tmp_path)
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.params["sweep"] == "providers"
    names = parent.data.params["sweep.provider"].split(",")
    assert names[:4] == ["cpu", "cpu_nospin", "openvino", "openvino_bf16"] and sorted(names) == PROVIDERS
    children = {r.data.params["provider"]: r for r in _children(tmp_path, parent.info.run_id)}
    assert sorted(children) == PROVIDERS
    cpu = children["cpu"]
    assert cpu.data.tags["status"] == "ok"
    assert cpu.data.metrics["provider.node_share"] == 1.0
    assert cpu.data.metrics["provider.nodes_total"] > 0
    assert cpu.data.tags["fallback"] == "false"
    assert cpu.data.tags["runtime.env"] == "main" and cpu.data.tags["runtime.onnxruntime"]
    assert "usability.coreml_supported_share" in cpu.data.metrics
    assert cpu.data.tags["config_hash"]
    assert children["cpu_nospin"].data.tags["status"] == "ok"
    artifacts = {a.path for a in _client(tmp_path).list_artifacts(cpu.info.run_id)}
    assert {"placement.json", "usability.txt"} <= artifacts
    for name, run in children.items():
        p = to_config(compose_config([f"provider={name}"])).provider
        if not p.packages and not p.platforms:
            continue
        assert run.data.tags["status"] == "skipped", name
        reason = run.data.tags["reason"]
        assert p.ep in reason, (name, reason)
        if p.platforms:
            assert "builds are for" in reason, (name, reason)
        elif p.hardware:
            assert "no NVIDIA GPU" in reason or "could not be made" in reason, (name, reason)
        else:
            assert "its environment could not be made" in reason and "pip install" in reason, (name, reason)
        assert "latency.p50_ms" not in run.data.metrics  # nothing was measured in its place
    # progress lines and the summary table
    n = len(PROVIDERS)
    assert "job 1/" in proc.stdout and f"job {n}/{n}" in proc.stdout and "left" in proc.stdout
    assert "summary:" in proc.stdout and "skipped" in proc.stdout
    # the decision matrix ran at the sweep's end: logged on the parent, written under reports/
    parent = _client(tmp_path).get_run(parent.info.run_id)
    ok_ids = {r.info.run_id for r in children.values() if r.data.tags["status"] == "ok"}
    assert ok_ids == {cpu.info.run_id, children["cpu_nospin"].info.run_id}
    assert parent.data.tags["decision.winner_run_id"] in ok_ids
    assert parent.data.tags["decision.verdict"] in ("go", "close", "no-go")
    assert (tmp_path / "reports" / parent.info.run_id / "report.md").is_file()
    logged = {a.path for a in _client(tmp_path).list_artifacts(parent.info.run_id, "decision")}
    assert "decision/ranking.csv" in logged and "decision/report.md" in logged


def test_a_failing_job_is_logged_and_the_sweep_goes_on(tiny_bert, tiny_sts_dir, tmp_path, shared_cache):
    bad = tmp_path / "bad-model"
    shutil.copytree(tiny_bert, bad)
    data = (bad / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[: len(data) // 3])  # corrupted weights
    args = tiny_overrides(tiny_bert, tiny_sts_dir, tmp_path, shared_cache)
    # jobs: (bad, wrong sha) (bad, unpinned) (good, wrong sha) (good, unpinned)
    proc = _pipeline(["-m", *args, f"model.path={bad},{tiny_bert}", f"model.sha256={'0' * 64},null"], tmp_path)
    assert proc.returncode == 1, proc.stdout[-2000:]  # a job failed: the command says so at the end
    parent = _parents(tmp_path)[0]
    assert parent.info.status == "FAILED"
    children = {r.data.tags["sweep.job"]: r for r in _children(tmp_path, parent.info.run_id)}
    assert sorted(children) == ["0", "1", "2", "3"]
    client = _client(tmp_path)
    for num in ("0", "1", "2"):
        run = children[num]
        assert run.data.tags["status"] == "failed" and run.data.tags["reason"], num
        assert "traceback.txt" in {a.path for a in client.list_artifacts(run.info.run_id)}, num
    assert "ChecksumMismatch" in children["0"].data.tags["reason"]  # refused before any work
    assert "ChecksumMismatch" not in children["1"].data.tags["reason"]  # the export of corrupted weights failed
    ok = children["3"]  # the last job still ran
    assert ok.data.tags["status"] == "ok"
    assert "latency.p50_ms" in ok.data.metrics
    assert "3 failed" in proc.stdout


def test_killed_sweep_rerun_does_only_the_missing_jobs(tiny_bert, tiny_sts_dir, tmp_path, shared_cache):
    # detection off: what is resumed must not hang on whether the test machine was busy (a
    # contended timing is never reused: test_a_resumed_sweep_measures_again_what_another_machine_timed)
    args = [
        "-m",
        *tiny_overrides(tiny_bert, tiny_sts_dir, tmp_path, shared_cache),
        "bench.batch_size=1,2,3,4",
        "bench.contention.enabled=false",
    ]
    log = tmp_path / "killed.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline", *args],
            cwd=tmp_path,
            env=_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    done_before: list = []
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            # read the store only once the sweep has created it (two processes must not both create it)
            if "job 1/4" in log.read_text():
                done_before = _runs(tmp_path, "tags.status = 'ok' and attributes.status = 'FINISHED'")
                if done_before:
                    break
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its benchmark subprocess
        proc.wait()
    assert done_before, "no job finished before the deadline:\n" + log.read_text()[-3000:]
    finished_ids = {r.info.run_id for r in _runs(tmp_path, "tags.status = 'ok' and attributes.status = 'FINISHED'")}
    assert 1 <= len(finished_ids) < 4, "the sweep was not killed part-way"
    parent_before = _parents(tmp_path)
    assert len(parent_before) == 1 and parent_before[0].info.status == "RUNNING"

    rerun = _pipeline(args, tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert rerun.stdout.count("already done: run") == len(finished_ids)
    parents = _parents(tmp_path)
    assert len(parents) == 1 and parents[0].info.run_id == parent_before[0].info.run_id  # resumed
    assert parents[0].info.status == "FINISHED"
    ok = _runs(tmp_path, "tags.status = 'ok' and attributes.status = 'FINISHED'")
    assert sorted(r.data.params["bench.batch_size"] for r in ok) == ["1", "2", "3", "4"]  # each exactly once
    assert finished_ids <= {r.info.run_id for r in ok}  # nothing already logged was lost or redone
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in ok)


def test_single_run_stays_plain_and_rerun_forces_a_job(tiny_bert, tiny_sts_dir, tmp_path, shared_cache):
    args = tiny_overrides(tiny_bert, tiny_sts_dir, tmp_path, shared_cache)
    single = _pipeline(args, tmp_path)
    assert single.returncode == 0, single.stderr[-3000:]
    (run,) = _runs(tmp_path)
    assert "mlflow.parentRunId" not in run.data.tags and not _parents(tmp_path)
    assert run.data.tags["status"] == "ok" and run.data.tags["config_hash"]

    # a one-job sweep of the same configuration would find it done; rerun=true measures it again
    forced = _pipeline(["-m", *args, "rerun=true"], tmp_path)
    assert forced.returncode == 0, forced.stderr[-3000:]
    ok = _runs(tmp_path, "tags.status = 'ok'")
    assert len(ok) == 2 and len({r.data.tags["config_hash"] for r in ok}) == 1
    assert "already done" not in forced.stdout.split("summary:")[0]


def test_a_rerun_sweep_decides_over_jobs_done_before(tiny_bert, tiny_sts_dir, tmp_path, shared_cache):
    """A sweep whose jobs were all done earlier still ranks them (from the parent's jobs.json)."""
    args = [
        "-m",
        "bench.batch_size=1,2",
        *tiny_overrides(tiny_bert, tiny_sts_dir, tmp_path, shared_cache),
        "bench.contention.enabled=false",
    ]  # reused whether or not the test machine was busy
    assert _pipeline(args, tmp_path).returncode == 0
    again = _pipeline([*args, "decision=latency_first"], tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("already done: run") == 2
    parents = sorted(_parents(tmp_path), key=lambda r: r.info.start_time)
    assert len(parents) == 2
    second = _client(tmp_path).get_run(parents[1].info.run_id)
    first_children = {r.info.run_id for r in _children(tmp_path, parents[0].info.run_id)}
    # the second parent's tree shows every job it decided on, as references: nothing measured twice
    refs = _children(tmp_path, second.info.run_id)
    assert {r.data.tags.get("sweep.reused_run") for r in refs} == first_children
    assert all(r.info.run_name.startswith("reused: ") and r.data.tags["status"] == "done" for r in refs)
    assert all(
        r.data.metrics["latency.p95_ms"] == _client(tmp_path).get_run(r.data.tags["sweep.reused_run"]).data.metrics["latency.p95_ms"]
        for r in refs
    )
    assert _runs(tmp_path, "tags.status = 'ok'") and len(_runs(tmp_path, "tags.status = 'ok'")) == 2
    assert second.data.tags["decision.winner_run_id"] in first_children  # the decision reads the runs themselves


@pytest.mark.real_model
def test_smoke_sweep_on_the_real_model(tmp_path):
    """`python -m pipeline +sweep=smoke`: real jobs on all-MiniLM-L6-v2, within 3 minutes."""
    store = [f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", f"tracking.artifact_location={tmp_path}/artifacts"]
    cache = f"cache_dir={ROOT / '.cache' / 'pipeline'}"  # the checkout's own cache, as a user's run would use
    t0 = time.perf_counter()
    proc = _pipeline(["+sweep=smoke", *store, cache], tmp_path, timeout=300)
    wall = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert wall < 180, f"smoke sweep took {wall:.0f} s"
    (parent,) = _parents(tmp_path)
    children = _children(tmp_path, parent.info.run_id)
    assert len(children) == 4
    ok = [r for r in children if r.data.tags["status"] == "ok"]
    assert {r.data.params["provider"] for r in ok} >= {"cpu"}
    for r in ok:
        assert r.data.params["model"] == "all-MiniLM-L6-v2"
        assert r.data.metrics["parity.min_cosine"] > 0.999
        assert r.data.metrics["quality.stsb_spearman"] > 75  # the real model, not a random one
        assert r.data.metrics["usability.coreml_oversize_dims"] >= 1  # the 30,522-row embedding table


def test_a_resumed_sweep_measures_again_what_another_machine_or_a_busy_one_timed(tiny_bert, tiny_sts_dir, tmp_path, shared_cache):
    """A store shared between machines: a timing taken on another machine (another fingerprint), or
    a contended one, is not reused; it is measured again here (the export and quality come from the cache)."""
    from pipeline.tracking import records

    args = [
        "-m",
        "bench.batch_size=1,2",
        *tiny_overrides(tiny_bert, tiny_sts_dir, tmp_path, shared_cache),
        "bench.contention.enabled=false",
    ]
    assert _pipeline(args, tmp_path).returncode == 0
    first = {r.info.run_id: r for r in _runs(tmp_path, "tags.status = 'ok'")}
    assert len(first) == 2 and all(r.data.tags["machine.fingerprint"] for r in first.values())
    client = _client(tmp_path)
    (b1,) = [r for r in first.values() if r.data.params["bench.batch_size"] == "1"]
    (b2,) = [r for r in first.values() if r.data.params["bench.batch_size"] == "2"]
    client.set_tag(b1.info.run_id, "machine.fingerprint", "0123456789ab")  # as if a Xeon elsewhere had timed it
    client.set_tag(b2.info.run_id, "bench.contended", "CPU pressure 40% (limit 5%)")  # timed on a busy machine
    for folder, rec in records.iter_records(tmp_path / "records"):
        if rec.mlflow_run_id == b1.info.run_id:
            rec.tags["machine.fingerprint"] = "0123456789ab"
        elif rec.mlflow_run_id == b2.info.run_id:
            rec.tags["bench.contended"] = "CPU pressure 40% (limit 5%)"
        records.write(folder, rec)
    again = _pipeline(args, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "already done: " not in again.stdout
    new = [r for r in _runs(tmp_path, "tags.status = 'ok'") if r.info.run_id not in first]
    assert sorted(r.data.params["bench.batch_size"] for r in new) == ["1", "2"]  # both measured again
    assert all(r.data.tags["quality.cached"] == "true" for r in new)  # what does not depend on the machine is reused


def test_the_leaders_are_retimed_in_alternation_and_the_decision_uses_it(tiny_bert, tiny_sts_dir, tmp_path, shared_cache):
    args = [
        "-m",
        "pooling=mean,cls,max",
        *tiny_overrides(tiny_bert, tiny_sts_dir, tmp_path, shared_cache),
        "decision.retime.rounds=2",
        "decision.retime.top_k=2",
        "decision.retime.max_seconds=0.3",
        # the mechanics of re-timing, whatever the load: a contended leader is never re-timed
        "bench.contention.enabled=false",
    ]
    proc = _pipeline(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[retime] the 2 leading configurations, 2 rounds in alternation" in proc.stdout
    (parent,) = _parents(tmp_path)
    client = _client(tmp_path)
    path = client.download_artifacts(parent.info.run_id, "retime.json", str(tmp_path / "dl"))
    payload = json.loads(Path(path).read_text())
    rounds = payload["rounds"]
    assert len(rounds) == 4 and {r["round"] for r in rounds} == {0, 1}
    # rotated order: the second round starts with the first round's second configuration
    assert rounds[2]["record_id"] == rounds[1]["record_id"] and rounds[0]["record_id"] != rounds[2]["record_id"]
    assert all("latency.p95_ms" in r["metrics"] for r in rounds)
    between = tmp_path / "reports" / parent.info.run_id / "robustness_between_runs.csv"
    table = pd.read_csv(between)
    quiet = [r for r in rounds if not r["contended"]]
    if quiet:  # a busy machine may leave every round out; then there is nothing to fold in
        assert set(table["metric"]) >= {"latency.p95_ms", "throughput.sentences_per_s"}
    report = (tmp_path / "reports" / parent.info.run_id / "report.md").read_text()
    assert "Noise between runs" in report and "Measurement conditions" in report


def test_a_refused_job_beside_an_ok_one_still_gets_a_decision(tiny_bert, tiny_sts_dir, tmp_path, shared_cache):
    """`-m bench.batch_size=1,0` ended with `no decision: MLflow failed (KeyError: nan)`."""
    proc = _pipeline(["-m", "bench.batch_size=1,0", *tiny_overrides(tiny_bert, tiny_sts_dir, tmp_path, shared_cache)], tmp_path)
    assert proc.returncode == 1  # a job failed
    assert "no decision" not in proc.stdout, proc.stdout[-2000:]
    (parent,) = _parents(tmp_path)
    assert _client(tmp_path).get_run(parent.info.run_id).data.tags["decision.winner"].endswith("/b1")
