"""A micro-batching front for the embedder: many callers, one inference call per batch.

An application that embeds one text per request (a web handler, a queue consumer) calls
:meth:`Batcher.submit` or :meth:`Batcher.embed` from any number of threads; a worker thread
takes the requests in arrival order, up to ``max_batch`` of them, or whatever has arrived
``max_wait_ms`` after the oldest one, and embeds them in one call (the embedder's own length
grouping applies).  Each caller gets its own vector.

    from pipeline.embed import Embedder
    from pipeline.serve import Batcher

    with Batcher(Embedder("path/to/onnx-folder", threads=2), max_batch=16, max_wait_ms=2) as b:
        vec = b.embed("one sentence")                  # (dim,) float32; blocks
        fut = b.submit("another", timeout_ms=50)       # concurrent.futures.Future
        vec2 = fut.result()                            # asyncio: await asyncio.wrap_future(fut)

``max_batch=1`` is one call per request (a FIFO queue in front of one worker): the baseline
that micro-batching is measured against.  ``max_wait_ms=0`` waits for nobody: a worker takes
whatever queued up while it was busy (batches form only under load).

Failures stay with their request: a text that makes the embed call raise fails only its own
future (the batch is retried one text at a time after a failed call).  A request still queued
past its ``timeout_ms`` is failed with :class:`RequestTimeout` and never embedded; with
``max_queue`` set, a request that finds the queue full is refused at once with
:class:`QueueFull` (load shedding).  The hot path is a deque and one condition variable.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from .exitcodes import PipelineError

__all__ = ["Batcher", "QueueFull", "RequestTimeout", "Closed", "BatcherStats"]


class QueueFull(PipelineError, RuntimeError):
    """The request was refused: ``max_queue`` requests were already waiting."""


class RequestTimeout(PipelineError, TimeoutError):
    """The request waited in the queue longer than its timeout and was not embedded."""


class Closed(PipelineError, RuntimeError):
    """The batcher is closed (or was closed without draining while the request waited)."""


@dataclass
class BatcherStats:
    requests: int = 0  # accepted by submit
    batches: int = 0  # embed calls on a batch (not counting one-at-a-time retries)
    embedded: int = 0  # requests that got a vector
    failed: int = 0  # requests whose embedding raised
    timed_out: int = 0  # requests dropped from the queue past their timeout
    refused: int = 0  # requests refused at submit (queue full)
    retried_batches: int = 0  # batches whose call raised and were retried one text at a time

    @property
    def mean_batch(self) -> float:
        return self.embedded / self.batches if self.batches else 0.0


class _Request:
    __slots__ = ("text", "future", "t", "deadline")

    def __init__(self, text: str, future: Future, t: float, deadline: float):
        self.text, self.future, self.t, self.deadline = text, future, t, deadline


class Batcher:
    """Queue single-text requests and embed them in batches on worker threads.

    Parameters
    ----------
    embedder: an :class:`pipeline.embed.Embedder` or any callable ``f(list[str]) -> (n, dim)``.
    max_batch: at most this many texts per embed call (1: one call per request).
    max_wait_ms: how long after the oldest queued request a worker waits for the batch to
        fill (0: take what is there).  Measured from that request's arrival, so a backlog
        is taken at once.
    timeout_ms: default per-request timeout (None: none): a request still queued after it is
        failed with :class:`RequestTimeout` instead of being embedded.
    max_queue: refuse requests beyond this many waiting (0: unbounded).
    workers: worker threads, each making its own embed calls (ONNX Runtime sessions accept
        concurrent calls; on a small machine one worker with all intra-op threads is best).
    """

    def __init__(
        self,
        embedder,
        *,
        max_batch: int = 16,
        max_wait_ms: float = 2.0,
        timeout_ms: float | None = None,
        max_queue: int = 0,
        workers: int = 1,
        name: str = "embed-batcher",
    ):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if max_queue < 0:
            raise ValueError(f"max_queue must be >= 0, got {max_queue}")
        if timeout_ms is not None and timeout_ms <= 0:
            raise ValueError(f"timeout_ms must be > 0 or None, got {timeout_ms}")
        fn = getattr(embedder, "embed", embedder)
        if not callable(fn):
            raise TypeError("embedder must be an Embedder or a callable(list[str]) -> array")
        self._embed: Callable[[list[str]], np.ndarray] = fn
        self.max_batch = int(max_batch)
        self.max_wait = float(max_wait_ms) / 1e3
        self.timeout = None if timeout_ms is None else float(timeout_ms) / 1e3
        self.max_queue = int(max_queue)
        self.stats = BatcherStats()
        self._q: deque[_Request] = deque()
        self._cv = threading.Condition(threading.Lock())
        self._closed = False
        self._drain = True
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(workers)]
        for t in self._threads:
            t.start()

    # -- callers -----------------------------------------------------------------------
    def submit(self, text: str, timeout_ms: float | None = None) -> Future:
        """Queue one text; its Future gets a (dim,) float32 vector or the request's error.

        Raises at once (no Future) for a non-str text, a closed batcher or a full queue.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be str, got {type(text).__name__}")
        fut: Future = Future()
        now = time.perf_counter()
        timeout = self.timeout if timeout_ms is None else float(timeout_ms) / 1e3
        req = _Request(text, fut, now, now + timeout if timeout is not None else float("inf"))
        with self._cv:
            if self._closed:
                raise Closed("the batcher is closed")
            if self.max_queue and len(self._q) >= self.max_queue:
                self.stats.refused += 1
                raise QueueFull(f"{len(self._q)} requests already waiting (max_queue={self.max_queue})")
            self._q.append(req)
            self.stats.requests += 1
            n = len(self._q)
            # wake a worker when the queue was empty (it may sleep) or a batch is full
            if n == 1 or n >= self.max_batch:
                self._cv.notify()
        return fut

    def embed(self, text: str, timeout_ms: float | None = None) -> np.ndarray:
        """Embed one text through the queue and wait for its vector."""
        # the worker fails it at its deadline while still queued; once its batch runs, it waits
        return self.submit(text, timeout_ms).result()

    def embed_many(self, texts: Sequence[str], timeout_ms: float | None = None) -> np.ndarray:
        """Submit every text, then gather: an (n, dim) array in input order."""
        futs = [self.submit(t, timeout_ms) for t in texts]
        return np.stack([f.result() for f in futs]) if futs else np.zeros((0, 0), dtype=np.float32)

    def queued(self) -> int:
        return len(self._q)

    def close(self, drain: bool = True, timeout: float | None = None) -> None:
        """Stop accepting requests; ``drain``: embed those still queued, else fail them with Closed."""
        with self._cv:
            self._closed = True
            self._drain = drain
            if not drain:
                while self._q:
                    r = self._q.popleft()
                    if r.future.set_running_or_notify_cancel():
                        r.future.set_exception(Closed("the batcher was closed before this request ran"))
            self._cv.notify_all()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout)

    def __enter__(self) -> "Batcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- workers -----------------------------------------------------------------------
    def _take(self) -> list[_Request] | None:
        """Block until a batch is due; None when closed and empty."""
        cv, q = self._cv, self._q
        with cv:
            while not q:
                if self._closed:
                    return None
                cv.wait()
            if self.max_batch > 1 and self.max_wait > 0:
                due = q[0].t + self.max_wait
                while len(q) < self.max_batch and not self._closed:
                    left = due - time.perf_counter()
                    if left <= 0:
                        break
                    cv.wait(left)
                    if not q:  # another worker took them
                        return []
            k = min(self.max_batch, len(q))
            batch = [q.popleft() for _ in range(k)]
            if q:
                cv.notify()  # more waiting: another worker may take them
            return batch

    def _work(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            if batch:
                self._run(batch)

    def _run(self, batch: list[_Request]) -> None:
        now = time.perf_counter()
        live: list[_Request] = []
        for r in batch:
            if not r.future.set_running_or_notify_cancel():  # cancelled by its caller
                continue
            if now > r.deadline:
                self.stats.timed_out += 1
                r.future.set_exception(RequestTimeout(f"queued {1e3 * (now - r.t):.1f} ms, past its timeout"))
                continue
            live.append(r)
        if not live:
            return
        texts = [r.text for r in live]
        try:
            out = self._embed(texts)
            if len(out) != len(live):
                raise RuntimeError(f"embedder returned {len(out)} rows for {len(live)} texts")
        except Exception as exc:
            if len(live) == 1:
                self.stats.failed += 1
                live[0].future.set_exception(exc)
                return
            # one bad text must not fail the others: retry each alone
            self.stats.retried_batches += 1
            for r in live:
                try:
                    v = self._embed([r.text])
                except Exception as exc:
                    self.stats.failed += 1
                    r.future.set_exception(exc)
                else:
                    self.stats.embedded += 1
                    r.future.set_result(v[0])
            return
        self.stats.batches += 1
        self.stats.embedded += len(live)
        for i, r in enumerate(live):
            r.future.set_result(out[i])
