"""A single job whose store is unreachable keeps its results; `python -m pipeline.sync` logs them once."""

from __future__ import annotations

from conftest import tiny_overrides
from mlflow.tracking import MlflowClient

from pipeline.config import to_config
from pipeline.job.run import execute
from pipeline.tracking import records, sync


def test_an_unlogged_job_is_synced_exactly_once(compose, tiny_bert, tiny_sts_dir, tmp_path, capsys):
    overrides = [o for o in tiny_overrides(tiny_bert, tiny_sts_dir, tmp_path) if not o.startswith("tracking.uri=")]
    dcfg = compose(overrides + ["tracking.uri=http://127.0.0.1:9"])  # nothing listens there
    cfg = to_config(dcfg)
    result = execute(cfg, dcfg)
    assert result.status == "ok" and result.run_id is None  # measured fine, not logged
    (rec,) = [r for _, r in records.iter_records(cfg.records_dir)]
    assert not rec.logged and rec.metrics["latency.p50_ms"] == result.metrics["latency.p50_ms"]

    store = f"sqlite:///{tmp_path}/synced.db"
    argv = ["--records-dir", cfg.records_dir, "--tracking-uri", store, "--artifact-location", str(tmp_path / "art")]
    assert sync.main(argv) == 0
    assert "1 logged, 0 not logged" in capsys.readouterr().out
    assert sync.main(argv) == 0  # again: nothing to do
    assert "0 logged, 0 not logged" in capsys.readouterr().out
    client = MlflowClient(store)
    exp = client.get_experiment_by_name("embedding-pipeline")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.data.tags["record_id"] == rec.record_id and run.data.tags["status"] == "ok"
    assert run.data.metrics["latency.p50_ms"] == result.metrics["latency.p50_ms"]
    assert "latency_samples_ns.csv" in {a.path for a in client.list_artifacts(run.info.run_id)}


def test_sync_says_what_it_could_not_log(compose, tiny_bert, tiny_sts_dir, tmp_path, capsys):
    folder = tmp_path / "records" / "r1"
    rec = records.RunRecord.new("x", {"model": "m"}, {})
    rec.status = "ok"
    records.save(folder, rec)
    code = sync.main(["--records-dir", str(tmp_path / "records"), "--tracking-uri", "http://user:pw-123456@127.0.0.1:9"])
    err = capsys.readouterr().err
    assert code == 1
    assert "did not take 1 record(s)" in err and "pw-123456" not in err  # credentials never printed
    assert "python -m pipeline.sync --records-dir" in err
    assert not records.load(folder).logged
