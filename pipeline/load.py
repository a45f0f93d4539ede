"""The load scenario: the queries per second a configuration sustains within its latency target.

Requests arrive **open-loop**: a Poisson schedule (exponential gaps, seeded) is computed
before the clock starts, and each request is sent at its scheduled time whether or not the
earlier ones have been answered.  One request is one sentence (the STS Benchmark sentences,
shuffled).  **Latency runs from a request's scheduled arrival to the moment its vector is
ready**, so time spent queueing, and any lateness of the generator itself, is counted (no
"coordinated omission": measuring from the send time, or waiting for an answer before
sending the next request, hides exactly the queueing this scenario is about).

The server is :class:`pipeline.serve.Batcher` over the :class:`pipeline.embed.Embedder`,
with ``max_batch=1`` for one call per request.  The generator is one thread of the same
process: it sleeps until each scheduled time and submits; completions are stamped by a
callback in the worker thread.  No thread per request.

For each offered rate (ascending, until the server saturates): achieved rate, p50/p95/p99,
requests timed out / dropped / failed (each counts with the timeout as its latency: it missed
the target), the generator's lateness and the mean batch.  Then a bounded bisection between
the last rate within the p95 target and the first past it gives
``load.max_qps_at_p95_target``.  Last, the same generator drives a no-op server at the
highest rate reached: its CPU per request and the latency floor it adds are the generator's
own overhead, reported beside the figures.

The measurement runs in a fresh process, as the benchmark does:

    python -m pipeline.load SPEC.json OUT.json
"""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

PENDING, OK, TIMED_OUT, DROPPED, FAILED = 0, 1, 2, 3, 4


def poisson_offsets(rate: float, n: int, seed: int = 0) -> np.ndarray:
    """``n`` arrival times (seconds from the start) of a Poisson process of ``rate`` per second,
    conditioned on its count: the ``n`` arrivals span exactly ``n / rate`` seconds, so every
    schedule offers its nominal rate (an unconditioned sample of 300 is off by ~6%)."""
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
    from concurrent.futures import wait

    n = len(offsets)
    done = np.zeros(n)
    sent = np.zeros(n)
    status = np.zeros(n, dtype=np.int8)
    pc = time.perf_counter

    def mark(i: int, fut) -> None:  # runs in the worker thread, when the result is set
        if fut.cancelled():  # given up on below: stays pending, counted as timed out
            return
        done[i] = pc()
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
        futs.append(f)
    wait(futs, timeout=timeout_s + 1.0)
    end = pc()
    cpu = time.process_time() - cpu0
    for f in futs:  # still running after the grace period: give up on them
        f.cancel()
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
    interleaved, point by point (benchmarks/serving.py); :meth:`run` does them all.
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


def measure(spec: dict) -> dict:
    """Inside the fresh process: build the embedder and the front, warm up, run the scenario,
    then the generator against a no-op server."""
    from .embed import Embedder
    from .serve import Batcher

    s = spec["load"]
    sentences = list(spec["sentences"])
    random.Random(spec.get("seed", 0)).shuffle(sentences)
    t0 = time.perf_counter()
    emb = Embedder(**spec["embedder"])
    session_s = time.perf_counter() - t0
    for k in sorted({1, 2, 4, 8, 16, 32, int(s["max_batch"])}):  # each batch shape once, before the clock
        if k <= int(s["max_batch"]):
            emb.embed(sentences[:k])
    front = dict(max_batch=int(s["max_batch"]), max_wait_ms=float(s["max_wait_ms"]), timeout_ms=float(s["timeout_ms"]),
                 max_queue=int(s["max_queue"]), workers=int(s["workers"]))
    batcher = Batcher(emb, **front)
    seed = int(spec.get("seed", 0))
    sc = Scenario(Driver.for_batcher(batcher, sentences, s, seed), s)
    try:
        result = sc.run()
    finally:
        batcher.close(drain=False)
    # the generator's own cost: the same settings and schedule shape against a server that does nothing
    overhead = None
    if s.get("overhead_seconds", 0) > 0:
        dim = emb.dim
        zeros = np.zeros((int(s["max_batch"]), dim), dtype=np.float32)
        noop = Batcher(lambda texts: zeros[: len(texts)], **front)
        rate = max(p.offered_qps for p in sc.points)
        try:
            p = Driver.for_batcher(noop, sentences, s, seed)(rate, s["overhead_seconds"])
        finally:
            noop.close(drain=False)
        overhead = {
            "offered_qps": rate,
            "achieved_ratio": p.achieved_qps / rate,
            "p50_ms": p.p50_ms,
            "p99_ms": p.p99_ms,
            "lag_p99_ms": p.lag_p99_ms,
            "cpu_us_per_request": 1e6 * p.cpu_s / p.requests,
            "cpu_share": p.cpu_s / p.wall_s,  # cores busy with the generator and the front
        }
    return {
        **result,
        "points": [{**p.summary(), "latencies_ms": p.latencies_ms, "status": p.status} for p in sc.points],
        "overhead": overhead,
        "session_s": session_s,
        "switch_interval_s": sys.getswitchinterval(),
        "cpu_count": os.cpu_count(),
    }


# -- the parent side ----------------------------------------------------------------------------
class LoadError(RuntimeError):
    pass


@dataclass
class LoadResult:
    raw: dict
    settings: dict

    @property
    def points(self) -> list[dict]:
        return sorted(self.raw["points"], key=lambda p: p["offered_qps"])

    def metrics(self) -> dict[str, float]:
        s, r = self.settings, self.raw
        tag = f"{s['at_qps']:g}qps"
        at = r["at_qps"]
        m = {
            "load.max_qps_at_p95_target": float(r["max_qps_at_p95_target"]),
            "load.max_qps_limited_by_rates": float(bool(r["limited_by_rates"])),
            "load.p95_target_ms": float(s["p95_target_ms"]),
            "load.saturation_qps": float(r["saturation_qps"]),
            f"load.p50_ms_at_{tag}": at["p50_ms"],
            f"load.p95_ms_at_{tag}": at["p95_ms"],
            f"load.p99_ms_at_{tag}": at["p99_ms"],
            f"load.achieved_qps_at_{tag}": at["achieved_qps"],
            f"load.lost_at_{tag}": float(at["lost"]),
            f"load.mean_batch_at_{tag}": at["mean_batch"],
            f"load.lag_p99_ms_at_{tag}": at["lag_p99_ms"],
            "load.rates_measured": float(len(r["points"])),
        }
        o = r.get("overhead")
        if o:
            m.update({
                "load.generator.offered_qps": o["offered_qps"],
                "load.generator.achieved_ratio": o["achieved_ratio"],
                "load.generator.noop_p50_ms": o["p50_ms"],
                "load.generator.noop_p99_ms": o["p99_ms"],
                "load.generator.cpu_us_per_request": o["cpu_us_per_request"],
                "load.generator.cpu_share": o["cpu_share"],
            })
        return m

    def write(self, out_dir: Path, title: str) -> None:
        """load.json (the per-rate table), load_latency.csv (every request) and load.png."""
        out_dir = Path(out_dir)
        table = [{k: v for k, v in p.items() if k not in ("latencies_ms", "status")} for p in self.points]
        summary = {k: v for k, v in self.raw.items() if k != "points"}
        (out_dir / "load.json").write_text(json.dumps({"settings": self.settings, **summary, "points": table}, indent=2))
        with open(out_dir / "load_latency.csv", "w") as f:
            # kept=0: a miss measured again whose repeat had the lower p95 (confirm_misses)
            f.write("offered_qps,latency_ms,status,kept\n")
            names = {OK: "ok", TIMED_OUT: "timed_out", DROPPED: "dropped", FAILED: "failed", PENDING: "pending"}
            for p in self.points:
                kept = 0 if p.get("superseded") else 1
                for lat, st in zip(p["latencies_ms"], p["status"]):
                    f.write(f"{p['offered_qps']:g},{lat},{names[st]},{kept}\n")
        figure([p for p in table if not p.get("superseded")], self.settings["p95_target_ms"], self.raw["max_qps_at_p95_target"], out_dir / "load.png", title)


def figure(points: list[dict], target_ms: float, max_qps: float, path: Path, title: str) -> None:
    """p95 and p99 against offered rate (log-log), the target line, achieved rate beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [p["offered_qps"] for p in points]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10.5, 3.8))
    ax1.plot(x, [p["p50_ms"] for p in points], "o-", color="#228833", label="p50")
    ax1.plot(x, [p["p95_ms"] for p in points], "o-", color="#ee6677", label="p95")
    ax1.plot(x, [p["p99_ms"] for p in points], "o-", color="#aa3377", label="p99")
    ax1.axhline(target_ms, color="k", ls="--", lw=1, label=f"target p95 {target_ms:g} ms")
    if max_qps:
        ax1.axvline(max_qps, color="#4477aa", ls=":", lw=1, label=f"max within target {max_qps:.0f}/s")
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlabel("offered rate (requests/s, Poisson)")
    ax1.set_ylabel("latency from scheduled arrival (ms)")
    ax1.legend(fontsize=8)
    ax2.plot(x, [p["achieved_qps"] for p in points], "o-", color="#4477aa", label="achieved")
    ax2.plot(x, x, color="grey", ls="--", lw=1, label="offered")
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("offered rate (requests/s)")
    ax2.set_ylabel("achieved rate (requests/s)")
    ax2.legend(fontsize=8)
    from matplotlib.ticker import FuncFormatter, NullFormatter

    plain = FuncFormatter(lambda v, _: f"{v:g}")
    for ax in (ax1, ax2):
        ax.set_xticks(sorted({round(v) for v in x}))
        ax.xaxis.set_major_formatter(plain)
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def settings_of(load_cfg) -> dict:
    from dataclasses import asdict, is_dataclass

    d = asdict(load_cfg) if is_dataclass(load_cfg) else dict(load_cfg)
    d["rates"] = [float(r) for r in d["rates"]]
    return d


def run(embedder_kwargs: dict, sentences: list[str], load_cfg, seed: int = 0, timeout_s: float = 900) -> LoadResult:
    """Measure in a fresh process (``python -m pipeline.load``), like the benchmark stage."""
    settings = settings_of(load_cfg)
    spec = {
        "embedder": {k: (str(v) if isinstance(v, Path) else v) for k, v in embedder_kwargs.items()},
        "sentences": list(sentences),
        "load": settings,
        "seed": seed,
    }
    with tempfile.TemporaryDirectory(prefix="load-") as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec_path.write_text(json.dumps(spec))
        env = dict(os.environ)
        env.pop("OMP_NUM_THREADS", None)
        proc = subprocess.run(
            [sys.executable, "-m", "pipeline.load", str(spec_path), str(out_path)],
            capture_output=True, text=True, timeout=timeout_s, env=env,
        )
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
            raise LoadError(f"load process failed (exit {proc.returncode}):\n{tail}")
        raw = json.loads(out_path.read_text())
    return LoadResult(raw, settings)


def _main(argv: list[str]) -> int:
    spec_path, out_path = argv
    spec = json.loads(Path(spec_path).read_text())
    Path(out_path).write_text(json.dumps(measure(spec)))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
