"""One contender of benchmarks/serving.py as a server in its own process (and environment).

    python benchmarks/_serving_server.py SPEC.json

A server, not a request/reply child of pipeline.core.child: benchmarks/serving.py starts it with
``pipeline.core.child.start`` (its own process group, which dies with the parent), waits for its
HTTP ``/ready``, reads the service times it wrote, and ends it with SIGTERM (its group killed when
it does not end).  The service times are measured here, in the process that then serves.

SPEC: ``{"kind": <a builder of _peer_worker.py>, ...its settings, "root": REPO, "name": NAME,
"front": {"max_batch": 16, "max_wait_ms": 2, "loop": "auto" | "uvloop" | "asyncio"}, "http_port": P, "tcp_port": Q,
"sentences": FILE, "service_calls": 300, "service_out": FILE}``.

It builds the contender's ``embed(texts)``, times ``service_calls`` single-text calls (the
service time, written to ``service_out``), then serves it through the project's server
(pipeline.serving.app: FastAPI + uvicorn, the micro-batching front with the given ``max_batch`` /
``max_wait_ms``) on 127.0.0.1:P, and through the same front's batcher over a bare TCP protocol
on 127.0.0.1:Q (the process-level variant: no HTTP stack):

    request:  !II  (id, n) + n bytes of UTF-8 text
    reply:    !IIB (id, n, status 0 ok / 1 error) + n bytes (the float32 vector, or the error text)
"""

from __future__ import annotations

import asyncio
import json
import struct
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
REQ, REP = struct.Struct("!II"), struct.Struct("!IIB")


class Contender:
    """``embed(texts) -> (n, dim)`` over a builder of _peer_worker.py."""

    def __init__(self, spec: dict):
        from _peer_worker import BUILDERS

        self.fn, self.info = BUILDERS[spec["kind"]](spec)
        self.dim = int(self.fn(["probe"], 1).shape[1])

    def embed(self, texts):
        return np.asarray(self.fn(list(texts), len(texts)), dtype=np.float32)


def build(spec: dict) -> Contender:
    c = Contender(spec)
    sentences = json.loads(Path(spec["sentences"]).read_text())
    for t in sentences[:20]:
        c.embed([t])
    ms = []
    for t in sentences[: int(spec.get("service_calls", 300))]:
        t0 = time.perf_counter_ns()
        c.embed([t])
        ms.append((time.perf_counter_ns() - t0) / 1e6)
    info = {**c.info, "event_loop": spec.get("event_loop")}
    Path(spec["service_out"]).write_text(json.dumps({"service_ms": ms, "info": info, "dim": c.dim}))
    return c


async def tcp_front(app, port: int):
    state = app.state.server

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        def reply(rid: int, fut) -> None:
            if fut.cancelled() or fut.exception() is not None:
                body, status = repr(None if fut.cancelled() else fut.exception()).encode(), 1
            else:
                body, status = np.asarray(fut.result(), dtype="<f4").tobytes(), 0
            writer.write(REP.pack(rid, len(body), status) + body)

        try:
            while True:
                rid, n = REQ.unpack(await reader.readexactly(REQ.size))
                text = (await reader.readexactly(n)).decode()
                try:
                    fut = state.batcher.submit_async(text)  # as pipeline.serving.app does
                except Exception as exc:
                    body = repr(exc).encode()
                    writer.write(REP.pack(rid, len(body), 1) + body)
                    continue
                fut.add_done_callback(lambda f, rid=rid: reply(rid, f))
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", port)


async def serve(spec: dict) -> None:
    import uvicorn

    sys.path.insert(0, spec["root"])
    from pipeline.serving.app import Front, Limits, create_app

    f = spec["front"]
    spec["event_loop"] = type(asyncio.get_running_loop()).__module__  # asyncio's own, or uvloop
    app = create_app(
        lambda: build(spec),
        name=spec["name"],
        front=Front(int(f["max_batch"]), float(f["max_wait_ms"])),
        limits=Limits(max_texts=64, max_queue=1_000_000, timeout_ms=float(spec.get("timeout_ms", 60_000))),
    )
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=int(spec["http_port"]), log_level="warning", backlog=4096, timeout_keep_alive=600)
    )
    tcp = await tcp_front(app, int(spec["tcp_port"]))
    async with tcp:
        await server.serve()


def loop_factory(loop: str):
    """The event loop for ``loop``, as uvicorn's ``--loop`` picks it (``auto``: uvloop where it is
    installed, as ``pipeline serve``'s ``uvicorn.run`` does; ``uvloop``; ``asyncio``: the standard
    loop).  Chosen here, not through uvicorn's API, which differs across the versions in the peers'
    environments (``Config.get_loop_factory`` is uvicorn 0.36 and newer)."""
    if loop not in ("auto", "uvloop", "asyncio"):
        raise ValueError(f"unknown event loop {loop!r}: auto, uvloop or asyncio")
    if loop != "asyncio":
        try:
            import uvloop

            return uvloop.new_event_loop
        except ImportError:
            if loop == "uvloop":
                raise
    return asyncio.new_event_loop


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text())
    with asyncio.Runner(loop_factory=loop_factory(spec["front"].get("loop", "auto"))) as runner:
        runner.run(serve(spec))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
