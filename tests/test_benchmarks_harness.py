"""What the benchmark scripts share (benchmarks/harness.py) and benchmarks/peers_best.py's command
line and choice of contenders, without a model or a peer library: stand-ins for the files and the
environments."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import ROOT

from pipeline.core.child import ChildFailed

sys.path.insert(0, str(ROOT / "benchmarks"))
import harness  # noqa: E402
import peers_best  # noqa: E402


# -- the options of peers_best.py ----------------------------------------------------------------
def test_peers_best_options_keep_the_command_line():
    o = peers_best.Options.parse([])
    assert (o.threads, o.rounds, o.singles, o.batch_size, o.lock_wait_s) == (2, 3, 100, 32, 900)
    assert o.variants == ["O2_cpu", "int8_dynamic", "int8_static"] and o.only == [] and o.skip == [] and not o.fp32_only
    o = peers_best.Options.parse(["--only", "st-onnx,fastembed", "--skip", "st-onnx-O", "--quick", "--threads", "4"])
    assert o.only == ["st-onnx", "fastembed", "ours-fp32"] and (o.rounds, o.singles, o.threads) == (1, 20, 4)  # the reference always runs
    assert o.wants("st-onnx-qint8") and not o.wants("st-onnx-O2") and not o.wants("optimum-ort") and o.wants("ours-fp32")
    o = peers_best.Options.parse(["--extra-ours", '[{"name": "x", "variant": "O4", "precision": "fp32"}]', "--variants", "O2_cpu"])
    assert o.variants == ["O2_cpu", "O4"] and o.extra_ours[0]["name"] == "x"


def test_fp32_only_runs_the_peers_in_plain_fp32_beside_ours_and_is_not_committed():
    o = peers_best.Options.parse(["--fp32-only"])
    assert o.variants == ["O2_cpu", "int8_dynamic"]  # no static int8 built for it
    assert [
        n
        for n in (
            "ours-fp32",
            "ours-O2_cpu",
            "ours-int8_dynamic",
            "ours-int8_static",
            "st-onnx",
            "st-onnx-qint8",
            "st-onnx-O2",
            "optimum-ort",
            "optimum-ort-O2",
            "fastembed",
            "st-torch",
            "st-torch-bf16",
            "ct2-float32",
            "infinity-torch",
        )
        if o.wants(n)
    ] == ["ours-fp32", "ours-O2_cpu", "ours-int8_dynamic", "st-onnx", "optimum-ort", "fastembed", "st-torch"]
    assert o.out_path("AMD EPYC") == ROOT / "reports" / "peers_best_fp32_only.json"
    assert not peers_best.Options.parse(["--fp32-only", "--skip", "st-torch"]).wants("st-torch")


def test_where_peers_best_writes():
    cpu = "AMD EPYC 9R14"
    assert peers_best.Options.parse([]).out_path(cpu) == ROOT / "benchmarks" / "results" / "amd-epyc-9r14" / "peers_best.json"
    assert peers_best.Options.parse(["--workload", "passages"]).out_path(cpu).name == "peers_best_passages.json"
    assert peers_best.Options.parse(["--quick"]).out_path(cpu) == ROOT / "reports" / "peers_best.quick.json"
    assert peers_best.Options.parse(["--out", "/tmp/x.json"]).out_path(cpu) == Path("/tmp/x.json")


# -- the contenders of peers_best.py -------------------------------------------------------------
def _art(folder: Path, name: str = "model.onnx") -> SimpleNamespace:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text('{"hidden_size": 32}')
    return SimpleNamespace(folder=folder, onnx_path=folder / name)


def _contenders(tmp_path, argv, monkeypatch):
    made = []

    def env(name, root, report):
        made.append(name)
        report[name] = {"size_mb": 1}
        return SimpleNamespace(ok=True, reason="", path=root / f"{name}-abc", python=root / f"{name}-abc" / "bin" / "python")

    monkeypatch.setattr(harness, "peer_env", env)
    monkeypatch.setattr(harness, "st_onnx_folder", lambda resolved, fp32, root: root / "st-onnx")
    opts = peers_best.Options.parse(argv)
    arts = {v: _art(tmp_path / v) for v in ("fp32", *opts.variants) if v != "nope"}  # "nope": a variant that did not build
    cfg = SimpleNamespace(model=SimpleNamespace(max_length=128, native_pooling="mean"))
    state = peers_best.State()
    pairs = peers_best.contenders_for(
        opts, cfg, SimpleNamespace(folder=tmp_path / "ck"), arts, tmp_path / "peers", tmp_path / "envs", state
    )
    return pairs, state, made


def test_fp32_only_contenders_in_their_listed_order_each_with_its_python(tmp_path, monkeypatch):
    pairs, state, made = _contenders(tmp_path, ["--fp32-only"], monkeypatch)
    assert [c.name for c, _ in pairs] == [
        "ours-fp32",
        "ours-O2_cpu",
        "ours-int8_dynamic",
        "st-torch",
        "st-onnx",
        "optimum-ort",
        "fastembed",
    ]
    assert made == ["fastembed"] and state.envs == {"fastembed": {"size_mb": 1}} and state.skipped == {}
    by = {c.name: (c, py) for c, py in pairs}
    assert all(py == Path(sys.executable) for n, (_, py) in by.items() if n != "fastembed")
    fe, py = by["fastembed"]
    assert py.parent.parent.name == "fastembed-abc" and fe.env == "fastembed-abc" and fe.spec["dim"] == 32
    ours = by["ours-O2_cpu"][0]
    assert ours.ours and ours.spec == {
        "kind": "ours",
        "root": str(ROOT),
        "folder": str(tmp_path / "O2_cpu"),
        "onnx_file": "model.onnx",
        "threads": 2,
        "max_length": 128,
    }
    assert by["st-onnx"][0].spec == {
        "kind": "st-onnx",
        "folder": str(tmp_path / "peers" / "st-onnx"),
        "file_name": "onnx/model.onnx",
        "threads": 2,
    }


def test_our_openvino_rows_and_experiments_run_in_the_openvino_environment(tmp_path, monkeypatch):
    extra = (
        '[{"name": "ours-int8-ov", "variant": "int8_dynamic", "precision": "int8", "openvino_hint": "f32", "call_cost": 9},'
        ' {"name": "ours-missing", "variant": "nope", "precision": "fp32"}]'
    )
    pairs, state, made = _contenders(tmp_path, ["--only", "ours-", "--ov-extra", '{"NUM_STREAMS": 1}', "--extra-ours", extra], monkeypatch)
    names = [c.name for c, _ in pairs]
    assert names == ["ours-fp32", "ours-O2_cpu", "ours-int8_dynamic", "ours-int8_static", "ours-bf16-openvino-ep", "ours-int8-ov"]
    assert made == ["onnxruntime-openvino", "onnxruntime-openvino"]
    bf16 = pairs[4][0].spec
    assert bf16["provider"] == "OpenVINOExecutionProvider"
    assert bf16["provider_options"]["load_config"] == {"CPU": {"INFERENCE_PRECISION_HINT": "bf16", "NUM_STREAMS": 1}}
    x = pairs[5][0]
    assert x.spec["call_cost"] == 9 and x.spec["provider_options"]["load_config"] == {"CPU": {"INFERENCE_PRECISION_HINT": "f32"}}
    assert x.note == "experiment" and state.skipped == {"ours-missing": "variant nope not built"}
    with pytest.raises(SystemExit, match="more threads"):
        _contenders(
            tmp_path,
            ["--only", "ours-fp32", "--extra-ours", '[{"name": "t", "variant": "fp32", "precision": "fp32", "threads": 3}]'],
            monkeypatch,
        )


# -- harness.py -----------------------------------------------------------------------------------
PIPELINE_CHILD = ["pipeline", "pipeline.core", "pipeline.core.child", "pipeline.core.errors"]


def test_the_peer_worker_answers_through_the_one_child_protocol(tmp_path):
    """benchmarks/_peer_worker.py as peers_best.py runs it (harness.worker: a pipeline.core.child
    Session, in a peer's environment variables), under this environment's python, with no model."""
    (tmp_path / "texts.json").write_text(json.dumps(["a dog", "a cat"]))
    s = harness.worker("_peer_worker", "the peer worker", sys.executable, env=harness.child_env(TOKENIZERS_PARALLELISM="true"))
    try:
        ping = s.request({"op": "ping"}, 60)
        assert ping["ok"] and ping["pid"] == s.proc.pid and ping["python"] == sys.executable
        assert ping["pipeline"] == PIPELINE_CHILD  # nothing else of pipeline in a peer's process
        assert s.request({"op": "texts", "name": "t", "file": str(tmp_path / "texts.json")}, 60) == {"ok": True, "n": 2}
        with pytest.raises(ChildFailed, match="ValueError: unknown op 'nope'"):
            s.request({"op": "nope"}, 60)
        with pytest.raises(ChildFailed, match="KeyError: 'no-such-library'") as failed:
            s.request({"op": "start", "kind": "no-such-library"}, 60)
        assert failed.value.error and "BUILDERS" in failed.value.tail  # its traceback
        assert s.request({"op": "ping"}, 60)["ok"]  # a failed request fails only itself
    finally:
        assert s.close(30) == 0  # ended by the end of its requests, not killed


NOISY = """
import os
import numpy as np
import _peer_worker
from pipeline.core import child

print('{"ok": true, "reply": {"forged": 1}}')  # at import, before serve

def build(spec):
    print("loading...", flush=True)
    os.write(1, b'{"ok": true, "reply": {"forged": 2}}\\n')  # at the file-descriptor level too
    def embed(texts, bs):
        print("[1, 2, 3]")
        os.write(1, b"\\n}{ not json\\n")
        return np.ones((len(texts), 4), dtype=np.float32)
    return embed, {"noisy": True}

_peer_worker.BUILDERS["noisy"] = build
if __name__ == "__main__":
    raise SystemExit(child.serve(_peer_worker.Worker().handle))
"""


def test_a_peer_worker_that_prints_on_stdout_does_not_corrupt_its_replies(tmp_path):
    (tmp_path / "noisy_worker.py").write_text(NOISY)
    (tmp_path / "texts.json").write_text(json.dumps(["a dog", "a cat", "a cow"]))
    (tmp_path / "batches.json").write_text(json.dumps([[2], [0, 1]]))
    env = dict(harness.child_env(), PYTHONPATH=str(tmp_path))
    with harness.worker("noisy_worker", "the noisy worker", sys.executable, env=env) as s:
        info = s.request({"op": "start", "kind": "noisy"}, 60)["info"]
        assert info["noisy"] and info["python"] == sys.executable and info["load_s"] >= 0
        s.request({"op": "texts", "name": "t", "file": str(tmp_path / "texts.json")}, 60)
        s.request({"op": "batches", "name": "b", "file": str(tmp_path / "batches.json")}, 60)
        ms = s.request({"op": "single", "texts": "t", "n": 3, "warm": 1}, 60)["ms"]
        assert len(ms) == 3 and all(x >= 0 for x in ms)
        got = s.request({"op": "corpus", "texts": "t", "batches": "b", "save": str(tmp_path / "v.npy")}, 60)
        assert set(got) == {"s"} and got["s"] >= 0 and np.load(tmp_path / "v.npy").shape == (3, 4)
        assert set(s.request({"op": "corpus", "texts": "t", "batch_size": 2, "save": None}, 60)) == {"s"}


def test_a_contender_that_does_not_start_says_why_and_its_process_ends(tmp_path):
    c = peers_best.Contender("x", "fp32", "nothing", "main", {"kind": "no-such-library"})
    with pytest.raises(ChildFailed, match="x's process failed: KeyError"):
        c.start(Path(sys.executable), 60)
    pid = c.pid
    assert c.ask({"op": "ping"})["pid"] == pid  # still serving: its failure was the request's
    c.stop()
    assert c.session.proc.returncode == 0
    c = peers_best.Contender("y", "fp32", "nothing", "main", {"kind": "no-such-library"})
    c.session = harness.worker("_peer_worker", "y", sys.executable, env=harness.child_env())
    c.kill()
    assert c.session.proc.returncode == -9  # killed with its process group


def test_a_tool_that_hangs_is_killed_at_its_timeout():
    with pytest.raises(subprocess.TimeoutExpired):
        harness.run_tool(Path(sys.executable), "import time; time.sleep(60)", [], "the sleeper", 0.5)
    assert harness.run_tool(Path(sys.executable), "print('what it found')", [], "the probe", 60) == "what it found\n"


def test_a_tool_that_fails_raises_with_its_exit_and_last_lines(tmp_path):
    with pytest.raises(RuntimeError, match=r"the conversion failed \(exit 2\): .*last words"):
        harness.run_tool(Path(sys.executable), "import sys; print('last words', file=sys.stderr); sys.exit(2)", [], "the conversion", 60)
    harness.run_tool(
        Path(sys.executable),
        "import os, sys; assert 'PYTHONPATH' not in os.environ and sys.argv[1:] == ['a', '1']",
        ["a", 1],
        "the check",
        60,
    )


def test_small_shared_pieces():
    assert harness.names("a,,b") == ["a", "b"] and harness.names("") == []
    assert harness.versions(["numpy", "no-such-distribution"]).keys() == {"numpy"}
    assert harness.versions(["no-such-distribution"], keep_missing=True) == {"no-such-distribution": None}
    env = harness.child_env(X="1")
    assert env["HF_HUB_OFFLINE"] == "1" and env["X"] == "1" and "PYTHONPATH" not in env
    a = harness.mark([None])
    w = harness.window(a, harness.mark([]))
    assert set(w) == {"seconds", "other_cpu_share", "loadavg"} and w["seconds"] >= 0
    assert set(harness.ENVS) == {"onnxruntime-openvino", "st-openvino", "fastembed", "ctranslate2", "infinity-emb-server"}
    packages, inherit, pip_args = harness.ENVS["st-openvino"]()
    assert inherit and pip_args == ("--no-deps",) and not any(p.startswith("torchvision") for p in packages)
