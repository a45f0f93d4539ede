"""A sweep as an MLflow user sees it, read through a real `mlflow server`'s REST API (loopback):
who ran it and where (source, git commit, user, environment), params under their Hydra keys,
the evaluation data set as a run input, names that lead with what the sweep varies, skipped
runs that do not look like results, and the parent's description holding the recommendation."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import pytest
from conftest import ROOT
from test_server import Server, _env, _free_port, _sweep_args


def _api(uri: str, path: str, payload: dict | None = None) -> dict:
    req = urllib.request.Request(
        f"{uri}/api/2.0/mlflow/{path}",
        data=None if payload is None else json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


@pytest.fixture
def server(tmp_path):
    srv = Server(tmp_path / "server", _free_port())
    yield srv
    srv.stop()


def test_a_sweep_reads_as_mlflow_users_expect(server, tiny_bert, tiny_sts_dir, tmp_path):
    server.start()
    args = _sweep_args(tiny_bert, tiny_sts_dir, tmp_path, tmp_path / "cache", server.uri, "1,2")
    args += ["provider=cpu,cuda"]  # cuda: skipped where this onnxruntime lacks it
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", *args], cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600
    )  # a busy machine: benchmarks wait their turn
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]

    exp = _api(server.uri, "experiments/get-by-name?experiment_name=embedding-pipeline")["experiment"]
    runs = _api(server.uri, "runs/search", {"experiment_ids": [exp["experiment_id"]], "max_results": 100})["runs"]
    tags = {r["info"]["run_id"]: {t["key"]: t["value"] for t in r["data"].get("tags", [])} for r in runs}
    params = {r["info"]["run_id"]: {p["key"]: p["value"] for p in r["data"].get("params", [])} for r in runs}
    (parent,) = [r for r in runs if tags[r["info"]["run_id"]].get("sweep.role") == "parent"]
    children = [r for r in runs if r is not parent]
    assert len(children) == 4

    # who, what, where: on every run, the parent included
    import onnxruntime

    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    for run in runs:
        t = tags[run["info"]["run_id"]]
        for key in (
            "mlflow.user",
            "mlflow.source.name",
            "mlflow.source.type",
            "env.cpu_model",
            "env.cores",
            "env.os",
            "env.torch",
            "env.transformers",
            "env.optimum",
        ):
            assert t.get(key), (run["info"]["run_name"], key)
        assert t["env.onnxruntime"] == onnxruntime.__version__
        assert t["mlflow.source.name"] == "pipeline"  # `python -m pipeline`, as its user typed it
        if head.returncode == 0:
            assert t["mlflow.source.git.commit"] == head.stdout.strip()

    skipped = [r for r in children if tags[r["info"]["run_id"]]["status"] == "skipped"]
    ok = [r for r in children if tags[r["info"]["run_id"]]["status"] == "ok"]
    assert len(ok) == 2 and len(skipped) == 2  # the CPU jobs ran; this onnxruntime has no CUDA
    for run in children:
        rid, name = run["info"]["run_id"], run["info"]["run_name"]
        p = params[rid]
        # params under their Hydra keys, the benchmark settings among them
        assert p["bench.batch_size"] in ("1", "2") and p["provider"] in ("cpu", "cuda")
        for key in ("provider.threads", "model.max_length", "bench.warmup", "bench.iterations", "bench.max_seconds", "bench.passes"):
            assert key in p, key
        assert "batch_size" not in p
        # the name leads with what the sweep varies; a skipped run says so first
        assert set(tags[rid]["sweep.varies"].split(",")) == {"bench.batch_size", "provider"}
        assert name.startswith("[skipped] ") == (run in skipped), name
        lead = name.removeprefix("[skipped] ").split(" · ")[0]
        assert sorted(lead.split()) == sorted([p["provider"], f"b{p['bench.batch_size']}"]), name
    # the evaluation data set, as MLflow's run inputs; the headline metrics first on the run's page
    for run in ok:
        assert [m["key"] for m in run["data"]["metrics"]][:3] == ["latency.p95_ms", "quality.stsb_spearman", "throughput.sentences_per_s"]
        (entry,) = run["inputs"]["dataset_inputs"]
        t = tags[run["info"]["run_id"]]
        assert entry["dataset"]["name"] == t["quality.dataset"] == "own"
        assert entry["dataset"]["digest"] == t["quality.data_sha256"][:16]
        assert {"key": "mlflow.data.context", "value": "evaluation"} in entry["tags"]
    # the recommendation in the parent's description (rendered as markdown by the UI)
    pt = tags[parent["info"]["run_id"]]
    assert pt["decision.recommendation"].split(": ", 1)[1][:40] in pt["mlflow.note.content"]  # the verdict word said once, in bold
