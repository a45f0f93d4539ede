"""The micro-batching front (pipeline.embedder.batcher.Batcher): ordering, batching, timeouts, failures.

Fake embedders with controlled behaviour; bounds are generous (a loaded 2-core machine may
stall any thread for tens of milliseconds), and what is asserted is order and membership,
not speed.  The last test runs the front over a real (tiny) Embedder.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from pipeline.embedder.batcher import Batcher, Closed, QueueFull, RequestTimeout, WorkerDied


class Fake:
    """Embeds text "k" as the vector [k, len(batch)]; records each call's texts."""

    def __init__(self, delay_s: float = 0.0, gate: threading.Event | None = None, bad: str | None = None):
        self.calls: list[list[str]] = []
        self.delay_s, self.gate, self.bad = delay_s, gate, bad

    def __call__(self, texts):
        self.calls.append(list(texts))
        if self.gate is not None:
            assert self.gate.wait(30)
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.bad is not None and self.bad in texts:
            raise ValueError(f"cannot embed {self.bad!r}")
        return np.array([[float(t), len(texts)] for t in texts], dtype=np.float32)


def test_each_caller_gets_its_own_vector_in_arrival_order():
    fake = Fake(delay_s=0.002)
    with Batcher(fake, max_batch=8, max_wait_ms=1) as b:
        futs = [b.submit(str(i)) for i in range(200)]
        out = [f.result(timeout=30) for f in futs]
    assert [int(v[0]) for v in out] == list(range(200))
    flat = [t for call in fake.calls for t in call]
    assert flat == [str(i) for i in range(200)]  # FIFO: batches are taken in arrival order
    assert all(1 <= len(c) <= 8 for c in fake.calls)
    assert len(fake.calls) < 200  # they were batched
    assert b.stats.embedded == 200 and b.stats.failed == 0


def test_callers_on_many_threads_get_their_own_vectors():
    fake = Fake(delay_s=0.001)
    results: dict[int, float] = {}

    def client(k):
        for j in range(20):
            i = 1000 * k + j
            results[i] = float(b.embed(str(i))[0])

    with Batcher(fake, max_batch=16, max_wait_ms=2) as b:
        threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert len(results) == 160 and all(k == v for k, v in results.items())


def test_one_call_per_request_when_max_batch_is_one():
    fake = Fake()
    with Batcher(fake, max_batch=1) as b:
        vecs = b.embed_many([str(i) for i in range(20)])
    assert vecs[:, 0].tolist() == list(range(20))
    assert all(len(c) == 1 for c in fake.calls) and len(fake.calls) == 20


def test_a_partial_batch_waits_max_wait_and_a_full_one_does_not():
    fake = Fake()
    with Batcher(fake, max_batch=8, max_wait_ms=300) as b:
        t0 = time.perf_counter()
        futs = [b.submit(str(i)) for i in range(3)]
        [f.result(timeout=30) for f in futs]
        waited = time.perf_counter() - t0
    assert waited >= 0.29  # nobody else came: the batch of 3 went after max_wait
    assert fake.calls == [["0", "1", "2"]]

    fake = Fake()
    with Batcher(fake, max_batch=4, max_wait_ms=20_000) as b:
        t0 = time.perf_counter()
        futs = [b.submit(str(i)) for i in range(4)]
        [f.result(timeout=30) for f in futs]
        assert time.perf_counter() - t0 < 10  # full at once: not the 20 s wait
    assert fake.calls == [["0", "1", "2", "3"]]


def test_a_request_past_its_timeout_is_failed_and_never_embedded():
    gate = threading.Event()
    fake = Fake(gate=gate)
    with Batcher(fake, max_batch=1) as b:
        first = b.submit("1")  # the worker blocks on it
        while not fake.calls:
            time.sleep(0.001)
        late = b.submit("2", timeout_ms=50)
        fine = b.submit("3")  # no timeout
        time.sleep(0.2)
        gate.set()
        assert first.result(timeout=30)[0] == 1
        with pytest.raises(RequestTimeout):
            late.result(timeout=30)
        assert isinstance(RequestTimeout("x"), TimeoutError)
        assert fine.result(timeout=30)[0] == 3
    assert ["2"] not in fake.calls
    assert b.stats.timed_out == 1


def test_a_caller_can_stop_waiting():
    gate = threading.Event()
    with Batcher(Fake(gate=gate), max_batch=1) as b:
        b.submit("1")
        fut = b.submit("2")
        from concurrent.futures import TimeoutError as FutureTimeout

        with pytest.raises(FutureTimeout):
            fut.result(timeout=0.05)
        assert fut.cancel()  # still queued: cancelled, the worker skips it
        gate.set()


def test_a_failing_request_fails_only_itself():
    fake = Fake(bad="13")
    with Batcher(fake, max_batch=32, max_wait_ms=500) as b:
        futs = [b.submit(str(i)) for i in range(20)]
        for i, f in enumerate(futs):
            if i == 13:
                with pytest.raises(ValueError, match="cannot embed '13'"):
                    f.result(timeout=30)
            else:
                assert f.result(timeout=30)[0] == i
    assert b.stats.failed == 1 and b.stats.embedded == 19 and b.stats.retried_batches >= 1
    # and the batcher still serves afterwards
    with Batcher(Fake(bad="x"), max_batch=4) as b:
        with pytest.raises(ValueError):
            b.embed("x")
        assert b.embed("5")[0] == 5


def test_a_wrong_input_is_refused_at_submit():
    with Batcher(Fake(), max_batch=4) as b:
        with pytest.raises(TypeError):
            b.submit(["not", "a", "str"])
        with pytest.raises(TypeError):
            b.submit(None)
        assert b.embed("7")[0] == 7


def test_a_full_queue_refuses_and_close_fails_what_waits():
    gate = threading.Event()
    fake = Fake(gate=gate)
    b = Batcher(fake, max_batch=1, max_queue=2)
    running = b.submit("1")
    while not fake.calls:
        time.sleep(0.001)
    q1, q2 = b.submit("2"), b.submit("3")
    with pytest.raises(QueueFull):
        b.submit("4")
    assert b.stats.refused == 1
    closer = threading.Thread(target=b.close, kwargs={"drain": False})
    closer.start()
    for f in (q1, q2):
        with pytest.raises(Closed):
            f.result(timeout=30)
    gate.set()
    closer.join(30)
    assert running.result(timeout=30)[0] == 1  # the batch already running completes
    with pytest.raises(Closed):
        b.submit("5")


def test_close_drains_by_default():
    fake = Fake(delay_s=0.01)
    b = Batcher(fake, max_batch=2)
    futs = [b.submit(str(i)) for i in range(10)]
    b.close()
    assert [int(f.result(timeout=0)[0]) for f in futs] == list(range(10))


@pytest.mark.parametrize("kwargs", [{"max_batch": 0}, {"max_wait_ms": -1}, {"workers": 0}, {"max_queue": -1}, {"timeout_ms": 0}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        Batcher(Fake(), **kwargs)


def test_several_workers_keep_each_result_with_its_request():
    fake = Fake(delay_s=0.002)
    with Batcher(fake, max_batch=4, max_wait_ms=1, workers=3) as b:
        vecs = b.embed_many([str(i) for i in range(120)])
    assert vecs[:, 0].tolist() == list(range(120))


def test_over_a_real_embedder_the_vectors_are_the_embedder_s(tiny_bert, tmp_path):
    from pipeline.config import ModelConfig, VariantConfig
    from pipeline.embedder.embed import Embedder
    from pipeline.model.export import export
    from pipeline.model.sources import resolve

    cfg = ModelConfig(name="tiny-bert", source="local", path=str(tiny_bert), max_length=64, sha256=None)
    art = export(resolve(cfg), cfg, VariantConfig(), tmp_path / "cache")
    emb = Embedder(art.folder, max_length=64, threads=1)
    texts = ["a dog runs", "two people are talking in a park near the old tree", "red", "the cat is happy"] * 5
    with Batcher(emb, max_batch=8, max_wait_ms=5) as b:
        got = b.embed_many(texts)
    want = np.stack([emb.embed([t])[0] for t in texts])
    assert got.shape == (20, emb.dim)
    np.testing.assert_allclose(got, want, atol=1e-5)


# -- issue 28, breaks 13-16: deadlines, worker death, re-entrant callbacks, bad timeouts ----------


def _blocked(b: Batcher, fake: Fake) -> None:
    """Wait until the worker is inside a call of ``fake``."""
    deadline = time.time() + 30
    while not fake.calls and time.time() < deadline:
        time.sleep(0.001)
    assert fake.calls


def test_a_queued_request_fails_at_its_deadline_while_a_call_runs():
    gate = threading.Event()
    fake = Fake(gate=gate)
    b = Batcher(fake, max_batch=1)
    try:
        first = b.submit("1")
        _blocked(b, fake)
        late = b.submit("2", timeout_ms=100)
        t0 = time.perf_counter()
        with pytest.raises(RequestTimeout):
            late.result(timeout=10)  # the call in front never ends while we wait
        assert time.perf_counter() - t0 < 5
        running = b.submit("3", timeout_ms=100)  # queued, then failed: never embedded
        with pytest.raises(RequestTimeout):
            running.result(timeout=10)
        assert not first.done()
    finally:
        gate.set()
        b.close(timeout=10)
    assert first.result(timeout=10)[0] == 1
    assert fake.calls == [["1"]] and b.stats.timed_out == 2


def test_a_running_request_fails_at_its_deadline():
    gate = threading.Event()
    fake = Fake(gate=gate)
    b = Batcher(fake, max_batch=1)
    try:
        fut = b.submit("1", timeout_ms=100)
        with pytest.raises(RequestTimeout):
            fut.result(timeout=10)
    finally:
        gate.set()
        b.close(timeout=10)
    assert b.stats.embedded == 0 and b.stats.timed_out == 1
    assert isinstance(fut.exception(), RequestTimeout)  # the late vector did not replace the error


def test_an_embedder_short_of_rows_on_the_retry_fails_the_requests_and_the_worker_lives():
    def short(texts):
        if len(texts) > 1:
            raise ValueError("batch refused")
        return np.zeros((0, 2), dtype=np.float32)  # fewer rows than texts

    b = Batcher(short, max_batch=4, max_wait_ms=200)
    try:
        futs = [b.submit(str(i)) for i in range(3)]
        for f in futs:
            with pytest.raises(RuntimeError, match="0 rows for 1"):
                f.result(timeout=10)
        with pytest.raises(RuntimeError):  # still served (and still failing) afterwards
            b.submit("x").result(timeout=10)
    finally:
        b.close(timeout=10)


def test_a_worker_dying_on_a_base_exception_fails_its_requests_and_submit_refuses():
    gate = threading.Event()

    def exits(texts):
        assert gate.wait(30)
        raise SystemExit(3)

    b = Batcher(exits, max_batch=1)
    try:
        first = b.submit("1")
        queued = b.submit("2")
        gate.set()
        for f in (first, queued):
            with pytest.raises(WorkerDied, match="SystemExit"):
                f.result(timeout=10)
        with pytest.raises(WorkerDied):
            b.submit("3")
        assert isinstance(WorkerDied("x"), Closed) and not b.alive
    finally:
        b.close(timeout=10)


def test_a_done_callback_that_calls_embed_does_not_deadlock():
    fake = Fake()
    b = Batcher(fake, max_batch=4, max_wait_ms=1)
    got: list = []
    done = threading.Event()

    def callback(fut):
        got.append(float(b.embed("2")[0]))
        done.set()

    try:
        first = b.submit("1")
        first.add_done_callback(callback)
        assert first.result(timeout=10)[0] == 1
        assert done.wait(10) and got == [2.0]
        assert b.submit("3").result(timeout=10)[0] == 3  # unrelated requests are served
    finally:
        b.close(timeout=10)


@pytest.mark.parametrize("bad", [0, -5, float("nan"), float("inf"), -float("inf"), True, "10"])
def test_a_bad_per_request_timeout_is_refused_like_the_constructor_s(bad):
    with pytest.raises(ValueError):
        Batcher(Fake(), timeout_ms=bad)
    with Batcher(Fake(), max_batch=2) as b:
        with pytest.raises(ValueError):
            b.submit("1", timeout_ms=bad)
        assert b.queued() == 0 and b.stats.requests == 0


def test_a_timeout_shorter_than_max_wait_on_an_idle_batcher_is_embedded():
    fake = Fake()
    with Batcher(fake, max_batch=8, max_wait_ms=2000) as b:
        t0 = time.perf_counter()
        vec = b.embed("7", timeout_ms=600)  # the batch does not wait 2 s for company
        assert vec[0] == 7 and time.perf_counter() - t0 < 0.6
    assert fake.calls == [["7"]] and b.stats.timed_out == 0


def test_embed_many_of_nothing_has_the_embedder_s_width():
    class WithDim:
        dim = 5

        def embed(self, texts):
            return np.ones((len(texts), 5), dtype=np.float32)

    with Batcher(WithDim()) as b:
        assert b.embed_many([]).shape == (0, 5)
    with Batcher(Fake()) as b:  # a bare callable: the width of what it embedded
        b.embed("1")
        assert b.embed_many([]).shape == (0, 2)


# -- submit_async: the asyncio face of the same queue ---------------------------------------------
def test_submit_async_gives_each_coroutine_its_own_vector_and_error():
    import asyncio

    async def main(b):
        ok = [b.submit_async(str(k)) for k in range(5)]
        bad = b.submit_async("13")
        got = await asyncio.gather(*ok)
        with pytest.raises(ValueError, match="cannot embed '13'"):
            await bad
        return got

    with Batcher(Fake(bad="13"), max_batch=32, max_wait_ms=20) as b:
        got = asyncio.run(main(b))
    assert [v[0] for v in got] == [0, 1, 2, 3, 4]


def test_cancelling_the_asyncio_future_cancels_the_queued_request():
    import asyncio

    gate = threading.Event()
    fake = Fake(gate=gate)

    async def main(b):
        first = b.submit_async("1")  # the worker takes it and waits at the gate
        while not fake.calls:
            await asyncio.sleep(0.001)
        second = b.submit_async("2")
        second.cancel()
        await asyncio.sleep(0.01)
        gate.set()
        return await first

    with Batcher(fake, max_batch=1) as b:
        assert asyncio.run(main(b))[0] == 1
        assert b.embed("3")[0] == 3  # the worker lives on
    assert ["2"] not in fake.calls


def test_a_result_for_a_closed_loop_is_dropped_and_the_worker_serves_on():
    import asyncio

    gate = threading.Event()
    fake = Fake(gate=gate)

    async def leave(b):
        b.submit_async("1")  # never awaited: its loop is closed before the vector comes

    with Batcher(fake, max_batch=1) as b:
        asyncio.run(leave(b))
        gate.set()
        assert b.embed("2")[0] == 2
    assert b.stats.embedded == 2 and b.stats.failed == 0


def test_submit_async_refuses_at_once_like_submit():
    import asyncio

    async def main(b):
        with pytest.raises(TypeError):
            b.submit_async(3)

    with Batcher(Fake(), max_batch=1) as b:
        asyncio.run(main(b))
