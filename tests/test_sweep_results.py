"""scripts/sweep_results.py: a sweep's jobs filed as one machine's result file, rendered into a page."""

from __future__ import annotations

import importlib.util
import json

import pytest
from conftest import ROOT

from pipeline.decision.inputs import run_row, runs_frame


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _job(run_id: str, start: int, variant: str, length: int, p50: float, contended: str = "false", machine: str = "m1"):
    params = {
        "model": "all-MiniLM-L6-v2",
        "variant": variant,
        "bench.batch_size": "32",
        "workload": "lengths",
        "workload.lengths": f"[{length}]",
    }
    metrics = {
        "latency.p50_ms": p50,
        "latency.p95_ms": p50 * 1.1,
        "throughput.sentences_per_s": 32000 / p50,
        "bench.padding_share": 0.0,
        "parity.workload_min_cosine": 0.9999,
        "workload.cosine_to_fp32_min": float("nan"),
        "conditions.load_before": 0.5 + start / 10,
        "conditions.other_cpu_share": 0.01 * start,
        "conditions.cores": 2.0,
    }
    tags = {"bench.contended": contended, "machine.kind": machine, "conditions.cpu_model": "AMD EPYC"}
    return run_row(run_id=run_id, status="ok", start_time=start, params=params, metrics=metrics, tags=tags)


def test_each_job_keeps_its_figures_its_length_and_whether_it_was_contended():
    mod = _load("sweep_results")
    frame = runs_frame([_job("b", 2, "int8_dynamic", 512, 1480.4, contended="CPU pressure 24%"), _job("a", 1, "fp32", 16, 65.23)])
    rows = mod.rows_of(frame)
    assert [r["tokens"] for r in rows] == [16, 512]  # in the order the sweep ran them
    assert [r["contended"] for r in rows] == [False, True]
    assert rows[1]["p50 ms"] == 1480.4 and rows[1]["texts/s"] == pytest.approx(21.6158, abs=1e-4)
    assert rows[0]["min cos vs fp32 (workload)"] is None  # a NaN metric is no figure, not a number
    cond = mod.conditions_of(frame)
    assert cond["cpu_model"] == "AMD EPYC" and cond["cores"] == 2 and isinstance(cond["cores"], int)
    assert cond["load_average"] == [0.6, 0.7] and cond["other_cpu_share"] == [0.01, 0.02] and cond["jobs_contended"] == 1


def test_jobs_timed_on_two_machines_are_refused():
    mod = _load("sweep_results")
    frame = runs_frame([_job("a", 1, "fp32", 16, 65.0, machine="m1"), _job("b", 2, "fp32", 32, 120.0, machine="m2")])
    with pytest.raises(SystemExit, match="2 machines"):
        mod.conditions_of(frame)


def test_a_filed_sweep_renders_with_its_machine_and_decision(tmp_path):
    render = _load("render_results")
    folder = tmp_path / "results" / "amd-epyc"
    folder.mkdir(parents=True)
    (folder / "sweep_traffic.json").write_text(
        json.dumps(
            {
                "command": "python -m pipeline +sweep=traffic",
                "conditions": {
                    "cpu_model": "AMD EPYC",
                    "cores": 2,
                    "load_average": [0.4, 1.6],
                    "other_cpu_share": [0.0, 0.004],
                    "jobs_contended": 0,
                },
                "rows": [{"configuration": "minilm/int8", "workload": "queries", "p95 ms": 2.1}],
                "decision": {
                    "profile": "traffic",
                    "recommendation": "GO: ship minilm/int8",
                    "parts": {"best_per_part": {"queries": "minilm/int8", "indexing": "minilm/fp32"}, "recommendation": "They differ."},
                },
            }
        )
    )
    out = render.rendered("<!-- results:sweep_traffic -->\n<!-- /results -->\n", tmp_path / "results")
    assert "AMD EPYC; 2 cores" in out and "| minilm/int8 | queries | 2.1 |" in out
    assert (
        "Decision (profile `traffic`): GO: ship minilm/int8" in out
        and "Best per part: queries: minilm/int8; indexing: minilm/fp32. They differ." in out
    )
    assert "jobs measured contended: 0" in out
