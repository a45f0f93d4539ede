"""The load scenario: the queries per second a configuration sustains within its latency target.

Requests arrive **open-loop**: a Poisson schedule (exponential gaps, seeded) is computed
before the clock starts, and each request is sent at its scheduled time whether or not the
earlier ones have been answered.  One request is one sentence (the STS Benchmark sentences,
shuffled).  **Latency runs from a request's scheduled arrival to the moment its vector is
ready**, so time spent queueing, and any lateness of the generator itself, is counted (no
"coordinated omission": measuring from the send time, or waiting for an answer before
sending the next request, hides exactly the queueing this scenario is about).

The server is :class:`pipeline.embedder.batcher.Batcher` over the :class:`pipeline.embedder.Embedder`,
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

The generator itself (schedule, driver, rate search) is :mod:`pipeline.measure.loadgen`.  The
measurement runs in a fresh process, as the benchmark does:

    python -m pipeline.measure.load REQUEST.json REPLY.json     (pipeline.core.child)
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path

import numpy as np

from pipeline.core import child
from pipeline.core.errors import PipelineError
from pipeline.core.vocab import Metric
from pipeline.embedder.batcher import Batcher
from pipeline.embedder.embed import Embedder
from pipeline.measure.loadgen import DROPPED, FAILED, OK, PENDING, TIMED_OUT, Driver, Point, Scenario, drive, poisson_offsets

__all__ = [
    "DROPPED",
    "FAILED",
    "OK",
    "PENDING",
    "TIMED_OUT",
    "Driver",
    "LoadError",
    "LoadResult",
    "Point",
    "Scenario",
    "drive",
    "figure",
    "measure",
    "poisson_offsets",
    "run",
    "settings_of",
]


def measure(spec: dict) -> dict:
    """Inside the fresh process: build the embedder and the front, warm up, run the scenario,
    then the generator against a no-op server."""

    s = spec["load"]
    sentences = list(spec["sentences"])
    random.Random(spec.get("seed", 0)).shuffle(sentences)
    t0 = time.perf_counter()
    emb = Embedder(**spec["embedder"])
    session_s = time.perf_counter() - t0
    for k in sorted({1, 2, 4, 8, 16, 32, int(s["max_batch"])}):  # each batch shape once, before the clock
        if k <= int(s["max_batch"]):
            emb.embed(sentences[:k])
    front = dict(
        max_batch=int(s["max_batch"]),
        max_wait_ms=float(s["max_wait_ms"]),
        timeout_ms=float(s["timeout_ms"]),
        max_queue=int(s["max_queue"]),
        workers=int(s["workers"]),
    )
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
class LoadError(PipelineError, RuntimeError):
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
            Metric.LOAD_MAX_QPS: float(r["max_qps_at_p95_target"]),
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
            m.update(
                {
                    "load.generator.offered_qps": o["offered_qps"],
                    "load.generator.achieved_ratio": o["achieved_ratio"],
                    "load.generator.noop_p50_ms": o["p50_ms"],
                    "load.generator.noop_p99_ms": o["p99_ms"],
                    "load.generator.cpu_us_per_request": o["cpu_us_per_request"],
                    "load.generator.cpu_share": o["cpu_share"],
                }
            )
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
        figure(
            [p for p in table if not p.get("superseded")],
            self.settings["p95_target_ms"],
            self.raw["max_qps_at_p95_target"],
            out_dir / "load.png",
            title,
        )


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

    d = asdict(load_cfg) if is_dataclass(load_cfg) else dict(load_cfg)
    d["rates"] = [float(r) for r in d["rates"]]
    return d


def run(embedder_kwargs: dict, sentences: list[str], load_cfg, seed: int = 0, timeout_s: float = 900) -> LoadResult:
    """Measure in a fresh process (``python -m pipeline.measure.load``), like the benchmark stage."""
    settings = settings_of(load_cfg)
    spec = {
        "embedder": {k: (str(v) if isinstance(v, Path) else v) for k, v in embedder_kwargs.items()},
        "sentences": list(sentences),
        "load": settings,
        "seed": seed,
    }
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    try:
        raw = child.call("pipeline.measure.load", spec, what="load process", timeout=timeout_s, env=env)
    except child.ChildFailed as exc:
        raise LoadError(str(exc)) from exc
    return LoadResult(raw, settings)


if __name__ == "__main__":
    raise SystemExit(child.serve(measure))
