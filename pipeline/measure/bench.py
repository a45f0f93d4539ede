"""Benchmark stage: time the whole embed path (tokenize, infer, pool, normalize).

The measurement runs in a fresh Python process that imports only the embedder (no
torch, no MLflow), so the cold start is a real cold start and the peak RSS is the
embed path's own.  Every call is timed with ``time.perf_counter_ns`` after warm-up; the raw samples are
kept.  The timed calls run as ``passes`` passes over the same batches: ``throughput.sentences_per_s`` is
the best pass, ``throughput.mean_sentences_per_s`` all of them; the latency percentiles use every call.

    python -m pipeline.measure.bench REQUEST.json REPLY.json     # what the stage runs (pipeline.core.child)
"""

from __future__ import annotations

import gc
import math
import os
import random
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.core import child, ownership
from pipeline.core.errors import PipelineError
from pipeline.core.machine_lock import MachineLock
from pipeline.core.vocab import QUIET, Metric
from pipeline.embedder.grouping import token_figures
from pipeline.measure import calibration, conditions, roofline
from pipeline.measure.process_stats import peak_rss_mb, timer_overhead_ns
from pipeline.measure.signals import Mark, Window

if TYPE_CHECKING:
    from pipeline.embedder.spec import EmbedderSpec
    from pipeline.runtime.providers import Runtime


@dataclass(frozen=True)
class Latency:
    """Per-call latency in milliseconds, from raw nanosecond samples."""

    samples_ns: tuple[int, ...] = field(repr=False)
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float

    @classmethod
    def from_samples(cls, samples_ns) -> "Latency":
        a = np.asarray(samples_ns, dtype=np.float64) / 1e6
        if a.size == 0:
            raise ValueError("no latency samples")
        p50, p90, p95, p99 = np.percentile(a, [50, 90, 95, 99])
        return cls(tuple(int(s) for s in samples_ns), float(p50), float(p90), float(p95), float(p99), float(a.mean()), float(a.std()))


@dataclass(frozen=True)
class Plan:
    """The ``bench.*`` settings the benchmark process times with, typed on both sides of the process
    boundary (the process may run in a provider's own environment, where the config package is not)."""

    batch_size: int
    warmup: int
    iterations: int
    min_iterations: int
    max_seconds: float
    seed: int = 0
    passes: int = 3

    @classmethod
    def of(cls, bench_cfg) -> "Plan":
        return cls(**{f.name: getattr(bench_cfg, f.name) for f in fields(cls)})


@dataclass(frozen=True)
class BenchResult:
    latency: Latency
    batch_size: int
    throughput: float  # sentences per second in the best pass over the timed calls
    session_s: float  # cold start: building the embedder (tokenizer + ONNX Runtime session)
    first_call_ms: float
    peak_rss_mb: float
    timer_overhead_ns: float  # cost of one perf_counter_ns pair, measured in the same process
    iterations: int
    achieved_gflops: float | None = None  # useful model FLOP/s over the timed calls
    peak_gflops: float | None = None  # this machine's measured matmul peak at these threads and precision
    passes: int = 1  # passes over the same timed calls
    mean_throughput: float | None = None  # sentences per second over all passes
    conditions: "conditions.Conditions | None" = None  # the machine while it was measured
    contended: str | None = None  # why the measurement is not comparable (None: it is)
    attempts: int = 1  # benchmark processes run (contended attempts are measured again)
    notes: list[str] = field(default_factory=list)  # what could not be measured, and why
    tokens_per_s: float | None = None  # real (unpadded) tokens per second in the best pass
    padding_share: float | None = None  # padded positions over real tokens, as the embedder cut the timed calls

    @property
    def roofline_fraction(self) -> float | None:
        if self.achieved_gflops is None or not self.peak_gflops:
            return None
        return self.achieved_gflops / self.peak_gflops

    def tags(self) -> dict[str, str]:
        """``bench.contended``: the reason, or ``false``; the machine's description."""
        t = {Metric.CONTENDED: self.contended or QUIET}
        if self.conditions is not None:
            t.update(self.conditions.tags())
        if self.notes:
            t["bench.notes"] = "; ".join(self.notes)[:4000]
        return t

    def metrics(self) -> dict[str, float]:
        lat = self.latency
        return {
            Metric.P50_MS: lat.p50_ms,
            "latency.p90_ms": lat.p90_ms,
            Metric.P95_MS: lat.p95_ms,
            Metric.P99_MS: lat.p99_ms,
            "latency.mean_ms": lat.mean_ms,
            "latency.std_ms": lat.std_ms,
            Metric.THROUGHPUT: self.throughput,
            "throughput.mean_sentences_per_s": self.mean_throughput if self.mean_throughput is not None else self.throughput,
            "bench.passes": float(self.passes),
            "load.session_s": self.session_s,
            "load.first_call_ms": self.first_call_ms,
            Metric.PEAK_RSS_MB: self.peak_rss_mb,
            "bench.timer_overhead_ns": self.timer_overhead_ns,
            "bench.iterations": float(self.iterations),
            Metric.CONTENDED: float(self.contended is not None),
            "bench.attempts": float(self.attempts),
            **({"throughput.tokens_per_s": self.tokens_per_s} if self.tokens_per_s is not None else {}),
            **({"bench.padding_share": self.padding_share} if self.padding_share is not None else {}),
            **(self.conditions.metrics() if self.conditions is not None else {}),
            **(
                {
                    "roofline_fraction": self.roofline_fraction,
                    "roofline.achieved_gflops": self.achieved_gflops,
                    "roofline.peak_gflops": self.peak_gflops,
                }
                if self.roofline_fraction is not None
                else {}
            ),
        }


def measure(spec: dict) -> dict:
    """Run inside the fresh process: build the embedder, warm up, time passes over the same calls.

    One pass is a fixed list of calls (batches drawn in turn from the shuffled sentences),
    sized from the warm-up's per-call time so that all passes fit in ``max_seconds`` (within
    ``min_iterations`` .. ``iterations`` calls in all).  Every pass runs the very same batches,
    so passes differ only by what the machine did meanwhile.
    """
    from pipeline.embedder.spec import EmbedderSpec

    sentences: list[str] = spec["sentences"]
    plan = Plan(**spec["plan"])
    rng = random.Random(plan.seed)
    rng.shuffle(sentences)
    bs = plan.batch_size
    if bs > len(sentences):  # every call would embed the whole pool, not a batch of bs
        raise BenchError(f"batch_size {bs} is larger than the pool of {len(sentences)} sentences: refused")
    passes = max(1, plan.passes)

    embedder = EmbedderSpec.from_dict(spec["embedder"])
    probe = conditions.Probe(embedder.threads, spec.get("probe_model"))
    probe_before = probe()
    t0 = time.perf_counter()
    emb = embedder.build()
    session_s = time.perf_counter() - t0
    it = _batches(sentences, bs)
    first_call_ns, per_call_s = _warm_up(emb, it, plan.warmup, bs)
    n_max, n_min = plan.iterations, plan.min_iterations
    affordable = int(plan.max_seconds / max(per_call_s, 1e-9))
    per_pass = max(math.ceil(n_min / passes), min(n_max, affordable) // passes, 1)
    timed = [next(it) for _ in range(per_pass)]

    embed = emb.embed
    mark = Mark.now()
    samples, pass_ns = _timed_passes(embed, timed, passes, bs)
    window = Window.between(mark, Mark.now())
    # the real (unpadded, truncated) token counts of one pass, for the FLOP count
    per_batch = [emb.token_counts(batch) for batch in timed]
    lengths = [n for counts in per_batch for n in counts]
    # the embedder's idle threads spin for a while after its last call: let them go before the
    # probe runs again, or the probe measures them (a 1.8x "slowdown" on a quiet machine)
    del emb, embed
    gc.collect()
    time.sleep(0.05)
    probe_after = probe()
    return {
        "samples_ns": samples,
        "pass_ns": pass_ns,
        "calls_per_pass": per_pass,
        "texts_per_pass": sum(len(batch) for batch in timed),  # the texts actually embedded, not bs * calls
        "token_lengths": lengths,
        "batch_token_lengths": per_batch,  # per timed call: the padding share at this batch size
        "session_s": session_s,
        "first_call_ms": first_call_ns / 1e6,
        "peak_rss_mb": peak_rss_mb(),
        "timer_overhead_ns": timer_overhead_ns(),
        "window": asdict(window),
        "probe_before_ms": probe_before,
        "probe_after_ms": probe_after,
    }


def _batches(sentences: list[str], bs: int):
    """Batches of ``bs`` drawn in turn from ``sentences``, for ever."""
    i = 0
    while True:
        if i + bs > len(sentences):
            i = 0
        yield sentences[i : i + bs]
        i += bs


def _warm_up(emb, it, warmup: int, bs: int) -> tuple[int, float]:
    """The first call (ns), then ``warmup`` calls; returns the first call and the median warm call (s)."""
    pc = time.perf_counter_ns
    t1 = pc()
    emb.embed(next(it), batch_size=bs)
    first_call_ns = pc() - t1
    warm: list[int] = []
    for _ in range(warmup):
        batch = next(it)
        t = pc()
        emb.embed(batch, batch_size=bs)
        warm.append(pc() - t)
    return first_call_ns, (float(np.median(warm)) if warm else float(first_call_ns)) / 1e9


def _timed_passes(embed, timed: list, passes: int, bs: int) -> tuple[list[int], list[int]]:
    """``passes`` passes over the very same calls: every call's time and each pass's total (ns)."""
    pc = time.perf_counter_ns
    samples: list[int] = []
    pass_ns: list[int] = []
    for _ in range(passes):
        total = 0
        for batch in timed:
            t = pc()
            embed(batch, batch_size=bs)
            d = pc() - t
            samples.append(d)
            total += d
        pass_ns.append(total)
    return samples, pass_ns


class BenchError(PipelineError, RuntimeError):
    pass


def run(
    embedder: "EmbedderSpec | dict",
    sentences: list[str],
    bench_cfg,
    model_config: dict | None = None,
    cache_dir: str | Path | None = None,
    timeout_s: float = 600,
    precision: str = "fp32",
    runtime: "Runtime | None" = None,
) -> BenchResult:
    """Measure in a fresh process (see the module docstring), until the machine was quiet.

    Each attempt records its conditions (:mod:`pipeline.measure.conditions`).  A contended attempt is
    measured again, up to ``bench.contention.retries`` times with ``retry_wait_s`` between; if
    the last one is still contended the result says why (``contended``): it is kept, and its
    latencies are not comparable.  With the model's ``config.json`` contents, the result carries
    the roofline figures, against the matrix-product peak of ``precision`` (fp32, or int8 for
    quantized graphs), measured only on a quiet machine.  ``runtime``: the provider's own
    environment (:mod:`pipeline.runtime.providers`) whose python runs the benchmark process; None: this one.
    """
    from pipeline.embedder.spec import EmbedderSpec

    embedder = EmbedderSpec.of(embedder)
    if bench_cfg.batch_size > len(sentences):
        raise BenchError(f"batch_size {bench_cfg.batch_size} is larger than the pool of {len(sentences)} sentences: refused")
    th = conditions.Thresholds.of(getattr(bench_cfg, "contention", None))
    threads = embedder.threads
    cal, cal_why = calibration.calibrate(threads, cache_dir, th) if th.enabled else (None, None)
    raw, cond, why, attempts = _until_quiet(embedder, sentences, bench_cfg, timeout_s, th, cal, runtime, cache_dir)
    best_pass_s = min(raw["pass_ns"]) / 1e9
    per_pass_sentences = raw["texts_per_pass"]  # the texts embedded, not batch_size x calls
    achieved, peak, peak_why = roofline.for_benchmark(model_config, raw["token_lengths"], best_pass_s, threads, cache_dir, precision, th)
    return BenchResult(
        latency=Latency.from_samples(raw["samples_ns"]),
        batch_size=bench_cfg.batch_size,
        throughput=per_pass_sentences / best_pass_s,
        session_s=raw["session_s"],
        first_call_ms=raw["first_call_ms"],
        peak_rss_mb=raw["peak_rss_mb"],
        timer_overhead_ns=raw["timer_overhead_ns"],
        iterations=len(raw["samples_ns"]),
        achieved_gflops=achieved,
        peak_gflops=peak,
        passes=len(raw["pass_ns"]),
        mean_throughput=per_pass_sentences * len(raw["pass_ns"]) / (sum(raw["pass_ns"]) / 1e9),
        conditions=cond,
        contended=why,
        attempts=attempts,
        notes=[n for n in (cal_why, f"roofline: {peak_why}" if peak_why else None) if n],
        **token_figures(raw.get("batch_token_lengths"), best_pass_s, bench_cfg.batch_size, embedder.call_cost),
    )


def _until_quiet(embedder, sentences, bench_cfg, timeout_s: float, th, cal, runtime, cache_dir):
    """Benchmark attempts until one is quiet (or the retries run out); returns (raw, conditions,
    why contended, attempts).  A quiet-looking attempt whose probe disagrees with the calibration
    has the calibration measured again, once."""
    attempts, recalibrated = 0, False
    while True:
        attempts += 1
        raw, cond = _attempt(embedder, sentences, bench_cfg, timeout_s, th, cal, runtime)
        why = cond.verdict(th)
        if why and not recalibrated and calibration.disagrees(cond, th):
            # quiet by every direct signal, yet a probe outside: the calibration is suspect (measured again once)
            recalibrated = True
            new, _ = calibration.calibrate(embedder.threads, cache_dir, th, force=True)
            if new is not None:
                cal = new
                calibration.apply(cond, cal, th)
                why = cond.verdict(th)
        if why is None or attempts > th.retries:
            break
        print(
            f"[bench] contended ({why}); measuring again in {th.retry_wait_s:g} s (attempt {attempts + 1} of {th.retries + 1})", flush=True
        )
        time.sleep(th.retry_wait_s)
    return raw, cond, why, attempts


def _attempt(embedder, sentences: list[str], bench_cfg, timeout_s: float, th, cal, runtime=None):
    """One benchmark process, holding the machine lock; returns its raw output and conditions."""
    spec = {"embedder": embedder.to_dict(), "sentences": list(sentences), "plan": asdict(Plan.of(bench_cfg))}
    label = Path(embedder.model_dir).name
    clean_stale_temps()
    with (
        MachineLock(th.wait_for_other_s if th.enabled else 0.0, label) as lock,
        tempfile.TemporaryDirectory(prefix=f"{TEMP_PREFIX}{os.getpid()}-") as tmp,
    ):
        ownership.mark(tmp)  # what proves to a later cleanup that the pipeline made this folder
        if runtime is not None and runtime.own:  # no onnx there to make the probe's graph
            (Path(tmp) / "probe.onnx").write_bytes(conditions.probe_model_bytes())
            spec["probe_model"] = str(Path(tmp) / "probe.onnx")
        if runtime is not None:
            python, env = runtime.python, runtime.process_env()
        else:
            python, env = sys.executable, dict(os.environ)
            env.pop("OMP_NUM_THREADS", None)
        mem = conditions.MemProbe() if cal is not None else None  # here: its 128 MiB stay out of the job's peak RSS
        mem_before = mem() if mem else None
        try:  # the process dies with this one (a killed job leaves no benchmark running beside the next)
            raw = child.call(
                "pipeline.measure.bench", spec, what="benchmark process", timeout=timeout_s, python=python, env=env, folder=tmp
            )
        except child.ChildFailed as exc:
            raise BenchError(str(exc)) from exc
        mem_after = mem() if mem else None
    spread, pass_cv, lat_cv = conditions.stability(raw["pass_ns"], raw["samples_ns"])
    cond = conditions.Conditions(
        window=Window(**raw["window"]),
        probe_before_ms=raw.get("probe_before_ms"),
        probe_after_ms=raw.get("probe_after_ms"),
        mem_before_ms=mem_before,
        mem_after_ms=mem_after,
        pass_spread=spread,
        shortest_pass_s=min(raw["pass_ns"]) / 1e9,
        pass_cv=pass_cv,
        latency_cv=lat_cv,
        threads=embedder.threads,
        other_benchmark=lock.contention,
    )
    if cal is not None:
        calibration.apply(cond, cal, th)
    return raw, cond


TEMP_PREFIX = "bench-"  # bench-<pid of the process that made it>-<random>, in the system temp folder


def clean_stale_temps(root: str | Path | None = None) -> list[Path]:
    """Remove the ``bench-*`` folders that a killed benchmark's parent on this host left behind:
    only those whose marker proves the pipeline made them (:mod:`pipeline.core.ownership`); a user's
    ``bench-2025-12-01/`` is never touched.  Returns what was removed."""
    return ownership.clean_stale(root or tempfile.gettempdir(), prefix=TEMP_PREFIX)


if __name__ == "__main__":
    raise SystemExit(child.serve(measure))
