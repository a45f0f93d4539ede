"""The load scenario (pipeline/measure/load.py): open-loop arrivals, latency from the scheduled time.

The scheduler is checked against fake servers with a known service time, where queueing
theory says what the waiting must be: the Pollaczek-Khinchine formula for one FIFO server
with Poisson arrivals (M/G/1; M/D/1 for a constant service time),

    mean wait in queue  Wq = lambda * E[S^2] / (2 * (1 - rho)),   rho = lambda * E[S].

The service moments are the ones measured inside the fake (a loaded machine stretches a
sleep), and the bounds are wide (a factor of 2 and a millisecond or two): what is checked is
that the queueing delay is there, of the size theory gives, which measuring from the send
time or a closed loop would hide.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from pipeline.embedder.batcher import Batcher
from pipeline.measure import load


class Sleeper:
    """A server whose call costs ``base + per_text * n`` seconds (a sleep: no CPU); records each."""

    def __init__(self, base: float, per_text: float = 0.0):
        self.base, self.per_text = base, per_text
        self.durations: list[float] = []
        self.lock = threading.Lock()

    def __call__(self, texts):
        t = time.perf_counter()
        time.sleep(self.base + self.per_text * len(texts))
        self.durations.append(time.perf_counter() - t)
        return np.zeros((len(texts), 2), dtype=np.float32)


def test_the_schedule_is_poisson_at_its_nominal_rate():
    off = load.poisson_offsets(100.0, 20000, seed=1)
    gaps = np.diff(np.concatenate([[0.0], off]))
    assert off[-1] == pytest.approx(200.0, rel=1e-3) and off[-1] <= 200.0  # n arrivals within n / rate s
    assert gaps.mean() == pytest.approx(0.01, rel=0.01)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.05)  # exponential gaps: CV 1
    assert np.all(gaps >= 0)
    assert np.array_equal(off, load.poisson_offsets(100.0, 20000, seed=1))  # precomputed, seeded


def _service_time(server, n: int = 40) -> float:
    for _ in range(n):
        server(["x"])
    s = float(np.mean(server.durations))
    server.durations.clear()
    return s


def _mean_wait(rho_target: float, n: int, server: Sleeper) -> tuple[float, float, float]:
    """Drive one FIFO server at the rate that makes it ``rho_target`` busy: (measured Wq, P-K Wq, rho)."""
    s_mean = _service_time(server)
    rate = rho_target / s_mean
    with Batcher(server, max_batch=1) as b:
        p = load.drive(b.submit, ["x"] * n, load.poisson_offsets(rate, n, seed=7), timeout_s=5.0)
    assert p.ok == n and p.lost == 0
    s = np.asarray(server.durations)
    rho = rate * s.mean()
    wq_theory = rate * float(np.mean(s**2)) / (2 * (1 - rho))
    wq_measured = np.mean(p.latencies_ms) / 1e3 - s.mean()
    return wq_measured, wq_theory, rho


def test_queueing_delay_appears_where_md1_says():
    wq, theory, rho = _mean_wait(0.5, 900, Sleeper(0.003))
    assert 0.2 < rho < 0.85, rho  # aimed at 0.5; a loaded machine stretches the sleeps
    # M/D/1 at rho 0.5: Wq = S/2 (1.5 ms); within a factor 2, plus 3 ms of thread wake-ups
    assert 0.5 * theory - 0.0005 <= wq <= 2 * theory + 0.003, (wq, theory, rho)
    # at a low load there is (almost) no queue: latency is the service time
    wq_low, theory_low, rho_low = _mean_wait(0.1, 150, Sleeper(0.003))
    assert theory_low < theory / 4
    assert wq_low < max(wq / 2, theory_low + 0.003), (wq_low, wq)


def test_latency_counts_from_the_scheduled_arrival_not_the_send():
    """A server that stalls for 300 ms: requests scheduled during the stall waited for it."""
    gate = threading.Event()

    def stalling(texts):
        if texts == ["0"]:
            gate.wait(5)
        return np.zeros((len(texts), 2), dtype=np.float32)

    threading.Timer(0.3, gate.set).start()
    with Batcher(stalling, max_batch=1) as b:
        offsets = np.arange(1, 31) * 0.01  # 30 requests, every 10 ms, during the stall
        p = load.drive(b.submit, [str(i) for i in range(30)], offsets, timeout_s=5.0)
    lat = np.asarray(p.latencies_ms)
    # request i arrived at 10*(i+1) ms and was answered after the stall ended (~300 ms)
    expected = 300 - 10 * np.arange(1, 31)
    assert np.all(lat[:25] >= expected[:25] - 30)
    assert p.p50_ms > 100  # a closed loop or send-time clock would report ~0 for most of them


def test_micro_batching_carries_what_one_call_per_request_cannot():
    """Cost 4 ms + 0.2 ms per text: one call per request saturates near 240/s; batches do not."""
    rate, n = 600.0, 600
    out = {}
    for name, kw in {"per_request": dict(max_batch=1), "batched": dict(max_batch=32, max_wait_ms=0)}.items():
        server = Sleeper(0.004, 0.0002)
        with Batcher(server, **kw, timeout_ms=2000) as b:
            out[name] = load.drive(b.submit, ["x"] * n, load.poisson_offsets(rate, n, seed=3), timeout_s=2.0)
    per, bat = out["per_request"], out["batched"]
    assert per.achieved_qps < 0.7 * rate  # saturated: the queue grew for the whole second
    assert bat.achieved_qps > 0.85 * rate
    assert bat.p95_ms * 3 < per.p95_ms


def test_the_generator_is_light_against_a_no_op_server():
    with Batcher(lambda texts: np.zeros((len(texts), 2), np.float32), max_batch=1) as b:
        p = load.drive(b.submit, ["x"] * 1000, load.poisson_offsets(1000.0, 1000, seed=0), timeout_s=2.0)
    assert p.ok == 1000
    assert p.achieved_qps > 0.8 * 1000
    assert p.p50_ms < 20  # typically well under 1 ms
    assert p.cpu_s / p.requests < 0.002  # CPU per request (generator + front), typically ~50 us


def test_dropped_and_timed_out_requests_count_as_missing_the_target():
    gate = threading.Event()

    def stuck(texts):
        gate.wait(5)
        return np.zeros((len(texts), 2), dtype=np.float32)

    with Batcher(stuck, max_batch=1, max_queue=5, timeout_ms=100) as b:
        p = load.drive(b.submit, ["x"] * 20, np.arange(20) * 0.001, timeout_s=0.1)
        gate.set()
    assert p.dropped >= 10 and p.timed_out >= 1 and p.lost == 20 - p.ok
    assert sorted(p.latencies_ms)[p.ok] >= 100  # every lost request counts at least the timeout


SETTINGS = dict(
    rates=[50.0, 200.0, 1000.0],
    seconds_per_rate=0.6,
    min_requests=60,
    p95_target_ms=20.0,
    at_qps=100.0,
    search_steps=3,
    saturation_ratio=0.9,
    timeout_ms=1000.0,
    warmup_seconds=0.2,
)


def test_the_search_brackets_the_rate_where_p95_crosses_the_target():
    server = Sleeper(0.002)  # capacity ~500/s: 50/s is far within the target, 1000/s saturates
    with Batcher(server, max_batch=1) as b:
        sc = load.Scenario(load.Driver.for_batcher(b, ["x"], SETTINGS), SETTINGS)
        r = sc.run()
    measured = sorted(p.offered_qps for p in sc.points)
    assert 100.0 in measured  # the study's rate is always measured
    assert r["at_qps"]["offered_qps"] == 100.0
    assert 50 <= r["max_qps_at_p95_target"] < 1000
    assert r["first_rate_past_target"] is not None and not r["limited_by_rates"]
    assert r["max_qps_at_p95_target"] < r["first_rate_past_target"]
    # bounded: each rate and step once, a miss twice (confirm_misses)
    assert len(sc.points) <= 2 * (len(SETTINGS["rates"]) + 1 + SETTINGS["search_steps"])
    within = [p for p in sc.points if p.offered_qps <= r["max_qps_at_p95_target"] and not p.superseded]
    assert all(p.p95_ms <= 20.0 for p in within)


def test_a_server_that_never_misses_gives_a_lower_bound():
    with Batcher(lambda texts: np.zeros((len(texts), 2), np.float32), max_batch=8) as b:
        settings = {**SETTINGS, "rates": [50.0, 100.0]}
        sc = load.Scenario(load.Driver.for_batcher(b, ["x"], settings), settings)
        r = sc.run()
    assert r["limited_by_rates"] and r["max_qps_at_p95_target"] == 100.0


def test_the_load_process_on_the_tiny_model(tiny_bert, tmp_path):
    """The fresh-process measurement end to end: metrics, per-rate table, every request, figure."""
    from pipeline.config import LoadConfig, ModelConfig, VariantConfig
    from pipeline.model.export import export
    from pipeline.model.sources import resolve

    cfg = ModelConfig(name="tiny-bert", source="local", path=str(tiny_bert), max_length=64, sha256=None)
    art = export(resolve(cfg), cfg, VariantConfig(), tmp_path / "cache")
    lc = LoadConfig(
        rates=[50.0, 100.0],
        seconds_per_rate=0.5,
        min_requests=40,
        warmup_seconds=0.2,
        overhead_seconds=0.3,
        max_batch=8,
        max_wait_ms=1.0,
        search_steps=1,
    )
    result = load.run(
        {"model_dir": str(art.folder), "max_length": 64, "threads": 1}, ["a dog runs", "two people are talking in a park", "red"] * 10, lc
    )
    m = result.metrics()
    for name in (
        "load.max_qps_at_p95_target",
        "load.p95_ms_at_100qps",
        "load.p99_ms_at_100qps",
        "load.achieved_qps_at_100qps",
        "load.lost_at_100qps",
        "load.generator.cpu_us_per_request",
        "load.generator.noop_p99_ms",
        "load.generator.achieved_ratio",
    ):
        assert name in m and np.isfinite(m[name]), name
    assert m["load.p50_ms_at_100qps"] <= m["load.p95_ms_at_100qps"] <= m["load.p99_ms_at_100qps"]
    assert m["load.generator.cpu_us_per_request"] > 0
    result.write(tmp_path, "tiny")
    assert (tmp_path / "load.png").stat().st_size > 1000
    import json

    table = json.loads((tmp_path / "load.json").read_text())
    assert [p["offered_qps"] for p in table["points"]][:2] == [50.0, 100.0]
    rows = (tmp_path / "load_latency.csv").read_text().splitlines()
    assert rows[0] == "offered_qps,latency_ms,status,kept" and len(rows) - 1 == sum(p["requests"] for p in table["points"])


def test_a_load_job_logs_the_load_metrics_params_and_figure(compose, tiny_bert, tiny_sts_dir, tmp_path):
    from conftest import tiny_overrides
    from mlflow.tracking import MlflowClient

    from pipeline.config import to_config
    from pipeline.job.run import execute

    dcfg = compose(
        tiny_overrides(tiny_bert, tiny_sts_dir, tmp_path)
        + [
            "bench.scenario=load",
            "+serve=mb16_w0",
            "bench.load.rates=[50,100]",
            "bench.load.seconds_per_rate=0.5",
            "bench.load.min_requests=40",
            "bench.load.warmup_seconds=0.2",
            "bench.load.overhead_seconds=0.3",
            "bench.load.search_steps=1",
        ]
    )
    cfg = to_config(dcfg)
    assert cfg.bench.load.max_batch == 16 and cfg.bench.load.max_wait_ms == 0
    result = execute(cfg, dcfg, tmp_path / "out")
    assert result.status == "ok", result.reason
    run = MlflowClient(cfg.tracking.resolved_uri()).get_run(result.run_id)
    m, params = run.data.metrics, run.data.params
    assert {"load.max_qps_at_p95_target", "load.p95_ms_at_100qps", "latency.p95_ms", "load.generator.cpu_share"} <= set(m)
    assert params["bench.scenario"] == "load" and params["bench.load.max_batch"] == "16" and params["bench.load.max_wait_ms"] == "0.0"
    artifacts = {a.path for a in MlflowClient(cfg.tracking.resolved_uri()).list_artifacts(result.run_id)}
    assert {"load.png", "load.json", "load_latency.csv"} <= artifacts


def test_load_settings_are_checked(compose):
    from pipeline.config import ConfigError, to_config

    for bad in ("bench.scenario=soak", "bench.load.max_batch=0", "bench.load.rates=[0,10]", "bench.load.saturation_ratio=1.5"):
        with pytest.raises(ConfigError):
            to_config(compose([bad]))
