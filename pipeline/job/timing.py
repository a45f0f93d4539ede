"""The timing stages of a job (pipeline/job/stages.py): the benchmark in a fresh process (in the provider's
own environment where it has one), its files, and the load scenario."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from pipeline.core.plots import ecdf, pyplot, save
from pipeline.job.results import LoadRun
from pipeline.measure import bench
from pipeline.measure.bench import BenchResult

log = logging.getLogger("pipeline.job.run")


def benchmark(cfg, spec, rt, sentences: list[str], model_config: dict, with_quality: bool, workload: str, out_dir: Path) -> BenchResult:
    """benchmark (fresh process), then what it takes to time it again and its latency files."""
    log.info("benchmark: batch %d", cfg.bench.batch_size)
    precision = "int8" if cfg.variant.kind == "quantize" else "fp32"  # the peak its matmuls can reach
    b = bench.run(
        spec, sentences, cfg.bench, model_config=model_config, cache_dir=cfg.cache_dir, precision=precision, runtime=rt if rt.own else None
    )
    if b.contended:
        log.warning("benchmark contended after %d attempt(s): %s", b.attempts, b.contended)
    # what it takes to time this configuration again (the sweep re-times its leaders at its end)
    (out_dir / "bench_spec.json").write_text(
        json.dumps(
            {
                "embedder": spec.to_dict(),
                "precision": precision,
                # the provider's own environment, where a re-timing must run too (None: this one)
                "runtime": {"python": rt.python, "env": rt.env, "packages": list(rt.packages)} if rt.own else None,
                "model_config": model_config,
                "bench": OmegaConf.to_container(OmegaConf.structured(cfg.bench)),
                "quality": OmegaConf.to_container(OmegaConf.structured(cfg.quality)) if with_quality else None,
                "conditions": b.conditions.to_dict() if b.conditions is not None else None,
                # a workload's own texts (not the STS sentences): a re-timing times the same ones
                **({"texts": list(sentences)} if workload != "sentences" else {}),
            },
            indent=2,
            default=str,
        )
    )
    np.savetxt(
        out_dir / "latency_samples_ns.csv", np.asarray(b.latency.samples_ns, dtype=np.int64), fmt="%d", header="latency_ns", comments=""
    )
    _latency_figure(
        b.latency.samples_ns,
        out_dir / "latency.png",
        f"{cfg.model.name} {cfg.variant.name} {cfg.provider.name} {cfg.pooling.mode} batch {cfg.bench.batch_size}",
    )
    return b


def load_scenario(cfg, spec, sentences: list[str], out_dir: Path) -> LoadRun:
    """load scenario: open-loop arrivals through the micro-batching front (fresh process)."""
    from pipeline.core.machine_lock import MachineLock
    from pipeline.measure import load
    from pipeline.measure.conditions import Thresholds, window_reasons
    from pipeline.measure.signals import Mark, Window

    lc = cfg.bench.load
    log.info("load: max_batch %d, max_wait %g ms, rates %s", lc.max_batch, lc.max_wait_ms, list(lc.rates))
    th = Thresholds.of(cfg.bench.contention)
    with MachineLock(th.wait_for_other_s if th.enabled else 0.0, f"load {cfg.model.name}") as lock:
        mark = Mark.now(children=True)
        lr = load.run(spec.to_dict(), sentences, lc, seed=cfg.bench.seed)  # a child process, waited for
        window = Window.between(mark, Mark.now(children=True))
    # the same direct signals as the benchmark's (the generator's preemptions are its own: not judged)
    why = lock.contention or (
        "; ".join(window_reasons(window, th, judge_cs=False)).replace("the timed calls", "the load run") or None if th.enabled else None
    )
    lr.write(
        out_dir,
        f"{cfg.model.name} {cfg.variant.name} {cfg.provider.name} threads {cfg.provider.threads} "
        f"max_batch {lc.max_batch} wait {lc.max_wait_ms:g} ms",
    )
    # the load run's own conditions (the generator shares the cores: its own CPU is not "other")
    return LoadRun(lr, window.other_cpu_share, window.other_cores, why)


def _latency_figure(samples_ns, path: Path, title: str) -> None:
    """One job's latency: the histogram and the CDF with its p50, p95 and p99."""
    ms, frac = ecdf(np.asarray(samples_ns, dtype=np.float64) / 1e6)
    fig, (ax1, ax2) = pyplot().subplots(1, 2, figsize=(10, 3.6))
    ax1.hist(ms, bins=min(60, max(10, len(ms) // 5)), color="#4477aa")
    ax1.set_xlabel("latency per call (ms)")
    ax1.set_ylabel("calls")
    ax1.set_title("histogram")
    ax2.plot(ms, frac, color="#4477aa")
    for q, c in ((50, "#228833"), (95, "#ee6677"), (99, "#aa3377")):
        v = np.percentile(ms, q)
        ax2.axvline(v, color=c, ls="--", lw=1, label=f"p{q} {v:.2f} ms")
    ax2.set_xlabel("latency per call (ms)")
    ax2.set_ylabel("fraction of calls")
    ax2.set_title("CDF")
    ax2.legend(loc="lower right")
    fig.suptitle(title)
    save(fig, path)
