"""Issue 28: nothing lost, nothing leaked, nothing false, round three.  One test (or more) per
numbered break of the issue (13-16 belong to the server's tests); each failed on the code before
the fix.  The number of the break is in each test's comment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT

from pipeline.core import cache, ownership
from pipeline.measure import bench
from pipeline.tracking import records


def _env(**extra) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def _marked(folder: Path, host: str, pid: int, start: float) -> Path:
    folder.mkdir(parents=True)
    (folder / ownership.MARKER).write_text(json.dumps({"host": host, "pid": pid, "start": start}))
    return folder


# -- 1. a normal job deletes a user's folders in the temp directory --------------------------------
def test_bench_cleanup_leaves_a_users_bench_folder_alone(tmp_path):
    user = tmp_path / "bench-2025-12-01"
    user.mkdir()
    (user / "r.csv").write_text("d")
    ours = _marked(tmp_path / "bench-123-abc", ownership.host(), os.getpid(), 1.0)  # the pid was reused: ours, gone
    removed = bench.clean_stale_temps(tmp_path)
    assert (user / "r.csv").read_text() == "d"
    assert removed == [ours] and not ours.exists()


# -- 3. a shared cache or records folder: another host's temporaries are never removed by pid -------
def test_another_hosts_export_in_progress_is_not_removed(tmp_path):
    other = _marked(tmp_path / ".tmp-model-fp32-abc-27412", "another-host", 27412, time.time())
    (other / "tokenizer.json").write_text("{}")
    dead_here = _marked(tmp_path / ".tmp-model-fp32-def-1", ownership.host(), os.getpid(), 1.0)
    cache.clean_stale(tmp_path)
    records.clean_stale(tmp_path)
    assert (other / "tokenizer.json").exists()
    assert not dead_here.exists()


def test_another_hosts_temporary_file_is_not_removed(tmp_path):
    name = ownership.temp_file(tmp_path / "record.json").name
    mine_dead = tmp_path / name.replace(f".{os.getpid()}-", ".1-")  # pid 1 never started at our start time
    mine_dead.write_text("half")
    theirs = tmp_path / name.replace(f"-{ownership._slug(ownership.host())}.tmp", "-another_host.tmp")
    theirs.write_text("half")
    legacy = tmp_path / ".record.json.27412.tmp"  # no host in its name: cannot be proven ours
    legacy.write_text("half")
    cache.clean_stale(tmp_path)
    assert not mine_dead.exists() and theirs.exists() and legacy.exists()


def test_a_records_save_leaves_no_marker_and_no_temporary(tmp_path):
    rec = records.RunRecord.new("r", {}, {})
    records.save(tmp_path / rec.record_id, rec)
    assert sorted(p.name for p in (tmp_path / rec.record_id).iterdir()) == [records.RECORD]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]


def test_a_live_process_of_this_host_keeps_its_folder(tmp_path):
    live = _marked(tmp_path / "bench-x", ownership.host(), os.getpid(), ownership.process_identity()["start"])
    assert bench.clean_stale_temps(tmp_path) == [] and live.exists()


# -- 6. NaN is a failed measurement, not a missing one ------------------------------------------------
def test_a_nan_metric_fails_a_gate_that_passes_a_missing_one():
    from pipeline.config.decision import HardGateConfig
    from pipeline.decision import gates
    from pipeline.decision.inputs import run_row, runs_frame

    gate = HardGateConfig(metric="quality.stsb_delta_vs_fp32", op=">=", value=-1.0, if_missing="pass")
    rows = [
        run_row(run_id=name, status="ok", params={"model": "m", "variant": name}, metrics=metrics)
        for name, metrics in (
            ("int8", {"quality.stsb_delta_vs_fp32": float("nan")}),
            ("honest", {"quality.stsb_delta_vs_fp32": -1.5}),
            ("fp32", {}),
        )
    ]
    result = gates.hard(runs_frame(rows), [gate])
    verdict = dict(zip(runs_frame(rows)["run_id"], result.columns[f"gate.{gate.name}"]))
    assert verdict == {"int8": "fail", "honest": "fail", "fp32": "pass"}


# -- 5. the machine-wide benchmark lock does not follow $TMPDIR -----------------------------------------
def test_the_machine_lock_is_one_path_whatever_the_temp_folder(tmp_path):
    script = "from pipeline.core.machine_lock import machine_lock_path; print(machine_lock_path())"
    env = {k: v for k, v in _env().items() if k != "PIPELINE_MACHINE_LOCK"}
    seen = set()
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        out = subprocess.run(
            [sys.executable, "-c", script], env={**env, "TMPDIR": str(tmp_path / sub)}, capture_output=True, text=True, check=True
        ).stdout.strip()
        seen.add(out)
    assert len(seen) == 1 and not seen.pop().startswith(str(tmp_path))


# -- 7. left padding on a graph that numbers positions itself -------------------------------------------
@pytest.fixture(scope="module")
def onnx_dir(tiny_bert, tmp_path_factory):
    from pipeline.config import ModelConfig, VariantConfig
    from pipeline.model.export import export
    from pipeline.model.sources import resolve

    cfg = ModelConfig(name="tiny-bert", source="local", path=str(tiny_bert), max_length=64, sha256=None)
    return export(resolve(cfg), cfg, VariantConfig(), tmp_path_factory.mktemp("cache")).folder


def test_left_padding_is_refused_on_a_graph_without_position_ids(onnx_dir):
    from pipeline.embedder.embed import Embedder

    with pytest.raises(ValueError, match="position_ids"):
        Embedder(onnx_dir, padding_side="left")
    right = Embedder(onnx_dir, padding_side="right")  # the default still works, batch-independent
    alone = right.embed(["a dog runs"])[0]
    batched = right.embed(["a dog runs", "two cats are playing with a red ball on the big field"])[0]
    assert float(alone @ batched / (np.linalg.norm(alone) * np.linalg.norm(batched))) > 0.999


# -- 10. a token in the query string of a URI ---------------------------------------------------------
TOKEN = "tk-9f8e7d6c5b"


@pytest.mark.parametrize(
    "text",
    [
        f"http://host:5000/?token={TOKEN}",
        f"postgresql://mlflow@127.0.0.1:5432/mlflow?sslmode=disable&password={TOKEN}",
        f"tracking.uri=http\\:\\/\\/host\\:5000\\/?token\\={TOKEN}",  # as Hydra escapes an override
        f"http%3A%2F%2Fhost%2F%3Faccess_token%3D{TOKEN}%26a%3D1",
        f"MLflow (http://host/?api_key={TOKEN}) did not take this run",
    ],
)
def test_redact_masks_secret_query_parameters(text):
    from pipeline.core.redaction import redact

    out = redact(text)
    assert TOKEN not in out and "***" in out


def test_the_sync_command_carries_no_query_token(tmp_path):
    from pipeline.tracking import sync

    line = sync.command(tmp_path, f"http://host:5000/?token={TOKEN}")
    assert TOKEN not in line and "token=***" in line


def test_redact_leaves_harmless_query_parameters():
    from pipeline.core.redaction import redact

    assert redact("http://host/?experiment=7&page=2") == "http://host/?experiment=7&page=2"


# -- 11. secret-looking environment names ---------------------------------------------------------------
@pytest.mark.parametrize("name", ["DB_PASS", "OPENAI_KEY", "HF_HUB_KEY", "PRIVATE_KEY", "SLACK_WEBHOOK_URL", "GITHUB_TOKEN"])
def test_redact_masks_the_values_of_secret_looking_names(name, monkeypatch):
    from pipeline.core.redaction import redact

    monkeypatch.setenv(name, "v4lue-0f-" + name.lower())
    assert redact(f"failed with v4lue-0f-{name.lower()} in it") == "failed with *** in it"


def test_redact_leaves_the_current_folder_alone(monkeypatch, tmp_path):
    from pipeline.core.redaction import redact

    monkeypatch.setenv("PWD", str(tmp_path))
    assert redact(f"wrote {tmp_path}/x") == f"wrote {tmp_path}/x"


# -- 8. the notebook prints no credentials ---------------------------------------------------------------
def test_the_notebooks_setup_cell_prints_no_credentials(tmp_path):
    sys.path.insert(0, str(ROOT / "notebooks"))
    try:
        import make_notebooks
    finally:
        sys.path.remove(str(ROOT / "notebooks"))
    # a stand-in for mlflow: the setup cell's own output is what is checked, not a store
    (tmp_path / "mlflow.py").write_text(
        "import types\n"
        "def set_tracking_uri(uri): pass\n"
        "def get_run(run_id):\n"
        "    return types.SimpleNamespace(data=types.SimpleNamespace(tags={'sweep.name': 's'}, params={}),\n"
        "                                 info=types.SimpleNamespace(start_time=0, run_name='s'))\n"
    )
    pw = "s3cr3t-pa55w0rd"
    env = _env(
        PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]), PARENT_RUN_ID="r1", MLFLOW_TRACKING_URI=f"http://alice:{pw}@127.0.0.1:5000"
    )
    proc = subprocess.run([sys.executable, "-c", make_notebooks.SETUP], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "tracking store: http://***@127.0.0.1:5000" in proc.stdout and pw not in proc.stdout


# -- 12. provider package lists are package specs --------------------------------------------------------
@pytest.mark.parametrize(
    "packages",
    [
        ["-r", "/etc/secrets.txt"],
        ["--index-url=http://x/simple", "onnxruntime"],
        ["/tmp/wheels/onnxruntime_gpu-1.20.0-cp311-cp311-linux_x86_64.whl"],
        ["https://example.org/onnxruntime-1.0.tar.gz"],
        ["ort @ file:///tmp/ort.whl"],
    ],
)
def test_provider_packages_refuse_pip_options_paths_and_urls(packages, tmp_path):
    from pipeline.config import ConfigError
    from pipeline.config.job import ProviderConfig

    secret = tmp_path / "req.txt"
    secret.write_text("db_password=hunter2\n")
    with pytest.raises(ConfigError, match="provider.packages") as err:
        ProviderConfig(packages=[p.replace("/etc/secrets.txt", str(secret)) for p in packages])
    assert "hunter2" not in str(err.value)


def test_provider_packages_take_specs_and_explicitly_allowed_wheels():
    from pipeline.config.job import ProviderConfig

    ProviderConfig(packages=["onnxruntime-openvino>=1.20; sys_platform == 'linux'", "numpy<2", "tokenizers[x]"])
    ProviderConfig(packages=["/tmp/wheels/ort-1.20.0-py3-none-any.whl"], allow_local_packages=True)


# -- 20. a local wheel's environment stays inside cache_dir/envs -----------------------------------------
def test_a_local_wheels_environment_is_made_inside_the_envs_folder(tmp_path):
    from pipeline.runtime import envs
    from pipeline.runtime.providers import env_name

    wheel_dir = tmp_path / "wheels"
    wheel_dir.mkdir()
    wheel = wheel_dir / "ort_fake-1.0-py3-none-any.whl"
    name = env_name([str(wheel)])
    assert name == "ort_fake"
    env = envs.ensure([], tmp_path / "envs", name=name)  # no package: a bare environment, no pip
    assert env.path.parent == tmp_path / "envs" and not list(wheel_dir.iterdir())


# -- 2. cluster stop signals only the processes the cluster started --------------------------------------
def _own_session_sleeper() -> subprocess.Popen:
    return subprocess.Popen(["sleep", "60"], start_new_session=True)


def test_cluster_stop_does_not_signal_a_process_that_reuses_a_daemons_pid(tmp_path):
    from pipeline.cluster.local import LocalCluster

    stranger = _own_session_sleeper()  # the pid cluster.json names now belongs to someone else
    try:
        ident = ownership.process_identity(stranger.pid)
        (tmp_path / "cluster.json").write_text(
            json.dumps(
                {
                    "pids": {"slurmd": stranger.pid, "mlflow": stranger.pid},
                    "identity": {"slurmd": {**ident, "start": ident["start"] - 3600}},  # started an hour before: not it
                }
            )
        )
        LocalCluster(tmp_path).stop()
        time.sleep(0.3)
        assert stranger.poll() is None, "cluster stop killed an unrelated process"
        assert json.loads((tmp_path / "cluster.json").read_text())["pids"] == {}
    finally:
        stranger.kill()
        stranger.wait()


def test_cluster_stop_still_stops_its_own_daemon(tmp_path):
    from pipeline.cluster.local import LocalCluster

    daemon = _own_session_sleeper()
    try:
        (tmp_path / "cluster.json").write_text(
            json.dumps({"pids": {"slurmd": daemon.pid}, "identity": {"slurmd": ownership.process_identity(daemon.pid)}})
        )
        LocalCluster(tmp_path).stop()
        assert daemon.wait(10) is not None
    finally:
        if daemon.poll() is None:
            daemon.kill()


# -- 9. the database password is not on the MLflow server's command line ---------------------------------
def test_the_tracking_servers_store_uri_carries_no_password(tmp_path):
    from pipeline.cluster.local import LocalCluster

    c = LocalCluster(tmp_path)
    c.state = {"ports": {"postgres": 5432}, "pg_password": "0123456789abcdef"}
    assert "0123456789abcdef" not in c.db_uri and c.db_env() == {"PGPASSWORD": "0123456789abcdef"}


# -- 18. a damaged records index --------------------------------------------------------------------------
def _record(tmp_path: Path, key: str = "k1") -> records.RunRecord:
    rec = records.RunRecord.new("r", {}, {"config_hash": key})
    records.save(tmp_path / rec.record_id, rec)
    return rec


@pytest.mark.parametrize("damage", ["index_is_a_file", "tag_is_a_file"])
def test_a_damaged_index_neither_fails_a_save_nor_a_lookup(tmp_path, damage):
    first = _record(tmp_path)
    index = tmp_path / records.INDEX
    if damage == "index_is_a_file":
        import shutil

        shutil.rmtree(index)
        index.write_text("garbage")
    else:
        import shutil

        shutil.rmtree(index / "config_hash")
        (index / "config_hash").write_text("garbage")
    second = _record(tmp_path)  # no RecordError: the record is written, the index is rebuilt later
    assert (tmp_path / second.record_id / records.RECORD).is_file()
    found = [r.record_id for _, r in records.find(tmp_path, "config_hash", "k1")]
    assert sorted(found) == sorted([first.record_id, second.record_id])


# -- 19. a record copied in from another records folder -----------------------------------------------------
def test_a_record_copied_in_from_elsewhere_is_found(tmp_path):
    import shutil

    here, there = tmp_path / "here", tmp_path / "there"
    mine = _record(here)
    assert [r.record_id for _, r in records.find(here, "config_hash", "k1")] == [mine.record_id]  # index complete
    theirs = _record(there)
    shutil.copytree(there / theirs.record_id, here / theirs.record_id)
    found = [r.record_id for _, r in records.find(here, "config_hash", "k1")]
    assert sorted(found) == sorted([mine.record_id, theirs.record_id])


# -- 22. decide against a server that cannot be reached ---------------------------------------------------
@pytest.mark.parametrize("parent", [["--parent", "abc123"], []])
def test_decide_says_the_server_cannot_be_reached(parent, capsys):
    from pipeline.decision.cli import main

    rc = main(["--tracking-uri", "http://127.0.0.1:9", "--no-log", *parent])
    err = capsys.readouterr().err
    assert rc == 1 and "cannot be reached" in err and "no run" not in err and "Traceback" not in err


# -- 21. a provider environment without numpy -------------------------------------------------------------
def test_a_provider_environment_without_numpy_is_unavailable_in_one_line(tmp_path):
    from test_envs import make_wheel

    from pipeline.config.job import ProviderConfig
    from pipeline.runtime import providers

    wheels = tmp_path / "wheels"
    make_wheel(wheels, "tinyort", "0.3")
    p = ProviderConfig(
        name="bare", ep="CPUExecutionProvider", packages=["tinyort==0.3"], pip_args=["--no-index", "--find-links", str(wheels)]
    )
    with pytest.raises(providers.Unavailable) as err:
        providers.runtime(p, tmp_path / "cache")
    assert "has no numpy, onnxruntime, tokenizers" in str(err.value) and "Traceback" not in str(err.value)


# -- 17. pip dies with the pipeline that started it ---------------------------------------------------------
def _children(pid: int) -> list[int]:
    import psutil

    try:
        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def test_pip_does_not_outlive_a_killed_pipeline(tmp_path):
    import signal
    import socket

    import psutil

    silent = socket.socket()  # an index that accepts connections and never answers: pip waits on it
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    port = silent.getsockname()[1]
    script = (
        f"from pipeline.runtime import envs; envs.ensure(['tinypkg'], {str(tmp_path / 'envs')!r}, name='t', "
        f"pip_args=['--index-url', 'http://127.0.0.1:{port}/simple', '--timeout', '120', '--retries', '0'])"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], env=_env())
    try:
        pip = None
        deadline = time.time() + 120
        while pip is None and time.time() < deadline and parent.poll() is None:
            for pid in _children(parent.pid):
                try:
                    if "pip" in psutil.Process(pid).cmdline():
                        pip = psutil.Process(pid)
                except psutil.NoSuchProcess:
                    pass
            time.sleep(0.2)
        assert pip is not None, "pip did not start"
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        gone, alive = psutil.wait_procs([pip], timeout=10)
        assert not alive, "pip outlived the pipeline that started it"
    finally:
        if parent.poll() is None:
            parent.kill()
        silent.close()


# -- 4. dvc repro killed, then run again ----------------------------------------------------------------------
def test_the_decide_stage_refuses_records_another_run_wrote(tmp_path, monkeypatch):
    from pipeline.study import stages

    monkeypatch.chdir(tmp_path)
    stages.RUNS.mkdir(parents=True)
    (stages.RUNS / stages.STAGE_RUN).write_text("this-run")
    for run in ("this-run", "this-run", "killed-run"):  # the last: an orphan of the killed run wrote it
        rec = records.RunRecord.new("j", {"model": "m"}, {"stage.run": run})
        rec.status = "ok"
        records.save(stages.RUNS / rec.record_id, rec)
    with pytest.raises(stages.StageError, match="1 record\\(s\\) .* not written by the sweep stage's last run"):
        stages.decide_stage({"sweep": "smoke", "decision": "default"})


def test_records_carry_the_stage_run_that_started_them(monkeypatch):
    monkeypatch.setenv("PIPELINE_STAGE_RUN", "run-42")
    assert records.RunRecord.new("j", {}, {}).tags["stage.run"] == "run-42"


def test_the_sweep_dies_with_a_killed_sweep_stage(tmp_path):
    import signal

    import psutil

    fake = tmp_path / "python"  # stands for the sweep: a process that would run on for a minute
    fake.write_text("#!/bin/sh\nexec sleep 60\n")
    fake.chmod(0o755)
    study = {"sweep": "smoke", "decision": "default", "bench": {}, "overrides": []}
    script = f"import sys; from pipeline.study import stages; stages.sys.executable = {str(fake)!r}; stages.sweep_stage({study!r})"
    stage = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, env=_env(MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path}/m.db"))
    try:
        sweep = None
        deadline = time.time() + 120
        while sweep is None and time.time() < deadline and stage.poll() is None:
            kids = [psutil.Process(p) for p in _children(stage.pid)]
            sweep = next((k for k in kids if "sleep" in " ".join(k.cmdline())), None)
            time.sleep(0.2)
        assert sweep is not None, "the stage did not start its sweep"
        stage.send_signal(signal.SIGKILL)
        stage.wait()
        gone, alive = psutil.wait_procs([sweep], timeout=10)
        assert not alive, "the sweep outlived the stage that started it"
    finally:
        if stage.poll() is None:
            stage.kill()


# -- this round's own attacks that broke (docs/resilience.md) ----------------------------------------------
@pytest.mark.parametrize(
    "text,secret",
    [
        ("http://u:p@ssw0rdX@h:5000/", "ssw0rdX"),  # an @ inside the password
        ("401 Unauthorized: Authorization: Bearer eyJhbGciOiJIUzI1", "eyJhbGciOiJIUzI1"),
        ("https://h/cb#access_token=frag-secret1&x=1", "frag-secret1"),
    ],
)
def test_redact_masks_what_this_rounds_attacks_leaked(text, secret):
    from pipeline.core.redaction import redact

    assert secret not in redact(text)


def test_cluster_stop_with_a_damaged_state_file_says_so_in_one_line(tmp_path):
    (tmp_path / "cluster.json").write_text("{not json")
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cluster.local", "stop", "--dir", str(tmp_path)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and "cluster.json cannot be read" in proc.stderr


@pytest.mark.parametrize("rate", [0, float("nan"), float("inf"), -5])
def test_a_load_schedule_refuses_a_rate_that_is_not_a_positive_number(rate):
    from pipeline.measure.loadgen import poisson_offsets

    with pytest.raises(ValueError, match="rate must be"):
        poisson_offsets(rate, 5)
