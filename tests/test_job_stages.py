"""A job is a pipeline of stages over one typed state: no stage writes a metric or tag name;
the record is named in one place (pipeline/job/results.py), also for a job that stopped half-way."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

from pipeline.config import to_config
from pipeline.job.results import JobState, LoadRun, Parity, Scored, record_fields
from pipeline.job.stages import STAGES
from pipeline.model.artifact import Artifact
from pipeline.model.sources import ResolvedModel

ROOT = Path(__file__).resolve().parent.parent


def _state(tmp_path, **kw) -> JobState:
    resolved = ResolvedModel("m", tmp_path, None, None, True, "local")
    return JobState(cfg=None, out_dir=tmp_path, resolved=resolved, **kw)


def _artifact(tmp_path) -> Artifact:
    (tmp_path / "model.onnx").write_bytes(b"x" * 2_000_000)
    return Artifact("m", "fp32", "k1", tmp_path, tmp_path / "model.onnx", cached=False, seconds=3.5)


def test_a_job_that_stopped_after_its_export_records_what_the_export_found(tmp_path):
    metrics, tags = record_fields(_state(tmp_path, artifact=_artifact(tmp_path)))
    assert tags["artifact.key"] == "k1" and tags["export.cached"] == "false" and tags["weights.verified"] == "true"
    assert metrics["export.seconds"] == 3.5 and metrics["model.size_mb"] == 2.0
    assert not any(k.startswith(("latency.", "quality.", "parity.")) for k in metrics)  # nothing the later stages would have found


def test_no_parity_reference_is_said_not_invented(tmp_path):
    metrics, tags = record_fields(_state(tmp_path, parity=Parity(None, "an imported ONNX file")))
    assert "parity.min_cosine" not in metrics and tags["parity.unavailable"] == "an imported ONNX file"
    metrics, tags = record_fields(_state(tmp_path, parity=Parity(0.9991)))
    assert metrics["parity.min_cosine"] == 0.9991 and "parity.unavailable" not in tags


def test_a_contended_load_run_marks_a_quiet_benchmark_contended(tmp_path):
    bench = SimpleNamespace(metrics=lambda: {"bench.contended": 0.0}, tags=lambda: {"bench.contended": "false"})
    load = LoadRun(SimpleNamespace(metrics=lambda: {"load.max_qps_at_p95_target": 80.0}), 0.3, 0.6, "other processes took 30%")
    metrics, tags = record_fields(_state(tmp_path, bench=bench, load=load))
    assert tags["bench.contended"] == "other processes took 30%" and metrics["bench.contended"] == 1.0
    assert metrics["load.conditions.other_cpu_share"] == 0.3
    # a quiet load run leaves the benchmark's own verdict alone
    quiet = LoadRun(SimpleNamespace(metrics=lambda: {}), 0.0, 0.0, None)
    assert record_fields(_state(tmp_path, bench=bench, load=quiet))[1]["bench.contended"] == "false"


def test_quality_and_its_loss_against_fp32_are_named_once(tmp_path):
    q = SimpleNamespace(metrics=lambda: {"quality.stsb_spearman": 80.0}, cached=True)
    metrics, tags = record_fields(_state(tmp_path, scored=Scored(q, -0.4)))
    assert metrics["quality.stsb_delta_vs_fp32"] == -0.4 and tags["quality.cached"] == "true"


def test_the_stages_run_in_the_documented_order():
    assert [s.__name__ for s in STAGES] == [
        "read_data",
        "export_model",
        "start_runtime",
        "check_parity",
        "prepare_workload",
        "time_it",
        "run_load",
        "score_quality",
    ]


def test_following_the_config_down_a_job_never_climbs_and_no_stage_fills_result_dicts(compose, tiny_bert, tiny_sts_dir, tmp_path):
    from conftest import tiny_overrides

    from pipeline.job.run import execute

    spec = importlib.util.spec_from_file_location("cfg_walk", ROOT / "scripts" / "cfg_walk.py")
    walk = importlib.util.module_from_spec(spec)
    sys.modules["cfg_walk"] = walk
    spec.loader.exec_module(walk)
    dcfg = compose(tiny_overrides(tiny_bert, tiny_sts_dir, tmp_path) + ["bench.contention.enabled=false"])
    out = walk.walk(execute, to_config(dcfg), dcfg, tmp_path / "out")
    assert out["status"] == "ok"
    assert out["climbs"] == 0, out["crossings"]  # the walk goes down the layers
    assert out["dict_fillers"] == 0, out["dict_filler_functions"]  # typed results, not metrics and tags dicts
    assert "pipeline.job.run -> pipeline.job.stages" in out["crossings"]
