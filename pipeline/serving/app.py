"""``pipeline serve``: the chosen configuration behind an OpenAI-compatible ``POST /v1/embeddings``.

    pipeline serve                                   # the winner of reports/latest/decision.json
    pipeline serve --run-id 3f2a...                  # one run's configuration (records, else MLflow)
    pipeline serve --folder path/to/export --pooling mean --max-length 256
    python -m pipeline.serving.app ...                    # the same

Routes: ``POST /v1/embeddings`` (``input``: a string or a list of strings; ``model``: echoed
back as the served name; ``encoding_format``: ``float`` or ``base64``, little-endian float32
as OpenAI's), ``GET /health`` (the process answers), ``GET /ready`` (200 once the model is
loaded and warmed, 503 before and while shutting down), ``GET /v1/models``.

Requests go through the micro-batching front (:class:`pipeline.embedder.batcher.Batcher`).  Its queue is
bounded (``--max-queue`` texts): a request that does not fit is answered 503 with
``Retry-After``.  Limits: more than ``--max-texts`` texts, a text over ``--max-chars``
characters, or a body over what those allow: 413; a malformed body: 422; errors are JSON
``{"error": {"message", "type", "code"}}`` as OpenAI's.  SIGTERM/SIGINT: uvicorn stops
accepting connections, the requests already accepted are answered (up to ``--graceful-s``),
then the batcher drains and closes.

ONNX Runtime's session gets :data:`SESSION_CONFIG` unless ``--session-config KEY=VALUE`` says
otherwise: its intra-op threads stop spinning when a run ends instead of burning a core until
the next one, which under load is CPU that the batcher, the tokenizer and the HTTP stack need
(benchmarks/serving.py gives every ONNX Runtime contender the same; docs/serving.md).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import threading
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import numpy as np

from pipeline.core.errors import Exit
from pipeline.embedder.batcher import Batcher, Closed, QueueFull, RequestTimeout
from pipeline.serving.target import Target, TargetError, explicit, from_decision, from_run
from pipeline.serving.wire import ApiError, Limits, dumps, encode, error_body, read_body, texts_of

__all__ = ["Limits", "Front", "create_app", "main"]

log = logging.getLogger("pipeline.serving.app")
# the session config entries a served model gets by default: the intra-op threads stop spinning when
# a run ends; under load, a third less server CPU per request and a higher rate within the p95
# targets, for a slower single call on an idle server (benchmarks/serving_session.py; docs/serving.md)
SESSION_CONFIG = {"session.force_spinning_stop": "1"}
WARM_TEXTS = ["warm up", "a somewhat longer sentence to warm up the model with more tokens in it"]


@dataclass
class Front:
    max_batch: int = 16
    # no waiting: a batch is what queued while the worker was busy (under load the oldest request has
    # always waited past any wait; idle, a wait only adds latency: benchmarks/serving.py, docs/serving.md)
    max_wait_ms: float = 0.0
    workers: int = 1


class _State:
    """The model, its batcher and whether it is ready; loaded in a thread after the server listens."""

    def __init__(self, load: Callable[[], object], name: str, front: Front, limits: Limits, describe: str):
        self.load, self.name, self.front, self.limits, self.describe = load, name, front, limits, describe
        self.embedder = None
        self.batcher: Batcher | None = None
        self.ready = False
        self.failed: str | None = None
        self.loaded = threading.Event()

    def start(self) -> None:
        try:
            t0 = time.perf_counter()
            emb = self.load()
            for k in sorted({1, 2, min(self.front.max_batch, 8), self.front.max_batch}):
                emb.embed((WARM_TEXTS * k)[:k])  # every usual batch shape once, before readiness
            self.embedder = emb
            self.batcher = Batcher(
                emb,
                max_batch=self.front.max_batch,
                max_wait_ms=self.front.max_wait_ms,
                timeout_ms=self.limits.timeout_ms,
                max_queue=self.limits.max_queue,
                workers=self.front.workers,
                name="serve-batcher",
            )
            self.ready = True
            log.info(
                "ready in %.1f s: serving %s; front max_batch=%d max_wait_ms=%g, queue %d texts",
                time.perf_counter() - t0,
                self.describe,
                self.front.max_batch,
                self.front.max_wait_ms,
                self.limits.max_queue,
            )
        except Exception as exc:  # readiness stays 503 and says why
            self.failed = f"{type(exc).__name__}: {exc}"
            log.error("the model could not be loaded: %s", self.failed)
        finally:
            self.loaded.set()

    def stop(self) -> None:
        self.ready = False
        if self.batcher is not None:
            self.batcher.close(drain=True)
            st = self.batcher.stats
            log.info(
                "stopped: %d texts embedded, %d failed, %d timed out, %d refused (queue full)",
                st.embedded,
                st.failed,
                st.timed_out,
                st.refused,
            )


async def _embed(state: _State, texts: list[str]) -> list[np.ndarray]:
    futs = []
    try:
        for t in texts:
            futs.append(state.batcher.submit_async(t))
    except QueueFull:
        for f in futs:
            f.cancel()
        raise ApiError(
            503,
            f"the queue is full ({state.limits.max_queue} texts waiting); retry later",
            "server_overloaded",
            "queue_full",
            {"Retry-After": str(state.limits.retry_after_s)},
        ) from None
    except Closed:
        for f in futs:
            f.cancel()
        raise ApiError(503, "the server is shutting down", "server_unavailable", "shutting_down") from None
    try:
        return [await futs[0]] if len(futs) == 1 else await asyncio.gather(*futs)
    except RequestTimeout as exc:
        raise ApiError(504, f"not embedded in time: {exc}", "timeout", "timeout") from None
    except Closed as exc:
        raise ApiError(503, str(exc), "server_unavailable", "shutting_down") from None


class _EmbeddingsRoute:
    """``POST /v1/embeddings`` as a bare ASGI handler in front of the FastAPI app (every other
    request passes through to it).  FastAPI's request object, routing and response classes cost
    about as much CPU per request as the rest of the server's work on a small machine
    (benchmarks/serving.py; docs/serving.md), and this route needs none of them: it reads the
    body, parses it with orjson, and writes the answer in one call."""

    PATH = "/v1/embeddings"

    def __init__(self, app, state: _State):
        self.app, self.state = app, state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] != self.PATH:
            return await self.app(scope, receive, send)
        try:
            if scope["method"] != "POST":
                raise ApiError(
                    405,
                    f"{scope['method']} is not allowed here; POST a JSON body",
                    "invalid_request_error",
                    "method_not_allowed",
                    {"Allow": "POST"},
                )
            status, body, headers = 200, dumps(await _answer(self.state, scope, receive)), {}
        except ApiError as e:
            status, body, headers = e.status, dumps(error_body(e)), e.headers
        raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        raw += [(k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})


def create_app(load: Callable[[], object], *, name: str, front: Front | None = None, limits: Limits | None = None, describe: str = ""):
    """The ASGI app; ``load()`` builds the embedder (in a thread, after the server listens)."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    state = _State(load, name, front or Front(), limits or Limits(), describe or name)

    @asynccontextmanager
    async def lifespan(app):
        loading = asyncio.get_running_loop().run_in_executor(None, state.start)
        yield
        await loading
        await asyncio.get_running_loop().run_in_executor(None, state.stop)

    app = FastAPI(title="pipeline serve", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.server = state

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/ready")
    async def ready():
        if state.ready:
            return {"status": "ready", "model": state.name}
        why = f"the model failed to load: {state.failed}" if state.failed else "loading the model"
        return JSONResponse({"status": "not ready", "reason": why}, status_code=503, headers={"Retry-After": "1"})

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": state.name, "object": "model", "owned_by": "pipeline"}]}

    app.add_middleware(_EmbeddingsRoute, state=state)  # POST /v1/embeddings, before FastAPI's routing
    return app


async def _answer(state: _State, scope, receive) -> dict:
    import orjson

    if not state.ready:
        raise ApiError(503, "the model is not ready yet", "server_unavailable", "not_ready", {"Retry-After": "1"})
    raw = await read_body(state.limits, scope, receive)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ApiError(422, "the body is not JSON", "invalid_request_error", "invalid_json") from None
    texts, fmt = texts_of(body, state.limits)
    vecs = await _embed(state, texts)
    counts = getattr(state.embedder, "token_counts", None)
    tokens = int(sum(counts(texts))) if counts else 0
    return {
        "object": "list",
        "model": state.name,
        "data": [{"object": "embedding", "index": i, "embedding": encode(v, fmt)} for i, v in enumerate(vecs)],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pipeline serve", description="Serve a chosen configuration: OpenAI-compatible POST /v1/embeddings.")
    src = p.add_argument_group("what to serve (default: the winner of --decision)")
    src.add_argument("--decision", default="reports/latest/decision.json", help="a decision.json (default: %(default)s)")
    src.add_argument("--run-id", help="one run's configuration: its record in --records-dir, else MLflow")
    src.add_argument("--folder", help="an exported model folder, with the settings below (which also override a run's)")
    src.add_argument("--onnx-file", default=None)
    src.add_argument("--pooling", default=None, choices=["mean", "cls", "max", "last_token"])
    src.add_argument("--max-length", type=int, default=None)
    src.add_argument("--threads", type=int, default=None, help="intra-op threads (0: ONNX Runtime's default)")
    src.add_argument("--provider", default=None, help="an ONNX Runtime execution provider")
    src.add_argument(
        "--session-config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"an ONNX Runtime session config entry, repeatable (default: {', '.join(f'{k}={v}' for k, v in SESSION_CONFIG.items())})",
    )
    src.add_argument("--records-dir", default="reports/runs")
    src.add_argument("--tracking-uri", default=None)
    net = p.add_argument_group("server")
    net.add_argument("--host", default="127.0.0.1")
    net.add_argument("--port", type=int, default=8000)
    net.add_argument("--model-name", default=None, help="the name answered in 'model' (default: the configuration's label)")
    net.add_argument("--max-batch", type=int, default=16)
    net.add_argument(
        "--max-wait-ms", type=float, default=0.0, help="how long a batch waits to fill after its oldest text (0: batches form under load)"
    )
    net.add_argument("--workers", type=int, default=1, help="batcher worker threads")
    net.add_argument("--max-queue", type=int, default=1024, help="texts waiting; beyond: 503 with Retry-After")
    net.add_argument("--max-texts", type=int, default=256, help="texts per request; beyond: 413")
    net.add_argument("--max-chars", type=int, default=8192, help="characters per text; beyond: 413")
    net.add_argument("--timeout-ms", type=float, default=30_000, help="per text, from arrival; beyond: 504")
    net.add_argument("--graceful-s", type=float, default=30, help="on SIGTERM, how long accepted requests may take")
    return p


def target_of(args) -> Target:
    if args.folder:
        t = explicit(
            args.folder,
            onnx_file=args.onnx_file,
            pooling=args.pooling,
            max_length=args.max_length,
            threads=args.threads,
            provider=args.provider,
        )
        return _with_session_config(t, args.session_config)
    t = (
        from_run(args.run_id, args.records_dir, args.tracking_uri)
        if args.run_id
        else from_decision(args.decision, args.records_dir, args.tracking_uri)
    )
    given = {
        "onnx_file": args.onnx_file,
        "pooling": args.pooling,
        "max_length": args.max_length,
        "threads": args.threads,
        "provider": args.provider,
    }
    over = {k: v for k, v in given.items() if v is not None}
    if over:  # explicit settings win over the run's, and the line says so
        t.embedder.update(over)
        t.source += " with " + ", ".join(f"{k}={v}" for k, v in over.items())
    return _with_session_config(t, args.session_config)


def session_entries(entries) -> dict[str, str]:
    """``KEY=VALUE`` strings as session config entries (a TargetError, a ValueError, on a bad one)."""
    out = {}
    for e in entries or ():
        key, eq, value = e.partition("=")
        if not eq or not key.strip():
            raise TargetError(f"--session-config takes KEY=VALUE, not {e!r}")
        out[key.strip()] = value.strip()
    return out


def _with_session_config(t: Target, entries: list[str]) -> Target:
    """The serving defaults, under the target's own entries, under ``--session-config`` ones."""
    t.embedder["session_config"] = {**SESSION_CONFIG, **(t.embedder.get("session_config") or {}), **session_entries(entries)}
    return t


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        target = target_of(args)
        limits = Limits(args.max_texts, args.max_chars, args.max_queue, args.timeout_ms)
        front = Front(args.max_batch, args.max_wait_ms, args.workers)
        Batcher(
            lambda t: t,
            max_batch=front.max_batch,
            max_wait_ms=front.max_wait_ms,
            timeout_ms=limits.timeout_ms,
            max_queue=limits.max_queue,
            workers=front.workers,
        ).close()  # its settings refused now, not after loading
    except (TargetError, ValueError) as exc:
        print(f"pipeline serve: {exc}", file=sys.stderr)
        return Exit.CONFIG
    import uvicorn

    from pipeline.embedder.embed import Embedder

    log.info("serving %s on http://%s:%d", target.describe(), args.host, args.port)
    app = create_app(
        lambda: Embedder(**target.embedder), name=args.model_name or target.label, front=front, limits=limits, describe=target.describe()
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", timeout_graceful_shutdown=args.graceful_s)
    return Exit.OK if app.state.server.failed is None else Exit.FAILED


if __name__ == "__main__":
    sys.exit(main())
