"""Issue 17: nothing lost, nothing leaked, nothing false.  One test (or more) per numbered break a
hostile probe found; each failed on the code before the fix.  Items 8 and 16 belong to the
decision rewrite and are tested there."""

from __future__ import annotations

import errno
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, tiny_overrides
from mlflow.tracking import MlflowClient

from pipeline.config import BenchConfig, ConfigError, ModelConfig, QualityConfig, VariantConfig, to_config
from pipeline.core.errors import Exit
from pipeline.core.redaction import redact
from pipeline.data.sts import DataError, load_sts
from pipeline.embedder.embed import Embedder, length_groups
from pipeline.job.run import execute
from pipeline.measure import bench
from pipeline.model.export import export
from pipeline.model.sources import resolve
from pipeline.tracking import records, sync

PW = "pw123-s3cret"


def _env(**extra) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env.pop("MLFLOW_TRACKING_URI", None)
    env.update(extra)
    return env


def _pipeline(args: list[str], cwd: Path, timeout: float = 240, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args], cwd=cwd, env=_env(**env), capture_output=True, text=True, timeout=timeout
    )


def _fast(args: list[str]) -> list[str]:
    return [*args, "bench.iterations=6", "bench.min_iterations=3", "bench.max_seconds=0.5", "bench.warmup=1"]


def _files_holding(root: Path, needle: str) -> list[str]:
    hits = []
    for p in root.rglob("*"):
        if p.is_file():
            try:
                if needle.encode() in p.read_bytes():
                    hits.append(str(p))
            except OSError:
                pass
    return hits


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """One export cache for the sweeps of this module: these tests are not about the cache."""
    return tmp_path_factory.mktemp("resilience-cache")


def _tiny(tiny_bert, tiny_sts_dir, tmp: Path, cache: Path) -> list[str]:
    return [o if not o.startswith("cache_dir=") else f"cache_dir={cache}" for o in tiny_overrides(tiny_bert, tiny_sts_dir, tmp)]


@pytest.fixture(scope="module")
def onnx_dir(tiny_bert, tmp_path_factory):
    cfg = ModelConfig(name="tiny-bert", source="local", path=str(tiny_bert), max_length=64, sha256=None)
    return export(resolve(cfg), cfg, VariantConfig(), tmp_path_factory.mktemp("cache")).folder


# -- 1. credentials ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        f"http://user:{PW}@127.0.0.1:5000",
        f"tracking.uri=http\\:\\/\\/user\\:{PW}@127.0.0.1\\:5000",  # as Hydra escapes an override
        f"http%3A%2F%2Fuser%3A{PW}%40127.0.0.1",
        f"View run x at: https://user:{PW}@mlflow.example.org/#/experiments/1",
    ],
)
def test_redact_masks_credentials_in_every_form(text):
    out = redact(text)
    assert PW not in out and "***" in out


def test_credentials_of_a_uri_become_secrets_and_leave_the_uri(monkeypatch):
    from pipeline.config import TrackingConfig

    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    uri = TrackingConfig(uri=f"http://user:{PW}@127.0.0.1:9").resolved_uri()
    assert uri == "http://127.0.0.1:9" and os.environ["MLFLOW_TRACKING_PASSWORD"] == PW
    assert PW not in redact(f"some error mentioning {PW} and http\\:\\/\\/u\\:{PW}@h")


@pytest.mark.parametrize("mode", [[], ["-m"], ["tracking.uri=sqlite:///x.db"]])  # last: overridden, still written by Hydra
def test_credentials_on_the_command_line_are_refused_before_anything_is_written(tmp_path, mode):
    late = mode if mode and mode[0].startswith("tracking.uri") else []
    mode = [] if late else mode
    proc = _pipeline(
        [
            *mode,
            f"tracking.uri=http://user:{PW}@127.0.0.1:9",
            *late,
            f"records_dir={tmp_path}/records",
            f"cache_dir={tmp_path}/cache",
            f"hydra.run.dir={tmp_path}/out",
            f"hydra.sweep.dir={tmp_path}/multi",
        ],
        tmp_path,
        timeout=120,
    )
    assert proc.returncode == Exit.CONFIG, proc.stderr[-2000:]
    assert "config error: tracking.uri: holds credentials" in proc.stderr and "MLFLOW_TRACKING_PASSWORD" in proc.stderr
    assert PW not in proc.stdout + proc.stderr
    assert not _files_holding(tmp_path, PW)  # no .hydra/overrides.yaml, no multirun.yaml, no record
    assert not (tmp_path / "cache").exists()


def test_credentials_from_the_environment_reach_no_record_artifact_log_or_console(tiny_bert, tiny_sts_dir, tmp_path, cache):
    from test_server import Server, _free_port

    srv = Server(tmp_path / "server", _free_port()).start()
    try:
        uri = f"http://user:{PW}@127.0.0.1:{srv.port}"
        args = [o for o in _tiny(tiny_bert, tiny_sts_dir, tmp_path, cache) if not o.startswith("tracking.uri=")]
        proc = _pipeline(
            _fast(["-m", *args, "tracking=shared", "bench.batch_size=1", f"hydra.sweep.dir={tmp_path}/multi"]),
            tmp_path,
            MLFLOW_TRACKING_URI=uri,
        )
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        assert PW not in proc.stdout + proc.stderr
        (parent,) = srv.runs("tags.`sweep.role` = 'parent'")
        assert len(srv.runs()) == 2
        arts = {a.path for a in srv.client().list_artifacts(parent.info.run_id)}
        assert "jobs.json" in arts  # where Hydra's escaped override used to leak it
    finally:
        srv.stop()
    # records, Hydra's outputs, the server's store and artifacts (jobs.json, config.yaml, ...)
    assert not _files_holding(tmp_path, PW)
    assert all(r.tracking_uri == f"http://127.0.0.1:{srv.port}" for _, r in records.iter_records(tmp_path / "records"))


# -- 2. the same sweep twice at the same moment ------------------------------------------------------
def test_the_same_sweep_started_twice_at_the_same_moment_runs_once(tiny_bert, tiny_sts_dir, tmp_path, cache):
    args = _fast(["-m", *_tiny(tiny_bert, tiny_sts_dir, tmp_path, cache), "bench.batch_size=1,2"])
    cmd = [sys.executable, "-m", "pipeline", *args]
    a = subprocess.Popen(cmd, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    b = subprocess.Popen(cmd, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out_a, out_b = a.communicate(timeout=300)[0], b.communicate(timeout=300)[0]
    assert sorted([a.returncode, b.returncode]) == [Exit.OK, Exit.BUSY], out_a[-2000:] + out_b[-2000:]
    assert "is running in another process right now" in (out_a + out_b)
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.get_experiment_by_name("embedding-pipeline")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    assert len([r for r in runs if r.data.tags.get("sweep.role") == "parent"]) == 1
    assert len([r for r in runs if r.data.tags.get("sweep.role") != "parent"]) == 2  # each job measured once
    folders = [p for p in (tmp_path / "records").iterdir() if p.is_dir() and p.name != records.INDEX]
    assert all((p / "record.json").is_file() for p in folders), folders  # no abandoned folder


# -- 3. a batch larger than the sentence pool ----------------------------------------------------------
def test_a_batch_larger_than_the_pool_is_refused_not_counted_as_measured(compose, tiny_bert, tiny_sts_dir, tmp_path, cache):
    dcfg = compose(_tiny(tiny_bert, tiny_sts_dir, tmp_path, cache) + ["bench.batch_size=1000000000"])
    result = execute(to_config(dcfg), dcfg)
    assert result.status == "skipped", result.metrics.get("throughput.sentences_per_s")
    assert "larger than the benchmark's pool of" in result.reason and "refused, not capped" in result.reason
    assert "throughput.sentences_per_s" not in result.metrics


def test_throughput_counts_the_texts_embedded(onnx_dir):
    with pytest.raises(bench.BenchError, match="larger than the pool of 5 sentences"):
        bench.run({"model_dir": str(onnx_dir), "max_length": 64}, ["a b"] * 5, BenchConfig(batch_size=8))
    spec = {
        "embedder": {"model_dir": str(onnx_dir), "max_length": 64},
        "sentences": [f"a dog {i}" for i in range(7)],
        "plan": {"batch_size": 3, "warmup": 1, "iterations": 6, "min_iterations": 3, "max_seconds": 0.5, "passes": 2},
    }
    raw = bench.measure(spec)
    assert raw["texts_per_pass"] == 3 * raw["calls_per_pass"]  # what the throughput divides by the pass time


# -- 4. sync never drops a record silently ------------------------------------------------------------
def _offline_sweep_records(root: Path, n_jobs: int = 2) -> tuple[Path, list[Path]]:
    parent = records.RunRecord.new("sweep x", {"sweep": "x"}, {"sweep.role": "parent", "sweep.key": "k1", "sweep.name": "x"})
    parent.status = "ok"
    records.save(root / parent.record_id, parent)
    jobs = []
    for i in range(n_jobs):
        rec = records.RunRecord.new(f"job{i}", {"batch_size": str(i)}, {"sweep.parent_record": parent.record_id, "sweep.job": str(i)})
        rec.status, rec.metrics = "ok", {"latency.p50_ms": 1.0 + i}
        records.save(root / rec.record_id, rec)
        jobs.append(root / rec.record_id)
    return root / parent.record_id, jobs


def _sync(tmp: Path, capsys) -> tuple[int, str, str]:
    code = sync.main(
        ["--records-dir", str(tmp / "records"), "--tracking-uri", f"sqlite:///{tmp}/s.db", "--artifact-location", str(tmp / "art")]
    )
    out = capsys.readouterr()
    return code, out.out, out.err


def _logged(tmp: Path) -> list:
    client = MlflowClient(f"sqlite:///{tmp}/s.db")
    exp = client.get_experiment_by_name("embedding-pipeline")
    return client.search_runs([exp.experiment_id]) if exp else []


def test_sync_names_an_unreadable_job_record_and_fails(tmp_path, capsys):
    _, jobs = _offline_sweep_records(tmp_path / "records")
    text = (jobs[0] / "record.json").read_text()
    (jobs[0] / "record.json").write_text(text[: len(text) // 2])  # truncated
    code, out, err = _sync(tmp_path, capsys)
    assert code == Exit.FAILED
    assert f"unreadable record {jobs[0]}" in err and "not valid JSON" in err
    assert "2 logged" in out and "1 unreadable" in out  # the parent and the readable job
    assert len(_logged(tmp_path)) == 2


def test_sync_holds_the_jobs_of_an_unreadable_parent(tmp_path, capsys):
    pfolder, jobs = _offline_sweep_records(tmp_path / "records")
    (pfolder / "record.json").write_text("[]")
    code, out, err = _sync(tmp_path, capsys)
    assert code == Exit.FAILED
    assert "expected a JSON object, got list" in err and err.count("held back: job record") == 2
    assert not _logged(tmp_path)  # no orphans outside their sweep
    assert all(not records.load(j).logged for j in jobs)  # kept, not lost


# -- 5. the data file is the one pinned -----------------------------------------------------------------
def test_a_truncated_sts_file_is_refused_and_own_data_is_labelled(tmp_path):
    from pipeline.config import default_data_dir

    real = Path(default_data_dir()) / "stsb" / "stsb-en-test.csv"
    if not real.is_file():
        pytest.skip("the STS Benchmark files are not here")
    assert load_sts(QualityConfig(source="local")).label == "stsb-test"
    (tmp_path / "stsb").mkdir()
    lines = real.read_text().splitlines(keepends=True)
    (tmp_path / "stsb" / "stsb-en-test.csv").write_text("".join(lines[:690]))
    with pytest.raises(DataError, match=r"not the STS Benchmark test split \(690 pairs.*expected 1379 pairs.*quality.dataset=own"):
        load_sts(QualityConfig(data_dir=str(tmp_path), source="local"))
    own = load_sts(QualityConfig(data_dir=str(tmp_path), source="local", dataset="own"))
    assert own.label == "own" and len(own.scores) == 690


def test_a_job_logs_its_pair_count_and_data_checksum(compose, tiny_bert, tiny_sts_dir, tmp_path, cache):
    import hashlib

    dcfg = compose(_tiny(tiny_bert, tiny_sts_dir, tmp_path, cache) + ["bench.batch_size=2"])
    result = execute(to_config(dcfg), dcfg)
    run = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db").get_run(result.run_id)
    digest = hashlib.sha256((tiny_sts_dir / "stsb" / "stsb-en-test.csv").read_bytes()).hexdigest()
    assert run.data.metrics["quality.pairs"] == 60
    assert run.data.tags["quality.data_sha256"] == digest and run.data.tags["quality.dataset"] == "own"


# -- 6. a records folder that cannot be written --------------------------------------------------------
@pytest.mark.parametrize("mode", [[], ["-m"]])
def test_an_unwritable_records_folder_is_refused_before_any_work(tiny_bert, tiny_sts_dir, tmp_path, mode):
    (tmp_path / "a-file").write_text("not a folder")
    args = [o for o in tiny_overrides(tiny_bert, tiny_sts_dir, tmp_path) if not o.startswith("records_dir=")]
    proc = _pipeline([*mode, *args, f"records_dir={tmp_path}/a-file/records"], tmp_path, timeout=120)
    assert proc.returncode == Exit.CONFIG, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert f"config error: records_dir {tmp_path}/a-file/records cannot be written" in proc.stderr
    assert "Traceback" not in proc.stderr and "no sweep state" not in proc.stderr
    assert not (tmp_path / "cache").exists() and not (tmp_path / "mlflow.db").exists()  # no work, no run


def test_a_record_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    src = tmp_path / "out"
    src.mkdir()
    for name in ("a.csv", "b.png", "c.json"):
        (src / name).write_text(name * 100)
    real_copy, copied = shutil.copy2, []

    def disk_full(a, b, *args, **kw):
        if copied:
            raise OSError(errno.ENOSPC, "No space left on device")
        copied.append(a)
        return real_copy(a, b, *args, **kw)

    monkeypatch.setattr(shutil, "copy2", disk_full)
    rec = records.RunRecord.new("job", {}, {})
    with pytest.raises(records.RecordError, match="could not be written .*No space left"):
        records.save(tmp_path / "records" / rec.record_id, rec, src)
    assert list((tmp_path / "records").iterdir()) == []  # no half-written record


# -- 7. a server that accepts connections and never answers ---------------------------------------------
@pytest.fixture
def silent_server():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    held, stop = [], threading.Event()

    def accept():
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(sock.accept()[0])  # accepted, never answered
            except OSError:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    stop.set()
    t.join()
    for c in held:
        c.close()
    sock.close()


def test_a_server_that_never_answers_does_not_stall_the_sweep(tiny_bert, tiny_sts_dir, tmp_path, silent_server, cache):
    args = [o for o in _tiny(tiny_bert, tiny_sts_dir, tmp_path, cache) if not o.startswith("tracking.uri=")]
    t0 = time.perf_counter()
    proc = _pipeline(_fast(["-m", *args, f"tracking.uri={silent_server}", "bench.batch_size=1,2"]), tmp_path)
    wall = time.perf_counter() - t0
    assert proc.returncode == Exit.UNSYNCED, proc.stdout[-2000:] + proc.stderr[-2000:]
    # the sweep waits on it at its start and once more at its end, never on every call
    # (before: ~47 s per call, 5 calls or more)
    assert wall < 90, f"{wall:.0f} s"
    local = [r for _, r in records.iter_records(tmp_path / "records")]
    assert len(local) == 3 and all(r.status == "ok" for r in local if not r.is_parent) and not any(r.logged for r in local)


# -- 9. parents end with a truthful status ------------------------------------------------------------
def test_a_refused_launcher_creates_no_parent(tmp_path):
    proc = _pipeline(
        [
            "-m",
            "hydra/launcher=submitit_local",
            f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
            f"records_dir={tmp_path}/records",
            f"cache_dir={tmp_path}/cache",
        ],
        tmp_path,
        timeout=120,
    )
    assert proc.returncode == Exit.CONFIG, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "runs jobs in parallel" in proc.stderr
    assert not (tmp_path / "mlflow.db").exists() and not list((tmp_path / "records").glob("*/record.json"))


def test_rerun_after_a_kill_closes_the_killed_parent(tiny_bert, tiny_sts_dir, tmp_path, cache):
    args = _fast(["-m", *_tiny(tiny_bert, tiny_sts_dir, tmp_path, cache), "bench.batch_size=1"])
    assert _pipeline(args, tmp_path).returncode == 0
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.get_experiment_by_name("embedding-pipeline")
    (first,) = client.search_runs([exp.experiment_id], "tags.`sweep.role` = 'parent'")
    # as a SIGKILL leaves it: the parent record open, its run RUNNING
    ((pfolder, prec),) = [(f, r) for f, r in records.iter_records(tmp_path / "records") if r.is_parent]
    prec.status, prec.mlflow_run_id, prec.open_run_id = "running", None, first.info.run_id
    records.write(pfolder, prec)
    client.update_run(first.info.run_id, "RUNNING")
    again = _pipeline([*args, "rerun=true"], tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    parents = client.search_runs([exp.experiment_id], "tags.`sweep.role` = 'parent'")
    assert len(parents) == 2
    assert {p.info.status for p in parents} == {"FINISHED", "FAILED"}
    assert client.get_run(first.info.run_id).info.status == "FAILED"
    assert records.load(pfolder).status == "failed"


def test_sync_closes_the_parent_of_a_killed_sweep(tmp_path, capsys):
    pfolder, _ = _offline_sweep_records(tmp_path / "records", n_jobs=1)
    prec = records.load(pfolder)
    prec.status = "running"  # its process was killed; nobody holds its lock
    records.write(pfolder, prec)
    code, out, _ = _sync(tmp_path, capsys)
    assert code == 0 and f"closed the parent record {prec.record_id}" in out
    (parent,) = [r for r in _logged(tmp_path) if r.data.tags.get("sweep.role") == "parent"]
    assert parent.info.status == "FAILED" and parent.data.tags["sweep.complete"] == "false"


# -- 10. exit codes -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "override,message",
    [
        ("bench.batch_size=abc", "bench.batch_size"),
        ("bench.bach_size=4", "bach_size"),
        ("model=nope", "model/nope"),
        ("tracking.uri=garbage://x", "config error: tracking.uri: unknown scheme 'garbage'"),
    ],
)
def test_config_errors_exit_2(tmp_path, override, message):
    proc = _pipeline(
        [override, f"records_dir={tmp_path}/records", f"cache_dir={tmp_path}/cache", f"hydra.run.dir={tmp_path}/out"], tmp_path, timeout=120
    )
    assert proc.returncode == Exit.CONFIG, proc.stderr[-2000:]
    assert message in proc.stderr
    assert not (tmp_path / "cache").exists()


def test_a_single_job_that_was_not_logged_exits_4_and_says_so(tiny_bert, tiny_sts_dir, tmp_path, cache):
    args = [o for o in _tiny(tiny_bert, tiny_sts_dir, tmp_path, cache) if not o.startswith("tracking.uri=")]
    proc = _pipeline(_fast([*args, "tracking.uri=http://127.0.0.1:9", f"hydra.run.dir={tmp_path}/out"]), tmp_path)
    assert proc.returncode == Exit.UNSYNCED, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "run None" not in proc.stdout and "NOT logged to MLflow" in proc.stdout
    assert "python -m pipeline.sync --records-dir" in proc.stderr


# -- 11. max_length beyond the model's positions --------------------------------------------------------
def test_max_length_beyond_the_models_positions_is_refused(compose, tiny_bert, tiny_sts_dir, tmp_path, onnx_dir):
    with pytest.raises(ValueError, match="max_length must be <= 128"):
        Embedder(onnx_dir, max_length=100000)
    assert Embedder(onnx_dir).max_length == 128  # the default fits the model
    dcfg = compose(tiny_overrides(tiny_bert, tiny_sts_dir, tmp_path) + ["model.max_length=100000"])
    with pytest.raises(ConfigError, match="model.max_length: got 100000, but tiny-bert has 128 positions"):
        execute(to_config(dcfg), dcfg)
    assert not list((tmp_path / "records").glob("*/record.json"))  # refused: no record, no run


# -- 12. a bad cache entry is recomputed ---------------------------------------------------------------
def test_unreadable_parity_and_quality_cache_entries_are_recomputed(compose, tiny_bert, tiny_sts_dir, tmp_path):
    dcfg = compose(tiny_overrides(tiny_bert, tiny_sts_dir, tmp_path) + ["bench.batch_size=2"])
    first = execute(to_config(dcfg), dcfg)
    entries = list((tmp_path / "cache" / "parity").glob("*.json")) + list((tmp_path / "cache" / "quality").glob("*.json"))
    assert len(entries) >= 2
    for content in ("[]", "null", '{"min_cosine": null}'):
        for p in entries:
            p.write_text(content)
        again = execute(to_config(dcfg), dcfg)
        assert again.status == "ok", again.reason
        assert again.metrics["parity.min_cosine"] == pytest.approx(first.metrics["parity.min_cosine"], abs=1e-6)
        assert again.metrics["quality.stsb_spearman"] == pytest.approx(first.metrics["quality.stsb_spearman"], abs=1e-6)


# -- 13. kills leave no leftovers ------------------------------------------------------------------------
def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path):
    from pipeline.core import ownership

    def marked(name: str, pid: int, start: float) -> None:
        (tmp_path / name).mkdir()
        (tmp_path / name / ownership.MARKER).write_text(json.dumps({"host": ownership.host(), "pid": pid, "start": start}))

    dead = _dead_pid()
    me = ownership.process_identity()
    marked(f".tmp-entry-{dead}", dead, 1.0)
    half = ownership.temp_file(tmp_path / "x.json").name.replace(f".{me['pid']}-", f".{dead}-")
    (tmp_path / half).write_text("half")
    marked(f".tmp-entry-{os.getpid()}", os.getpid(), me["start"])  # a live writer's: kept
    marked(f"bench-{dead}-abc", dead, 1.0)
    marked(f"bench-{os.getppid()}-abc", os.getppid(), ownership.process_identity(os.getppid())["start"])
    records.clean_stale(tmp_path)
    bench.clean_stale_temps(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f".tmp-entry-{os.getpid()}", f"bench-{os.getppid()}-abc"])


def test_a_killed_export_leaves_no_cache_temporary(tiny_bert, tmp_path):
    cfg = ModelConfig(name="tiny-bert", source="local", path=str(tiny_bert), max_length=64, sha256=None)
    exports = tmp_path / "cache" / "exports"
    exports.mkdir(parents=True)
    from pipeline.core import ownership

    left = exports / f".tmp-tiny-bert-fp32-x-{_dead_pid()}"
    left.mkdir()
    (left / ownership.MARKER).write_text(json.dumps({"host": ownership.host(), "pid": os.getpid(), "start": 1.0}))
    export(resolve(cfg), cfg, VariantConfig(), tmp_path / "cache")
    assert not list(exports.glob(".tmp-*"))


def test_the_benchmark_process_dies_with_its_parent(onnx_dir, tmp_path):
    script = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
from pipeline.measure import bench
from pipeline.config import BenchConfig
bench.run({{"model_dir": {str(onnx_dir)!r}, "max_length": 64}}, ["a dog runs", "two cats"] * 20,
          BenchConfig(batch_size=2, warmup=100000, iterations=300, min_iterations=30, max_seconds=60))
"""
    parent = subprocess.Popen([sys.executable, "-c", script], env=_env(TMPDIR=str(tmp_path)))
    child = None
    deadline = time.time() + 60
    while child is None and time.time() < deadline:
        # the benchmark's own process (a baseline measured first runs in a process of its own too)
        out = subprocess.run(
            ["pgrep", "-P", str(parent.pid), "-f", "pipeline.measure.bench"], capture_output=True, text=True
        ).stdout.split()
        child = int(out[0]) if out else None
        time.sleep(0.2)
    assert child is not None, "the benchmark process did not start"
    time.sleep(1.0)  # it is in its warm-up
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 5
    while time.time() < deadline and Path(f"/proc/{child}").exists() and "Z" not in _state(child):
        time.sleep(0.1)
    assert not Path(f"/proc/{child}").exists() or "Z" in _state(child), "the benchmark outlived its parent"
    # the next benchmark removes the folder the killed one left
    assert list(tmp_path.glob("bench-*"))
    bench.clean_stale_temps(tmp_path)
    assert not list(tmp_path.glob("bench-*"))


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return "gone"


# -- 14. the printed sync command ------------------------------------------------------------------------
def test_the_printed_sync_command_can_be_pasted(tmp_path):
    folder = tmp_path / "my records" / "it's here"
    cmd = sync.command(folder, f"http://user:{PW}@host:5000")
    argv = shlex.split(cmd)
    assert argv[argv.index("--records-dir") + 1] == str(folder)
    assert PW not in cmd


# -- 15. the Embedder's messages and limits --------------------------------------------------------------
@pytest.mark.parametrize(
    "texts,error,message",
    [
        (["fine", "bad \ud800 text"], ValueError, r"texts\[1\] is not valid Unicode text: surrogates not allowed '\\ud800' at position 4"),
        (["fine", None], TypeError, r"texts\[1\] must be a str, got NoneType"),
        (["fine", "ok", b"bytes"], TypeError, r"texts\[2\] must be a str, got bytes"),
        ([3], TypeError, r"texts\[0\] must be a str, got int"),
        ({"a": 1}, TypeError, r"texts must be a str or a sequence of str, got dict"),
        (b"bytes", TypeError, r"texts must be a str or a sequence of str, got bytes"),
    ],
)
def test_the_embedder_names_the_bad_item(onnx_dir, texts, error, message):
    with pytest.raises(error, match=message):
        Embedder(onnx_dir).embed(texts)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"threads": -1}, "threads must be >= 0, got -1"),
        ({"batch_size": 0}, "batch_size must be >= 1, got 0"),
        ({"max_length": 0}, "max_length must be >= 1, got 0"),
    ],
)
def test_the_embedder_validates_its_arguments(onnx_dir, kwargs, message):
    with pytest.raises(ValueError, match=message):
        Embedder(onnx_dir, **kwargs)


@pytest.mark.parametrize("bs", [0, -1])
def test_embed_refuses_a_batch_size_below_1(onnx_dir, bs):
    with pytest.raises(ValueError, match=f"batch_size must be >= 1, got {bs}"):
        Embedder(onnx_dir).embed(["a", "b"], batch_size=bs)


def test_a_missing_model_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'nope'}: no such folder"):
        Embedder(tmp_path / "nope")


def _quadratic_groups(lengths, max_rows, call_cost):
    """The grouping as it was: O(n * max_rows), the reference for the optimum."""
    n = len(lengths)
    best, cut = [0.0] * (n + 1), [0] * (n + 1)
    for j in range(1, n + 1):
        best_cost, best_i = float("inf"), 0
        for i in range(max(0, j - max_rows), j):
            c = best[i] + (j - i) * lengths[j - 1] + call_cost
            if c < best_cost:
                best_cost, best_i = c, i
        best[j], cut[j] = best_cost, best_i
    groups, j = [], n
    while j > 0:
        groups.append((cut[j], j))
        j = cut[j]
    return groups[::-1]


def test_length_grouping_is_optimal_and_near_linear():
    rng = np.random.default_rng(0)
    for _ in range(500):
        n = int(rng.integers(0, 50))
        lengths = sorted(int(x) for x in rng.integers(1, int(rng.choice([3, 12, 60])), n))
        rows, cost = int(rng.integers(1, 60)), int(rng.choice([0, 1, 7, 32, 10**6]))
        assert length_groups(lengths, rows, cost) == _quadratic_groups(lengths, rows, cost), (lengths, rows, cost)
    lengths = sorted(int(x) for x in rng.integers(3, 128, 10_000))
    t0 = time.perf_counter()
    length_groups(lengths, 10_000, 32)
    assert time.perf_counter() - t0 < 0.5  # was 6.8 s
