"""The one load generator of benchmarks/serving.py, in its own process, for every contender.

A long-lived child of the package's one process protocol (pipeline.core.child: started by
``harness.worker`` as a ``Session``, one JSON request and one reply a line each on a pipe pair of
its own, never on stdout).  The requests:

    {"op": "texts", "file": PATH}                                   the sentences, sent in turn
    {"op": "target", "transport": "http" | "tcp", "port": P, "path": "/v1/embeddings", "model": NAME}
    {"op": "point", "rate": 100.0, "requests": 1000, "seed": 0, "timeout_s": 2.0}
        -> open loop: Poisson arrivals on a precomputed schedule, latency from each request's
           scheduled arrival (no coordinated omission); the point's summary and its latencies
    {"op": "closed", "requests": 300}  -> one request at a time: the service time over the transport

The clients and their connections live on one event loop for the whole session, running in a
thread of its own between requests as during them (a late reply is read when it comes); each
request is a coroutine run on it while the protocol's thread waits.  A failed request is that
request's error; the session ends when the parent closes it.

HTTP: a hand-written HTTP/1.1 client on asyncio streams, keep-alive, one connection per request
in flight (opened on demand, reused when free); the body is the OpenAI request for one text.
TCP: the bare protocol of benchmarks/_serving_server.py on one connection, requests pipelined.
A request not answered ``timeout_s`` after the last arrival is lost (counted at that latency).
"""

from __future__ import annotations

import asyncio
import json
import struct
import threading
import time
from collections import deque

import numpy as np

REQ, REP = struct.Struct("!II"), struct.Struct("!IIB")


class Http:
    def __init__(self, port: int, path: str, model: str):
        self.port, self.path, self.model = port, path, model
        self.idle: deque = deque()

    async def _conn(self):
        return self.idle.popleft() if self.idle else await asyncio.open_connection("127.0.0.1", self.port)

    async def one(self, text: str) -> int:
        body = json.dumps({"input": [text], "model": self.model, "encoding_format": "float"}).encode()
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        reader, writer = await self._conn()
        writer.write(head + body)
        status = int((await reader.readline()).split()[1])
        length, close = 0, False
        while (line := await reader.readline()) not in (b"\r\n", b""):
            k, _, v = line.decode("latin-1").partition(":")
            if k.lower() == "content-length":
                length = int(v)
            elif k.lower() == "connection" and v.strip().lower() == "close":
                close = True
        if length:
            await reader.readexactly(length)
        if close:
            writer.close()
        else:
            self.idle.append((reader, writer))
        return status

    async def close(self) -> None:
        while self.idle:
            self.idle.popleft()[1].close()


class Tcp:
    def __init__(self, port: int):
        self.port, self.pending, self.next_id = port, {}, 0
        self.writer = self.task = None

    async def open(self) -> None:
        reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.task = asyncio.ensure_future(self._read(reader))

    async def _read(self, reader) -> None:
        while True:
            rid, n, status = REP.unpack(await reader.readexactly(REP.size))
            await reader.readexactly(n)
            fut = self.pending.pop(rid, None)
            if fut is not None and not fut.done():
                fut.set_result(200 if status == 0 else 500)

    async def one(self, text: str) -> int:
        if self.writer is None:
            await self.open()
        rid, self.next_id = self.next_id, self.next_id + 1
        fut = asyncio.get_running_loop().create_future()
        self.pending[rid] = fut
        data = text.encode()
        self.writer.write(REQ.pack(rid, len(data)) + data)
        return await fut

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        if self.writer is not None:
            self.writer.close()
        self.writer = self.task = None


async def point(client, texts: list[str], rate: float, n: int, seed: int, timeout_s: float) -> dict:
    offsets = np.cumsum(np.random.default_rng(seed).exponential(1.0 / rate, n))
    pc = time.perf_counter
    sched, sent, done = np.zeros(n), np.zeros(n), np.full(n, np.nan)
    status = np.zeros(n, dtype=np.int32)
    cpu0 = time.process_time()

    async def one(i: int) -> None:
        try:
            status[i] = await client.one(texts[i % len(texts)])
        except Exception:
            status[i] = -1
        done[i] = pc()

    t0 = pc() + 0.05
    sched[:] = t0 + offsets
    tasks = []
    for i in range(n):
        d = sched[i] - pc()
        if d > 0:
            await asyncio.sleep(d)
        sent[i] = pc()
        tasks.append(asyncio.ensure_future(one(i)))
    _, pending = await asyncio.wait(tasks, timeout=timeout_s)
    for t in pending:
        t.cancel()
    end = pc()
    return summarize(sched, sent, done, status, t0, end, timeout_s, rate, time.process_time() - cpu0)


def summarize(sched, sent, done, status, t0, end, timeout_s, rate, cpu_s) -> dict:
    lost = np.isnan(done)
    ok = (status == 200) & ~lost
    lat = np.where(lost, np.maximum(end - sched, timeout_s), done - sched) * 1e3
    lat[~ok & ~lost] = np.maximum(lat[~ok & ~lost], timeout_s * 1e3)  # a refused or failed request: as bad as lost
    p50, p95, p99 = np.percentile(lat, [50, 95, 99])
    span = (np.nanmax(done[ok]) - t0) if ok.any() else (end - t0)
    return {
        "offered_qps": rate,
        "requests": int(len(sched)),
        "ok": int(ok.sum()),
        "lost": int(lost.sum()),
        "failed": int((~ok & ~lost).sum()),
        "refused": int((status == 503).sum()),
        "achieved_qps": float(ok.sum() / span),
        "p50_ms": float(p50),
        "p95_ms": float(p95),
        "p99_ms": float(p99),
        "lag_p99_ms": float(np.percentile((sent - sched) * 1e3, 99)),
        "generator_cpu_s": cpu_s,
        "latencies_ms": [round(float(x), 3) for x in lat],
    }


async def closed(client, texts: list[str], n: int) -> list[float]:
    ms = []
    for i in range(n):
        t0 = time.perf_counter_ns()
        await client.one(texts[i % len(texts)])
        ms.append((time.perf_counter_ns() - t0) / 1e6)
    return ms


class Generator:
    """What the load generator keeps between requests: the texts, the client of the current target
    (its connections open) and the event loop they live on."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.client = None
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="load-generator", daemon=True)
        self.thread.start()

    def run(self, coro):
        """Run ``coro`` on the generator's loop; its result (this thread waits)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def handle(self, msg: dict) -> dict:
        """The reply to one request (pipeline.core.child.serve's handler)."""
        op = msg["op"]
        if op == "texts":
            with open(msg["file"], encoding="utf-8") as f:
                self.texts = json.loads(f.read())
            return {"ok": True, "n": len(self.texts)}
        if op == "target":
            self.run(self.target(msg))
            return {"ok": True}
        if op == "point":
            return self.run(
                point(
                    self.client,
                    self.texts,
                    float(msg["rate"]),
                    int(msg["requests"]),
                    int(msg.get("seed", 0)),
                    float(msg.get("timeout_s", 2.0)),
                )
            )
        if op == "closed":
            return {"ms": self.run(closed(self.client, self.texts, int(msg["requests"])))}
        raise ValueError(f"unknown op {op!r}")

    async def target(self, msg: dict) -> None:
        if self.client is not None:
            await self.client.close()
        self.client = (
            Http(msg["port"], msg.get("path", "/v1/embeddings"), msg.get("model", "")) if msg["transport"] == "http" else Tcp(msg["port"])
        )

    async def _end(self) -> None:
        if self.client is not None:
            await self.client.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:  # requests still in flight past a point's timeout, the TCP reader
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def close(self) -> None:
        """Close the connections, end the loop."""
        self.run(self._end())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


if __name__ == "__main__":  # python -m _serving_load --session R W (harness.worker: this folder and the root on its path)
    from pipeline.core import child

    gen = Generator()
    code = child.serve(gen.handle)
    gen.close()
    raise SystemExit(code)
