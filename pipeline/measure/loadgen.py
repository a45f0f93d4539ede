"""The open-loop load generator: Poisson arrivals, one request per sentence, latency from each
request's scheduled arrival (so queueing and the generator's own lateness count: no
"coordinated omission"), and the search for the highest rate within a p95 target.

Imports only numpy, so it can drive servers in other environments too.
:mod:`pipeline.measure.load` is the stage that runs it against the embedder.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import wait
from dataclasses import dataclass, field
from functools import partial

import numpy as np

PENDING, OK, TIMED_OUT, DROPPED, FAILED = 0, 1, 2, 3, 4


def poisson_offsets(rate: float, n: int, seed: int = 0) -> np.ndarray:
    """``n`` arrival times (seconds from the start) of a Poisson process of ``rate`` per second,
    conditioned on its count: the ``n`` arrivals span exactly ``n / rate`` seconds, so every
    schedule offers its nominal rate (an unconditioned sample of 300 is off by ~6%)."""
    if not (isinstance(rate, (int, float)) and math.isfinite(rate) and rate > 0):
        raise ValueError(f"rate must be a finite number of requests per second > 0, got {rate!r}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.exponential(1.0 / rate, size=n + 1))
    return t[:-1] * ((n / rate) / t[-1])


@dataclass
class Point:
    """One offered rate: what the clients saw."""

    offered_qps: float  # the nominal rate
    realised_qps: float  # requests / span of this schedule (a Poisson sample differs from nominal)
    requests: int
    achieved_qps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    ok: int
    timed_out: int
    dropped: int
    failed: int
    lag_p50_ms: float  # the generator's lateness: send time minus scheduled time
    lag_p99_ms: float
    wall_s: float
    cpu_s: float  # this process's CPU time over the point (all threads: generator, front, ONNX Runtime)
    mean_batch: float = 0.0
    superseded: bool = False  # a miss measured again, whose repeat had the lower p95
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    status: list[int] = field(default_factory=list, repr=False)

    @property
    def lost(self) -> int:
        return self.timed_out + self.dropped + self.failed

    def summary(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k not in ("latencies_ms", "status")}
        d["lost"] = self.lost
        return d


def drive(submit, texts: list[str], offsets: np.ndarray, timeout_s: float, start_delay_s: float = 0.01) -> Point:
    """Send ``texts[i]`` at ``offsets[i]`` seconds through ``submit(text) -> Future``; time each.

    ``submit`` may raise (a full queue: dropped).  A Future that fails with a TimeoutError
    counts as timed out, any other error as failed; requests not answered within
    ``timeout_s`` after the last arrival count as timed out.  Lost requests count with
    latency ``max(timeout, their real time)``.
    """

    n = len(offsets)
    done = np.zeros(n)
    sent = np.zeros(n)
    status = np.zeros(n, dtype=np.int8)
    pc = time.perf_counter

    def mark(i: int, fut) -> None:  # runs when the result is set (a Batcher's: on its callback thread)
        if fut.cancelled():  # given up on below: stays pending, counted as timed out
            return
        done[i] = getattr(fut, "settled_at", None) or pc()  # a Batcher stamps the moment it settled it
        exc = fut.exception()
        status[i] = OK if exc is None else (TIMED_OUT if isinstance(exc, TimeoutError) else FAILED)

    futs = []
    sleep = time.sleep
    cpu0 = time.process_time()
    t0 = pc() + start_delay_s
    sched = t0 + offsets
    for i in range(n):
        d = sched[i] - pc()
        if d > 0:
            sleep(d)
        sent[i] = pc()
        try:
            f = submit(texts[i])
        except Exception:
            status[i], done[i] = DROPPED, sent[i]
            continue
        f.add_done_callback(partial(mark, i))
        futs.append((i, f))
    wait([f for _, f in futs], timeout=timeout_s + 1.0)
    end = pc()
    cpu = time.process_time() - cpu0
    for i, f in futs:
        if f.done() and status[i] == PENDING:  # settled, its callback not run yet (it may run on another thread)
            mark(i, f)
        f.cancel()  # still running after the grace period: give up on it
    return _point(offsets, sched, sent, done, status, timeout_s, t0, end, cpu)


def _point(offsets, sched, sent, done, status, timeout_s: float, t0: float, end: float, cpu: float) -> Point:
    """One rate's outcome from each request's schedule, send and answer times and status;
    requests never answered count as timed out at ``end``."""
    n = len(offsets)
    pending = status == PENDING
    status[pending] = TIMED_OUT
    done[pending] = end
    lat = done - sched
    lost = status != OK
    lat[lost] = np.maximum(lat[lost], timeout_s)
    ok = ~lost
    span = (done[ok].max() - t0) if ok.any() else (end - t0)
    lat_ms = lat * 1e3
    p50, p95, p99 = np.percentile(lat_ms, [50, 95, 99])
    lag = (sent - sched) * 1e3
    return Point(
        offered_qps=float(n / offsets[-1]) if n else 0.0,
        realised_qps=float(n / offsets[-1]) if n else 0.0,
        requests=n,
        achieved_qps=float(ok.sum() / span) if span > 0 else 0.0,
        p50_ms=float(p50),
        p95_ms=float(p95),
        p99_ms=float(p99),
        mean_ms=float(lat_ms.mean()),
        max_ms=float(lat_ms.max()),
        ok=int(ok.sum()),
        timed_out=int((status == TIMED_OUT).sum()),
        dropped=int((status == DROPPED).sum()),
        failed=int((status == FAILED).sum()),
        lag_p50_ms=float(np.percentile(lag, 50)),
        lag_p99_ms=float(np.percentile(lag, 99)),
        wall_s=float(end - t0),
        cpu_s=float(cpu),
        latencies_ms=[round(float(x), 4) for x in lat_ms],
        status=[int(s) for s in status],
    )


class Driver:
    """``driver(rate, seconds) -> Point``: one rate against one server, through ``submit``.

    The schedule and the texts depend only on the rate and the seed, so two servers measured at
    the same rate get the very same arrivals and sentences.
    """

    def __init__(self, submit, sentences: list[str], timeout_ms: float, min_requests: int, seed: int = 0, stats=None):
        self.submit, self.sentences, self.stats = submit, sentences, stats
        self.timeout_s, self.min_requests, self.seed = timeout_ms / 1e3, int(min_requests), seed

    def __call__(self, rate: float, seconds: float) -> Point:
        n = max(self.min_requests, int(round(rate * seconds)))
        key = int(round(rate * 1000))
        offsets = poisson_offsets(rate, n, seed=self.seed + key % 100003)
        k = key % len(self.sentences)
        texts = [self.sentences[(k + i) % len(self.sentences)] for i in range(n)]
        before = (self.stats.batches, self.stats.embedded) if self.stats is not None else None
        p = drive(self.submit, texts, offsets, timeout_s=self.timeout_s)
        if before is not None:
            batches, embedded = self.stats.batches - before[0], self.stats.embedded - before[1]
            p.mean_batch = embedded / batches if batches else 0.0
        return p

    @classmethod
    def for_batcher(cls, batcher, sentences: list[str], settings: dict, seed: int = 0) -> "Driver":
        return cls(batcher.submit, sentences, settings["timeout_ms"], settings["min_requests"], seed, batcher.stats)


class Scenario:
    """The rates in ascending order until saturation, then a bounded bisection on the p95 target.

    ``measure(rate, seconds) -> Point`` runs one rate (a :class:`Driver`).  The steps are
    public (:meth:`scan`, :meth:`search_step`) so that several servers can be measured
    interleaved, point by point; :meth:`run` does them all.
    """

    def __init__(self, measure, settings: dict):
        self.measure = measure
        self.s = settings
        self.points: list[Point] = []
        self.rates = sorted(set(float(r) for r in settings["rates"]) | {float(settings["at_qps"])})
        self.first_miss: float | None = None
        self.done_scanning = False
        self.lo: float | None = None
        self.hi: float | None = None
        self.steps_left = int(settings["search_steps"])

    def point(self, rate: float, seconds: float | None = None, keep: bool = True) -> Point:
        p = self.measure(rate, self.s["seconds_per_rate"] if seconds is None else seconds)
        p.offered_qps = float(rate)  # the nominal rate
        if keep:
            self.points.append(p)
        return p

    def warmup(self) -> None:
        if self.s.get("warmup_seconds", 0) > 0:
            self.point(self.rates[0], seconds=self.s["warmup_seconds"], keep=False)

    def measured(self, rate: float) -> Point:
        """One rate; a miss is measured once more (``confirm_misses``) and the lower p95 kept:
        another process on the machine can only add latency.  Both runs stay in the table."""
        p = self.point(rate)
        if self.s.get("confirm_misses", True) and not self.within(p) and not self.saturated(p):
            again = self.point(rate)
            p, other = (again, p) if again.p95_ms < p.p95_ms else (p, again)
            other.superseded = True
        return p

    def within(self, p: Point) -> bool:
        return p.p95_ms <= self.s["p95_target_ms"]

    def saturated(self, p: Point) -> bool:
        return p.achieved_qps < self.s["saturation_ratio"] * p.realised_qps or p.lost > 0.01 * p.requests

    def kept(self) -> list[Point]:
        return [p for p in self.points if not p.superseded]

    def scan(self, rate: float) -> None:
        """Measure one rate of the ascending list (no-op once saturated)."""
        if self.done_scanning:
            return
        p = self.measured(rate)
        if self.first_miss is None and not self.within(p):
            self.first_miss = rate
        if self.saturated(p) and rate >= self.s["at_qps"]:
            self.done_scanning = True

    def begin_search(self) -> None:
        self.done_scanning = True
        passed = [p.offered_qps for p in self.kept() if self.within(p) and (self.first_miss is None or p.offered_qps < self.first_miss)]
        self.lo = max(passed) if passed else None
        self.hi = self.first_miss

    def search_step(self) -> bool:
        """One bisection step (geometric midpoint); False when the search is over."""
        lo, hi = self.lo, self.hi
        if lo is None or hi is None or self.steps_left <= 0:
            return False
        mid = math.sqrt(lo * hi)
        if mid <= lo * 1.02 or mid >= hi / 1.02:
            return False
        self.steps_left -= 1
        if self.within(self.measured(mid)):
            self.lo = mid
        else:
            self.hi = mid
        return self.steps_left > 0

    def result(self) -> dict:
        kept = self.kept()
        at = next(p for p in kept if p.offered_qps == float(self.s["at_qps"]))
        return {
            "max_qps_at_p95_target": self.lo if self.lo is not None else 0.0,
            "first_rate_past_target": self.hi,
            "limited_by_rates": self.hi is None,  # no rate tried missed the target: a lower bound
            "at_qps": at.summary(),
            "saturation_qps": max(p.achieved_qps for p in kept),
        }

    def run(self) -> dict:
        self.warmup()
        for rate in self.rates:
            self.scan(rate)
            if self.done_scanning:
                break
        self.begin_search()
        while self.search_step():
            pass
        return self.result()
