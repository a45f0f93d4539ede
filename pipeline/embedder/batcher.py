"""A micro-batching front for the embedder: many callers, one inference call per batch.

An application that embeds one text per request (a web handler, a queue consumer) calls :meth:`Batcher.submit`
or :meth:`Batcher.embed` from any number of threads; a worker thread takes the requests in arrival order, up to
``max_batch`` of them, or whatever has arrived ``max_wait_ms`` after the oldest one, and embeds them in one call
(the embedder's own length grouping applies). Each caller gets its own vector.

    from pipeline.embedder.embed import Embedder
    from pipeline.embedder.batcher import Batcher

    with Batcher(Embedder("path/to/onnx-folder", threads=2), max_batch=16, max_wait_ms=2) as b:
        vec = b.embed("one sentence")                  # (dim,) float32; blocks
        fut = b.submit("another", timeout_ms=50)       # concurrent.futures.Future
        vec2 = fut.result()                            # in a coroutine: vec3 = await b.submit_async("a third")

``max_batch=1`` is one call per request (a FIFO queue in front of one worker): the baseline that micro-batching
is measured against. ``max_wait_ms=0`` waits for nobody: a worker takes whatever queued up while it was busy
(batches form only under load).

Failures stay with their request: a text that makes the embed call raise fails only its own future (the batch is
retried one text at a time). With ``max_queue`` set, a request that finds the queue full is refused at once with
:class:`QueueFull` (load shedding).

Deadlines: a reaper thread fails a request at its ``timeout_ms`` deadline with :class:`RequestTimeout`, whatever
the workers are doing (queued: never embedded; running: its vector is dropped). A batch waiting to fill never
waits past half a member's timeout. Worker death: an ``Exception`` in a worker's handling of a batch fails that
batch, and the worker goes on; a ``BaseException`` (``SystemExit``...) fails the batch and the queue with
:class:`WorkerDied`, and :meth:`submit` refuses from then on (no restart). Callbacks: a done-callback never runs
on the batcher's threads (they go to a callback thread), so a callback may call :meth:`embed`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass

import numpy as np

from pipeline.core.errors import PipelineError

__all__ = ["Batcher", "QueueFull", "RequestTimeout", "Closed", "WorkerDied", "BatcherStats"]

log = logging.getLogger("pipeline.embedder.batcher")
_INF = float("inf")


class QueueFull(PipelineError, RuntimeError):
    """The request was refused: ``max_queue`` requests were already waiting."""


class RequestTimeout(PipelineError, TimeoutError):
    """The request passed its deadline before it had a vector."""


class Closed(PipelineError, RuntimeError):
    """The batcher is closed (or was closed without draining while the request waited)."""


class WorkerDied(Closed):
    """A worker thread ended on a BaseException: the batcher refuses requests from then on."""


def check_timeout_ms(value, what: str = "timeout_ms") -> float:
    """A timeout in ms: a finite number > 0 (NaN, inf, 0, negative and bools refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what} must be a number of milliseconds, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{what} must be finite and > 0, got {value!r}")
    return float(value)


@dataclass
class BatcherStats:
    requests: int = 0  # accepted by submit
    batches: int = 0  # embed calls on a batch (not counting one-at-a-time retries)
    embedded: int = 0  # requests that got a vector
    failed: int = 0  # requests whose embedding raised
    timed_out: int = 0  # requests failed at their deadline
    refused: int = 0  # requests refused at submit (queue full)
    retried_batches: int = 0  # batches whose call raised and were retried one text at a time

    @property
    def mean_batch(self) -> float:
        return self.embedded / self.batches if self.batches else 0.0


class _Future(Future):
    """A Future whose callbacks never run on the batcher's own threads (they go to its callback thread)."""

    def __init__(self, owner: "Batcher"):
        super().__init__()
        self._owner = owner

    def add_done_callback(self, fn) -> None:
        owner = self._owner

        def hop(fut):  # settled on a batcher thread: run it on the callback thread
            owner._cbq.put((fn, fut)) if threading.current_thread() in owner._own_threads else fn(fut)

        super().add_done_callback(hop)


def _settle(fut: Future, value=None, exc: BaseException | None = None) -> bool:
    """Set a running future's outcome once; False when it was already settled (e.g. at its deadline)."""
    try:
        if not fut.done():
            fut.settled_at = time.perf_counter()  # when it was settled, whenever its callbacks run
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(value)
        return True
    except InvalidStateError:
        return False


def _hand_over(f: Future, afut: asyncio.Future) -> None:
    """Copy a settled request's outcome into its asyncio Future (on the loop's thread)."""
    if afut.done():
        return
    if f.cancelled():
        afut.cancel()
    elif (exc := f.exception()) is not None:
        afut.set_exception(exc)
    else:
        afut.set_result(f.result())


class _Request:
    __slots__ = ("text", "future", "t", "deadline", "fill_by")

    def __init__(self, text: str, future: Future, t: float, timeout: float | None, max_wait: float):
        self.text, self.future, self.t = text, future, t
        self.deadline = _INF if timeout is None else t + timeout
        # a batch waiting to fill goes by then: never later than half this request's timeout
        self.fill_by = t + (max_wait if timeout is None else min(max_wait, timeout / 2))


class Batcher:
    """Queue single-text requests and embed them in batches on worker threads.

    Parameters
    ----------
    embedder: an :class:`pipeline.embedder.Embedder` or any callable ``f(list[str]) -> (n, dim)``.
    max_batch: at most this many texts per embed call (1: one call per request).
    max_wait_ms: how long after the oldest queued request a worker waits for the batch to
        fill (0: take what is there).  Measured from that request's arrival, so a backlog
        is taken at once.
    timeout_ms: default per-request timeout (None: none): a request without a vector at its
        deadline is failed then with :class:`RequestTimeout`.
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
        if not (isinstance(max_wait_ms, (int, float)) and math.isfinite(max_wait_ms) and max_wait_ms >= 0):
            raise ValueError(f"max_wait_ms must be finite and >= 0, got {max_wait_ms}")
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if max_queue < 0:
            raise ValueError(f"max_queue must be >= 0, got {max_queue}")
        fn = getattr(embedder, "embed", embedder)
        if not callable(fn):
            raise TypeError("embedder must be an Embedder or a callable(list[str]) -> array")
        self._embed: Callable[[list[str]], np.ndarray] = fn
        self._dim: int | None = getattr(embedder, "dim", None)
        self.max_batch = int(max_batch)
        self.max_wait = float(max_wait_ms) / 1e3
        self.timeout = None if timeout_ms is None else check_timeout_ms(timeout_ms) / 1e3
        self.max_queue = int(max_queue)
        self.stats = BatcherStats()
        self._q: deque[_Request] = deque()
        self._running: set[_Request] = set()
        lock = threading.Lock()
        self._cv = threading.Condition(lock)  # workers wait on it
        self._reap_cv = threading.Condition(lock)  # the reaper waits on it
        self._reap_at = _INF
        self._closed = self._reaper_stop = False
        self._died: BaseException | None = None
        self._cbq: queue.SimpleQueue = queue.SimpleQueue()
        self._cb_thread = threading.Thread(target=self._run_callbacks, name=f"{name}-callbacks", daemon=True)
        self._cb_thread.start()
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(workers)]
        self._reaper = threading.Thread(target=self._reap, name=f"{name}-reaper", daemon=True)
        self._own_threads = frozenset([*self._threads, self._reaper])
        for t in (*self._threads, self._reaper):
            t.start()

    # -- callers -----------------------------------------------------------------------
    def submit(self, text: str, timeout_ms: float | None = None) -> Future:
        """Queue one text; its Future gets a (dim,) float32 vector or the request's error.

        Raises at once (no Future) for a non-str text, a bad timeout, a closed or dead batcher
        or a full queue.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be str, got {type(text).__name__}")
        timeout = self.timeout if timeout_ms is None else check_timeout_ms(timeout_ms) / 1e3
        fut = _Future(self)
        req = _Request(text, fut, time.perf_counter(), timeout, self.max_wait)
        with self._cv:
            if self._died is not None:
                raise WorkerDied(f"the batcher's worker died on {self._died!r}; it takes no requests")
            if self._closed:
                raise Closed("the batcher is closed")
            if self.max_queue and len(self._q) >= self.max_queue:
                self.stats.refused += 1
                raise QueueFull(f"{len(self._q)} requests already waiting (max_queue={self.max_queue})")
            self._q.append(req)
            self.stats.requests += 1
            n = len(self._q)
            # wake a worker when the queue was empty (it may sleep), a batch is full, or this
            # request's own fill time is earlier than the oldest's
            if n == 1 or n >= self.max_batch or req.fill_by < self._q[0].fill_by:
                self._cv.notify()
            if req.deadline < self._reap_at:
                self._reap_at = req.deadline
                self._reap_cv.notify()
        return fut

    def submit_async(self, text: str, timeout_ms: float | None = None) -> asyncio.Future:
        """:meth:`submit` for a coroutine: an asyncio Future of the running loop, settled there.

        The batcher's thread hands the outcome straight to the loop (``call_soon_threadsafe``, which
        neither blocks nor runs user code), so no callback-thread hop lies between a vector and its
        awaiter, as it does with ``asyncio.wrap_future(submit(...))``.  Cancelling the asyncio Future
        cancels the request while it is still queued.  Raises at once as :meth:`submit` does.
        """
        loop = asyncio.get_running_loop()
        fut = self.submit(text, timeout_ms)
        afut = loop.create_future()

        def deliver(f: Future) -> None:  # on the thread that settled f
            try:
                loop.call_soon_threadsafe(_hand_over, f, afut)
            except RuntimeError:  # the loop is closed: nobody awaits it any more
                pass

        Future.add_done_callback(fut, deliver)  # the base class's: runs where f is settled, no hop
        afut.add_done_callback(lambda a: fut.cancel() if a.cancelled() else None)
        return afut

    def embed(self, text: str, timeout_ms: float | None = None) -> np.ndarray:
        """Embed one text through the queue and wait for its vector (or its error)."""
        return self.submit(text, timeout_ms).result()

    def embed_many(self, texts: Sequence[str], timeout_ms: float | None = None) -> np.ndarray:
        """Submit every text, then gather: an (n, dim) array in input order ((0, dim) for none)."""
        futs = [self.submit(t, timeout_ms) for t in texts]
        if futs:
            return np.stack([f.result() for f in futs])
        if self._dim is None:  # a bare callable that has not embedded yet: ask it for the width of nothing
            out = np.asarray(self._embed([]))
            if out.ndim != 2:
                raise ValueError("embed_many([]): the embedder's width is unknown (it has no .dim and returned no (0, dim) array)")
            self._dim = int(out.shape[1])
        return np.zeros((0, self._dim), dtype=np.float32)

    def queued(self) -> int:
        return len(self._q)

    @property
    def alive(self) -> bool:
        """False once closed or once a worker died."""
        return not self._closed and self._died is None

    def close(self, drain: bool = True, timeout: float | None = None) -> None:
        """Stop accepting requests; ``drain``: embed those still queued, else fail them with Closed."""
        with self._cv:
            self._closed = True
            if not drain:
                self._fail_queued(Closed("the batcher was closed before this request ran"))
            self._cv.notify_all()
        me = threading.current_thread()
        for t in self._threads:
            if t is not me:
                t.join(timeout)
        with self._cv:
            self._reaper_stop = True
            self._reap_cv.notify_all()
        if self._reaper is not me:
            self._reaper.join(timeout)
        self._cbq.put(None)

    def __enter__(self) -> "Batcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _fail_queued(self, exc: BaseException) -> None:
        """Fail every queued request with ``exc`` (the lock held)."""
        while self._q:
            _settle(self._q.popleft().future, exc=exc)

    def _run_callbacks(self) -> None:
        while (item := self._cbq.get()) is not None:
            try:
                item[0](item[1])
            except Exception:
                log.exception("a done-callback of a batcher future raised")

    # -- workers -----------------------------------------------------------------------
    def _take(self) -> list[_Request] | None:
        """Block until a batch is due; None when closed (or dead) and empty."""
        cv, q = self._cv, self._q
        with cv:
            while not q:
                if self._closed or self._died is not None:
                    return None
                cv.wait()
            if self.max_batch > 1 and self.max_wait > 0:
                while q and len(q) < self.max_batch and not self._closed:
                    left = min(r.fill_by for r in q) - time.perf_counter()
                    if left <= 0:
                        break
                    cv.wait(left)
                if not q:  # another worker (or the reaper) took them
                    return []
            batch = []
            while q and len(batch) < self.max_batch:
                r = q.popleft()
                if r.future.set_running_or_notify_cancel():  # False: cancelled by its caller
                    batch.append(r)
            self._running.update(batch)
            if q:
                cv.notify()  # more waiting: another worker may take them
            return batch

    def _work(self) -> None:
        while (batch := self._take()) is not None:
            if not batch:
                continue
            try:
                self._run(batch)
            except Exception as exc:  # a fault of the handling, not of one text: fail the batch, go on
                log.exception("embed batcher: handling a batch of %d failed", len(batch))
                for r in batch:
                    if _settle(r.future, exc=exc):
                        self.stats.failed += 1
            except BaseException as exc:  # SystemExit, KeyboardInterrupt...: the batcher is dead
                log.error("embed batcher: a worker died on %r; the batcher refuses requests from now", exc)
                self._die(batch, exc)
                return
            finally:
                with self._cv:
                    self._running.difference_update(batch)

    def _die(self, batch: list[_Request], exc: BaseException) -> None:
        died = WorkerDied(f"the batcher's worker died on {exc!r}")
        with self._cv:
            self._died = exc
            for r in batch:
                _settle(r.future, exc=died)
            self._fail_queued(died)
            self._cv.notify_all()
            self._reap_cv.notify_all()

    def _run(self, batch: list[_Request]) -> None:
        try:
            out = self._checked([r.text for r in batch])
        except Exception as exc:
            if len(batch) == 1:
                if _settle(batch[0].future, exc=exc):
                    self.stats.failed += 1
                return
            # one bad text must not fail the others: retry each alone
            self.stats.retried_batches += 1
            for r in batch:
                try:
                    v = self._checked([r.text])
                except Exception as exc:
                    if _settle(r.future, exc=exc):
                        self.stats.failed += 1
                else:
                    if _settle(r.future, v[0]):
                        self.stats.embedded += 1
            return
        self.stats.batches += 1
        for i, r in enumerate(batch):
            if _settle(r.future, out[i]):
                self.stats.embedded += 1

    def _checked(self, texts: list[str]) -> np.ndarray:
        out = self._embed(texts)
        if len(out) != len(texts):
            raise RuntimeError(f"embedder returned {len(out)} rows for {len(texts)} texts")
        if self._dim is None and getattr(out, "ndim", 0) == 2:
            self._dim = int(out.shape[1])
        return out

    # -- the reaper: deadlines, whatever the workers are doing ---------------------------
    def _reap(self) -> None:
        cv = self._reap_cv
        with cv:
            while not self._reaper_stop and self._died is None:
                now = time.perf_counter()
                if self._reap_at <= now:
                    self._expire(now)
                left = self._reap_at - now
                cv.wait(None if left == _INF else max(left, 0.0005))

    def _expire(self, now: float) -> None:
        """Fail every queued or running request past its deadline; set the next wake-up (the lock held)."""
        keep: deque[_Request] = deque()
        for r in self._q:
            if r.deadline <= now:
                if _settle(r.future, exc=RequestTimeout(f"queued {1e3 * (now - r.t):.1f} ms, past its timeout; not embedded")):
                    self.stats.timed_out += 1
            else:
                keep.append(r)
        if len(keep) != len(self._q):
            self._q.clear()
            self._q.extend(keep)
        for r in self._running:
            if r.deadline <= now and _settle(r.future, exc=RequestTimeout(f"no vector {1e3 * (now - r.t):.1f} ms after arrival")):
                self.stats.timed_out += 1
        self._reap_at = min((r.deadline for r in (*self._q, *self._running) if not r.future.done()), default=_INF)
