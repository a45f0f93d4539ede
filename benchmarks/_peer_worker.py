"""One contender of benchmarks/peers_best.py, in its own process (and its own environment).

A long-lived child of the package's one process protocol (pipeline.core.child: started by
``harness.worker`` as a ``Session``, one JSON request and one reply a line each on a pipe pair of
its own, never on stdout; what libraries print goes to its log).  The requests:

    {"op": "ping"}  -> {"ok": true, "python": ..., "pipeline": [...]}   no model: who answers, and
                                                   which modules of pipeline it imported
    {"op": "start", "kind": "ours" | "st" | "fastembed" | "optimum" | "ct2" | "infinity", ...}
        -> {"ok": true, "info": {...}}            (versions, what really runs)
    {"op": "texts", "name": "corpus", "file": PATH}   a JSON list of sentences, kept by name
    {"op": "single", "texts": NAME, "n": 100, "warm": 5}
        -> {"ms": [...]}                           one sentence per call, timed here
    {"op": "batches", "name": "equal", "file": PATH}  a JSON list of index lists, kept by name
    {"op": "corpus", "texts": NAME, "batch_size": 32, "save": PATH | null}
        -> {"s": seconds}                          as shipped: all sentences in one embed call
                                                   (the library batches them its own way); the
                                                   embeddings go to PATH (.npy) when asked
    {"op": "corpus", "texts": NAME, "batches": NAME, "save": ...}
        -> {"s": seconds}                          the same batches for every contender: one
                                                   embed call per given batch, vectors put back
                                                   in input order

A failed request is that request's error (the parent's ``ChildFailed``); the session ends when the
parent closes it.  Timing happens inside this process (no pipe in the timed part).  Each builder
imports only what its library needs, so this file runs in any of the peer environments, with the
repository root on its path for pipeline.core.child (standard library only); nothing else of
pipeline is imported but by ``build_ours`` (our embedder; the root comes in its start message too).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np


def _unit(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = mask[..., None].astype(np.float32)
    return (np.asarray(hidden, dtype=np.float32) * m).sum(1) / np.maximum(m.sum(1), 1e-9)


def _versions(*names: str) -> dict:
    from importlib import metadata

    out = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            pass
    return out


# -- builders: spec -> (embed(texts, batch_size) -> unit vectors, info) -------------------------
def build_ours(s: dict):
    sys.path.insert(0, s["root"])
    from pipeline.embedder.embed import Embedder

    opts = dict(s.get("provider_options") or {})
    if "load_config" in opts and not isinstance(opts["load_config"], str):
        opts["load_config"] = json.dumps(opts["load_config"])
    provider = s.get("provider", "CPUExecutionProvider")
    emb = Embedder(
        s["folder"],
        onnx_file=s.get("onnx_file", "model.onnx"),
        pooling="mean",
        threads=s["threads"],
        max_length=s["max_length"],
        provider=provider,
        provider_options=opts or None,
        session_config=s.get("session_config") or None,
        **({"call_cost": s["call_cost"]} if "call_cost" in s else {}),
    )
    info = {
        "versions": _versions("onnxruntime", "onnxruntime-openvino", "openvino", "numpy", "tokenizers"),
        "providers": emb.session.get_providers(),
        "provider_options": opts,
        "call_cost": emb.call_cost,
        "session_config": s.get("session_config") or {},
    }
    return (lambda texts, bs: emb.embed(texts, batch_size=bs)), info


def build_st(s: dict):
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(s["threads"])
    backend = s.get("backend", "torch")
    kwargs = dict(s.get("model_kwargs") or {})
    model = SentenceTransformer(s["folder"], backend=backend, device="cpu", local_files_only=True, model_kwargs=kwargs or None)
    info = {
        "versions": _versions(
            "sentence-transformers", "torch", "transformers", "onnxruntime", "openvino", "optimum-intel", "optimum", "optimum-onnx", "nncf"
        )
    }
    tm = model[0].auto_model if hasattr(model[0], "auto_model") else None
    if backend == "openvino":
        try:
            compiled = tm.request if hasattr(tm.request, "get_property") else tm.request.get_compiled_model()
            info["ov_inference_precision"] = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
            info["ov_threads"] = int(compiled.get_property("INFERENCE_NUM_THREADS"))
        except Exception as exc:  # recorded, not hidden
            info["ov_inference_precision"] = f"unknown ({type(exc).__name__}: {exc})"
    if backend == "torch":
        info["torch_dtype"] = str(next(model.parameters()).dtype)

    def embed(texts, bs):
        with torch.inference_mode():
            return _unit(model.encode(texts, batch_size=bs, normalize_embeddings=True, convert_to_numpy=True))

    return embed, info


def _ort_options(s: dict):
    """onnxruntime's own SessionOptions for a peer that takes them: threads as everyone's, and the
    spec's ``session_config`` entries (the same as ours gets, where a benchmark gives any)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = s["threads"]
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    for k, v in (s.get("session_config") or {}).items():
        so.add_session_config_entry(str(k), str(v))
    return so


def build_st_onnx(s: dict):
    """sentence-transformers with backend="onnx": the session options must be onnxruntime's own
    object, made here (threads as everyone's)."""
    from sentence_transformers import SentenceTransformer

    so = _ort_options(s)
    kwargs = {"file_name": s["file_name"], "provider": "CPUExecutionProvider", "session_options": so}
    model = SentenceTransformer(s["folder"], backend="onnx", device="cpu", local_files_only=True, model_kwargs=kwargs)
    info = {"versions": _versions("sentence-transformers", "onnxruntime", "optimum", "optimum-onnx"), "file": s["file_name"]}
    return (lambda texts, bs: _unit(model.encode(texts, batch_size=bs, normalize_embeddings=True, convert_to_numpy=True))), info


def build_fastembed(s: dict):
    from fastembed import TextEmbedding
    from fastembed.common.model_description import ModelSource, PoolingType

    name = "local/all-MiniLM-L6-v2-peers"
    TextEmbedding.add_custom_model(
        model=name, pooling=PoolingType.MEAN, normalization=True, sources=ModelSource(hf=name), dim=s["dim"], model_file=s["onnx_file"]
    )
    model = TextEmbedding(name, specific_model_path=s["folder"], threads=s["threads"], local_files_only=True)
    info = {"versions": _versions("fastembed", "onnxruntime", "numpy", "tokenizers")}
    return (lambda texts, bs: _unit(np.stack(list(model.embed(texts, batch_size=bs))))), info


def build_optimum(s: dict):
    from optimum.onnxruntime import ORTModelForFeatureExtraction
    from transformers import AutoTokenizer

    so = _ort_options(s)
    model = ORTModelForFeatureExtraction.from_pretrained(
        s["folder"], file_name=s["onnx_file"], provider="CPUExecutionProvider", session_options=so
    )
    tok = AutoTokenizer.from_pretrained(s["tokenizer_folder"])

    def embed(texts, bs):
        out = []
        for i in range(0, len(texts), bs):
            enc = tok(texts[i : i + bs], padding=True, truncation=True, max_length=s["max_length"], return_tensors="np")
            out.append(_mean_pool(model(**enc).last_hidden_state, enc["attention_mask"]))
        return _unit(np.concatenate(out))

    return embed, {"versions": _versions("optimum", "optimum-onnx", "onnxruntime", "transformers"), "file": s["onnx_file"]}


def build_ct2(s: dict):
    import ctranslate2
    from tokenizers import Tokenizer

    supported = sorted(ctranslate2.get_supported_compute_types("cpu"))
    if s["compute_type"] not in supported:
        raise RuntimeError(
            f"compute type {s['compute_type']} is not supported on this CPU by ctranslate2 {ctranslate2.__version__} (supported: {', '.join(supported)})"
        )
    enc = ctranslate2.Encoder(s["folder"], device="cpu", compute_type=s["compute_type"], intra_threads=s["threads"], inter_threads=1)
    tok = Tokenizer.from_file(os.path.join(s["tokenizer_folder"], "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(s["max_length"])

    def embed(texts, bs):
        encs = [tok.encode(texts[0])] if len(texts) == 1 else tok.encode_batch(texts)
        ids = [e.ids for e in encs]
        out = []
        for i in range(0, len(ids), bs):
            chunk = ids[i : i + bs]
            res = enc.forward_batch(chunk)
            hidden = res.last_hidden_state
            if str(hidden.dtype) != "DataType.float32":  # numpy has no bfloat16 / float16 here
                hidden = hidden.to(ctranslate2.DataType.float32)
            hidden = np.asarray(hidden)
            width = hidden.shape[1]
            mask = np.zeros((len(chunk), width), dtype=np.float32)
            for r, row in enumerate(chunk):
                mask[r, : len(row)] = 1
            out.append(_mean_pool(hidden, mask))
        return _unit(np.concatenate(out))

    return embed, {
        "versions": _versions("ctranslate2", "tokenizers"),
        "compute_type": s["compute_type"],
        "supported_compute_types": supported,
    }


def build_infinity(s: dict):
    import asyncio
    import threading

    if s.get("hf_hub_cache"):  # where its optimum engine keeps its optimized graph: this contender's own
        os.environ["HF_HUB_CACHE"] = s["hf_hub_cache"]
    import torch
    from infinity_emb import AsyncEngineArray, EngineArgs

    torch.set_num_threads(s["threads"])
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    model = s["folder"]
    if s.get("engine") == "optimum":
        # infinity's optimum engine globs the model folder for *.onnx and hands the path it found to
        # Optimum as file_name; from an absolute folder that path is absolute, which Optimum 2 refuses.
        # Named relatively ("." from inside the folder), the path is "model.onnx", a bare name Optimum matches.
        os.chdir(s["folder"])
        model = "."
    args = EngineArgs(
        model_name_or_path=model,
        engine=s.get("engine", "torch"),
        device="cpu",
        batch_size=s["batch_size"],
        bettertransformer=False,
        compile=False,
        model_warmup=False,
        trust_remote_code=False,
        **({"pooling_method": s["pooling_method"]} if s.get("pooling_method") else {}),
    )
    engine = AsyncEngineArray.from_args([args])[0]
    asyncio.run_coroutine_threadsafe(engine.astart(), loop).result(600)

    def embed(texts, bs):
        vecs, _ = asyncio.run_coroutine_threadsafe(engine.embed(sentences=list(texts)), loop).result(600)
        return _unit(np.stack([np.asarray(v, dtype=np.float32) for v in vecs]))

    info = {
        "versions": _versions("infinity-emb", "torch", "sentence-transformers", "numpy", "optimum", "onnxruntime"),
        "engine": s.get("engine", "torch"),
    }
    if s.get("engine") == "optimum":  # whether its own optimization pass left a graph (it fails on Optimum 2)
        info["onnx_files"] = sorted(str(p) for p in Path(os.environ.get("HF_HUB_CACHE", "/nonexistent")).glob("infinity_onnx/**/*.onnx"))
    return embed, info


BUILDERS = {
    "ours": build_ours,
    "st": build_st,
    "st-onnx": build_st_onnx,
    "fastembed": build_fastembed,
    "optimum": build_optimum,
    "ct2": build_ct2,
    "infinity": build_infinity,
}


class Worker:
    """What the contender keeps between requests: its embed function, the texts and batches by name."""

    def __init__(self) -> None:
        self.embed = None
        self.texts: dict[str, list[str]] = {}
        self.batches: dict[str, list[list[int]]] = {}

    def handle(self, msg: dict) -> dict:
        """The reply to one request (pipeline.core.child.serve's handler); an error fails only this request."""
        op = msg["op"]
        if op == "ping":
            return {
                "ok": True,
                "python": sys.executable,
                "pid": os.getpid(),
                "pipeline": sorted(m for m in sys.modules if m == "pipeline" or m.startswith("pipeline.")),
            }
        if op == "start":
            t0 = time.perf_counter()
            self.embed, info = BUILDERS[msg["kind"]](msg)
            info["load_s"] = time.perf_counter() - t0
            info["python"] = sys.executable
            return {"ok": True, "info": info}
        if op == "texts":
            with open(msg["file"], encoding="utf-8") as f:
                self.texts[msg["name"]] = json.load(f)
            return {"ok": True, "n": len(self.texts[msg["name"]])}
        if op == "batches":
            with open(msg["file"], encoding="utf-8") as f:
                self.batches[msg["name"]] = json.load(f)
            return {"ok": True, "n": len(self.batches[msg["name"]])}
        if op == "single":
            return {"ms": self.single(msg)}
        if op == "corpus":
            return {"s": self.corpus(msg)}
        raise ValueError(f"unknown op {op!r}")

    def single(self, msg: dict) -> list[float]:
        embed, pc = self.embed, time.perf_counter_ns
        pool = self.texts[msg["texts"]][: msg["n"]]
        for t in pool[: msg.get("warm", 5)]:  # warm again after the other contenders ran
            embed([t], 1)
        ms = []
        for t in pool:
            t0 = pc()
            embed([t], 1)
            ms.append((pc() - t0) / 1e6)
        return ms

    def corpus(self, msg: dict) -> float:
        embed = self.embed
        corpus = self.texts[msg["texts"]]
        if msg.get("batches"):
            plan = self.batches[msg["batches"]]
            parts = [[corpus[i] for i in b] for b in plan]
            t0 = time.perf_counter()
            outs = [embed(part, len(part)) for part in parts]
            seconds = time.perf_counter() - t0
            vecs = np.empty((len(corpus), outs[0].shape[1]), dtype=np.float32)
            for b, out in zip(plan, outs):
                vecs[b] = out
        else:
            t0 = time.perf_counter()
            vecs = embed(corpus, msg["batch_size"])
            seconds = time.perf_counter() - t0
        if vecs.shape[0] != len(corpus):
            raise RuntimeError(f"{vecs.shape[0]} vectors for {len(corpus)} sentences")
        if msg.get("save"):
            np.save(msg["save"], np.asarray(vecs, dtype=np.float32))
        return seconds


if __name__ == "__main__":  # python -m _peer_worker --session R W (harness.worker: this folder and the root on its path)
    from pipeline.core import child

    code = child.serve(Worker().handle)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # no interpreter teardown: thread pools (torch, OpenVINO, infinity's loop) can hang it
