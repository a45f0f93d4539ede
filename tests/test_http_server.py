"""`pipeline serve` (pipeline/serving/app.py): the OpenAI-compatible /v1/embeddings over a real uvicorn
on 127.0.0.1, with the tiny model: its vectors are the Embedder's, an OpenAI client is answered,
a full queue is 503, oversized requests 413/422, readiness waits for the model, SIGTERM answers
what was accepted, and under concurrent load every response matches its request.
"""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from conftest import ROOT, WORDS

from pipeline.core.errors import Exit
from pipeline.serving.app import Front, Limits, _parser, create_app, main, target_of
from pipeline.serving.target import TargetError, from_decision

uvicorn = pytest.importorskip("uvicorn")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _call(url: str, payload=None, method: str = "POST", raw: bytes | None = None, timeout: float = 60):
    """(status, headers, json body) of one request."""
    data = raw if raw is not None else (None if payload is None else json.dumps(payload).encode())
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


class Running:
    """An app from create_app under uvicorn in a thread, on a free port of 127.0.0.1."""

    def __init__(self, load, wait_ready: bool = True, **kw):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = create_app(load, name=kw.pop("name", "tiny"), **kw)
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        self._wait("/health")
        if wait_ready:
            self._wait("/ready")

    def _wait(self, route: str, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if _call(self.url + route, method="GET", timeout=5)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"{route} never answered 200")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture(scope="module")
def exported(tiny_bert, tmp_path_factory):
    from pipeline.config import ModelConfig, VariantConfig
    from pipeline.model.export import export
    from pipeline.model.sources import resolve

    cfg = ModelConfig(name="tiny-bert", source="local", path=str(tiny_bert), max_length=64, sha256=None)
    return export(resolve(cfg), cfg, VariantConfig(), tmp_path_factory.mktemp("cache")).folder


@pytest.fixture(scope="module")
def embedder(exported):
    from pipeline.embedder.embed import Embedder

    return Embedder(exported, max_length=64, threads=1)


@pytest.fixture(scope="module")
def served(exported):
    from pipeline.embedder.embed import Embedder

    srv = Running(lambda: Embedder(exported, max_length=64, threads=1), front=Front(max_batch=8, max_wait_ms=2))
    yield srv
    srv.stop()


def _sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 12)))


def test_an_openai_client_gets_the_embedder_s_vectors(served, embedder):
    from openai import OpenAI

    client = OpenAI(base_url=served.url + "/v1", api_key="unused", max_retries=0)
    texts = ["a dog runs in the field", "red", "two people are talking near the old tree"]
    want = embedder.embed(texts)
    for fmt in ({"encoding_format": "float"}, {}):  # without one, the client asks for base64 and decodes it
        got = client.embeddings.create(model="whatever", input=texts, **fmt)
        assert [d.index for d in got.data] == [0, 1, 2] and got.model == "tiny"
        np.testing.assert_allclose(np.array([d.embedding for d in got.data]), want, atol=1e-5)
        assert got.usage.prompt_tokens == sum(embedder.token_counts(texts)) > 0
    one = client.embeddings.create(model="tiny", input="red")
    np.testing.assert_allclose(one.data[0].embedding, want[1], atol=1e-5)


def test_the_exact_json_an_openai_client_sends_is_answered_in_openai_s_shape(served, embedder):
    status, _, body = _call(served.url + "/v1/embeddings", {"input": ["red"], "model": "tiny", "encoding_format": "base64"})
    assert status == 200 and body["object"] == "list" and body["data"][0]["object"] == "embedding"
    vec = np.frombuffer(base64.b64decode(body["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(vec, embedder.embed(["red"])[0], atol=1e-5)
    assert set(body["usage"]) == {"prompt_tokens", "total_tokens"}


def test_every_response_matches_its_request_under_concurrent_load(served, embedder):
    rng = random.Random(3)
    requests = [[_sentence(rng) for _ in range(rng.randint(1, 3))] for _ in range(240)]

    def one(texts):
        status, _, body = _call(served.url + "/v1/embeddings", {"input": texts, "model": "tiny"})
        assert status == 200, body
        return np.array([d["embedding"] for d in sorted(body["data"], key=lambda d: d["index"])])

    with ThreadPoolExecutor(16) as pool:
        got = list(pool.map(one, requests))
    for texts, vecs in zip(requests, got):
        np.testing.assert_allclose(vecs, embedder.embed(texts), atol=1e-5)


class Gated:
    """A fake embedder (dim 2) whose calls wait for ``gate``; records the texts of each call."""

    dim = 2

    def __init__(self):
        self.gate, self.calls = threading.Event(), []

    def embed(self, texts):
        self.calls.append(list(texts))
        assert self.gate.wait(60)
        return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)


def test_a_full_queue_answers_503_with_retry_after_and_serves_again():
    fake = Gated()
    fake.gate.set()  # warm-up passes
    srv = Running(lambda: fake, front=Front(max_batch=1, max_wait_ms=0), limits=Limits(max_queue=2))
    try:
        fake.gate.clear()
        n_warm = len(fake.calls)
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(_call, srv.url + "/v1/embeddings", {"input": "aaaa"})
            while len(fake.calls) == n_warm:  # the worker holds it
                time.sleep(0.005)
            status, headers, body = _call(srv.url + "/v1/embeddings", {"input": ["b", "cc", "ddd"]})
            assert status == 503 and headers.get("retry-after") == "1", (status, headers)
            assert body["error"]["code"] == "queue_full"
            fake.gate.set()
            assert first.result(60)[0] == 200
        status, _, body = _call(srv.url + "/v1/embeddings", {"input": ["eeeee"]})
        assert status == 200 and body["data"][0]["embedding"] == [5.0, 1.0]
    finally:
        fake.gate.set()
        srv.stop()


@pytest.mark.parametrize(
    "payload, status, code",
    [
        ({"input": ["x"] * 5}, 413, "too_many_texts"),
        ({"input": ["y" * 51]}, 413, "text_too_long"),
        ({"input": []}, 422, "invalid_input"),
        ({"input": [1, 2]}, 422, "invalid_input"),
        ({"input": [[101, 102]]}, 422, "invalid_input"),
        ({"model": "tiny"}, 422, "missing_input"),
        ({"input": ["ok"], "encoding_format": "int8"}, 422, "invalid_encoding_format"),
        ({"input": ["ok", ""]}, 422, "empty_text"),
        (b"{not json", 422, "invalid_json"),
        (b"x" * 70_000, 413, "body_too_large"),  # over 4 texts of 50 chars, however escaped
    ],
)
def test_oversized_and_malformed_requests_get_clear_4xx(payload, status, code):
    fake = Gated()
    fake.gate.set()
    srv = Running(lambda: fake, limits=Limits(max_texts=4, max_chars=50))
    try:
        raw = payload if isinstance(payload, bytes) else None
        got, _, body = _call(srv.url + "/v1/embeddings", None if raw else payload, raw=raw)
        assert (got, body["error"]["code"]) == (status, code), body
        assert body["error"]["message"]
        assert _call(srv.url + "/v1/embeddings", {"input": ["fine"]})[0] == 200
    finally:
        srv.stop()


def _chunked(port: int, chunks: list[bytes]):
    """POST chunks with Transfer-Encoding: chunked (no Content-Length): (status, json body)."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", "/v1/embeddings", body=iter(chunks), headers={"Content-Type": "application/json"}, encode_chunked=True)
        r = conn.getresponse()
        return r.status, json.loads(r.read())
    finally:
        conn.close()


def test_a_streamed_body_is_read_whole_and_refused_once_past_the_limit():
    fake = Gated()
    fake.gate.set()
    srv = Running(lambda: fake, limits=Limits(max_texts=4, max_chars=50))
    try:
        status, body = _chunked(srv.port, [b'{"input": ', b'["abc",', b' "de"]}'])
        assert status == 200 and [d["embedding"] for d in body["data"]] == [[3.0, 1.0], [2.0, 1.0]]
        status, body = _chunked(srv.port, [b'{"input": ["'] + [b"z" * 8192] * 10 + [b'"]}'])  # no length to refuse it by
        assert (status, body["error"]["code"]) == (413, "body_too_large"), body
        status, headers, body = _call(srv.url + "/v1/embeddings", method="GET")
        assert (status, headers.get("allow"), body["error"]["code"]) == (405, "POST", "method_not_allowed")
        assert _call(srv.url + "/v1/models", method="GET")[0] == 200  # the other routes pass through
    finally:
        srv.stop()


def test_ready_only_once_the_model_is_loaded_and_warmed():
    fake, loading = Gated(), threading.Event()

    def load():
        assert loading.wait(60)
        return fake

    fake.gate.set()
    srv = Running(load, wait_ready=False)
    try:
        assert _call(srv.url + "/health", method="GET")[0] == 200
        status, headers, body = _call(srv.url + "/ready", method="GET")
        assert status == 503 and "loading" in body["reason"] and headers.get("retry-after")
        assert _call(srv.url + "/v1/embeddings", {"input": "x"})[2]["error"]["code"] == "not_ready"
        loading.set()
        srv._wait("/ready")
        assert fake.calls  # warmed before it said ready
    finally:
        loading.set()
        srv.stop()


def test_a_model_that_fails_to_load_is_never_ready():
    def load():
        raise FileNotFoundError("no model.onnx here")

    srv = Running(load, wait_ready=False)
    try:
        srv.app.state.server.loaded.wait(30)
        status, _, body = _call(srv.url + "/ready", method="GET")
        assert status == 503 and "no model.onnx here" in body["reason"]
    finally:
        srv.stop()


def test_overload_answers_every_request_right_or_503(exported, embedder):
    """Far past saturation with a small queue: each answer is its own vectors or a 503; none lost, none mixed up."""
    from pipeline.embedder.embed import Embedder

    srv = Running(lambda: Embedder(exported, max_length=64, threads=1), front=Front(max_batch=4, max_wait_ms=1), limits=Limits(max_queue=6))
    rng = random.Random(5)
    requests = [[_sentence(rng) for _ in range(rng.randint(1, 3))] for _ in range(300)]
    try:
        with ThreadPoolExecutor(32) as pool:
            answers = list(pool.map(lambda t: _call(srv.url + "/v1/embeddings", {"input": t}), requests))
    finally:
        srv.stop()
    codes = [a[0] for a in answers]
    assert set(codes) <= {200, 503} and codes.count(200) > 0
    for texts, (status, headers, body) in zip(requests, answers):
        if status == 503:
            assert body["error"]["code"] == "queue_full" and headers.get("retry-after")
        else:
            vecs = np.array([d["embedding"] for d in sorted(body["data"], key=lambda d: d["index"])])
            np.testing.assert_allclose(vecs, embedder.embed(texts), atol=1e-5)


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def test_pipeline_serve_starts_from_a_folder_and_sigterm_answers_what_it_accepted(exported, embedder, tmp_path):
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "serve.log", "w")
    # a long max_wait keeps the accepted requests queued when SIGTERM comes
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline",
            "serve",
            "--folder",
            str(exported),
            "--max-length",
            "64",
            "--threads",
            "1",
            "--port",
            str(port),
            "--max-batch",
            "64",
            "--max-wait-ms",
            "4000",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=_env(),
        cwd=tmp_path,
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if _call(url + "/ready", method="GET", timeout=2)[0] == 200:
                    break
            except OSError:
                time.sleep(0.2)
        texts = [f"{w} dog" for w in WORDS[:8]]
        with ThreadPoolExecutor(8) as pool:
            futs = [pool.submit(_call, url + "/v1/embeddings", {"input": t}) for t in texts]
            time.sleep(1.5)  # accepted, waiting in the batcher (a loaded machine may take a while to accept)
            proc.send_signal(signal.SIGTERM)
            answers = [f.result(60) for f in futs]
        assert [a[0] for a in answers] == [200] * 8
        got = np.array([a[2]["data"][0]["embedding"] for a in answers])
        np.testing.assert_allclose(got, embedder.embed(texts), atol=1e-5)
        assert proc.wait(60) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has shut down
        out = (tmp_path / "serve.log").read_text()
        assert f"serving {exported.name}" in out and "ready in" in out and "max_batch=64" in out
        assert "stopped: 8 texts embedded, 0 failed" in out  # the batcher drained before the process ended
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _record(records, exported, run_id: str) -> None:
    from pipeline.tracking.records import RunRecord, save

    rec = RunRecord(
        record_id="r1",
        run_name="tiny/fp32",
        status="ok",
        mlflow_run_id=run_id,
        params={
            "pooling.mode": "cls",
            "model.max_length": "64",
            "provider.ep": "CPUExecutionProvider",
            "provider.threads": "1",
            "model.padding_side": "right",
            "model.query_prefix": "",
        },
        tags={"artifact.folder": str(exported), "artifact.onnx_file": "model.onnx"},
        metrics={"latency.p95_ms": 4.0},
    )
    save(records / "r1", rec)


def test_the_decision_s_winner_is_what_is_served(exported, tmp_path):
    records = tmp_path / "runs"
    _record(records, exported, "abc123")
    decision = tmp_path / "decision.json"
    decision.write_text(
        json.dumps(
            {
                "verdict": "go",
                "winner": {
                    "run_id": "abc123",
                    "label": "tiny/fp32/cls",
                    "verdict": "go",
                    "metrics": {"latency.p50_ms": 1.5, "quality.stsb_spearman": 80.1},
                },
            }
        )
    )
    t = from_decision(decision, records)
    assert t.embedder["model_dir"] == str(exported) and t.embedder["pooling"] == "cls" and t.embedder["max_length"] == 64
    line = t.describe()
    assert "tiny/fp32/cls" in line and "p50 1.50 ms" in line and "p95 4.00 ms" in line and "STS 80.10" in line
    args = _parser().parse_args(["--decision", str(decision), "--records-dir", str(records), "--threads", "3"])
    over = target_of(args)  # explicit settings override the run's
    assert over.embedder["threads"] == 3 and over.embedder["pooling"] == "cls" and "threads=3" in over.describe()
    decision.write_text(json.dumps({"verdict": "no-go", "winner": None}))
    with pytest.raises(TargetError, match="no winner"):
        from_decision(decision, records)


def test_a_missing_decision_or_model_is_a_config_error(tmp_path, capsys):
    assert main(["--decision", str(tmp_path / "none.json"), "--records-dir", str(tmp_path)]) == Exit.CONFIG
    assert main(["--folder", str(tmp_path)]) == Exit.CONFIG
    assert main(["--folder", str(tmp_path), "--max-batch", "0"]) == Exit.CONFIG
    err = capsys.readouterr().err
    assert "cannot read the decision" in err and "no model.onnx" in err


def test_the_served_session_stops_spinning_by_default_and_flags_override_it(exported, capsys):
    t = target_of(_parser().parse_args(["--folder", str(exported)]))
    assert t.embedder["session_config"] == {"session.force_spinning_stop": "1"}
    assert "session.force_spinning_stop=1" in t.describe()
    flags = ["--folder", str(exported), "--session-config", "session.force_spinning_stop=0"]
    t = target_of(_parser().parse_args([*flags, "--session-config", "session.intra_op.allow_spinning=0"]))
    assert t.embedder["session_config"] == {"session.force_spinning_stop": "0", "session.intra_op.allow_spinning": "0"}
    from pipeline.embedder.embed import Embedder

    emb = Embedder(**t.embedder)  # the entries reach ONNX Runtime's session, which takes them
    assert emb.embed(["a sentence"]).shape[0] == 1
    assert main(["--folder", str(exported), "--session-config", "no-equals-sign"]) == Exit.CONFIG
    assert "KEY=VALUE" in capsys.readouterr().err
