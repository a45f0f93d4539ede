"""The conditions of a measurement: was the machine quiet while a benchmark was timed?

A latency taken while another process shares the cores is not the configuration's latency.
This module measures what can be read about that from inside a Linux process, with no extra
privileges:

- the direct signals of :mod:`pipeline.measure.signals` over the timed window: the CPU other processes
  used (in cores, and as a share of the machine), CPU pressure (PSI), steal time, this
  process's involuntary context switches; the load average is recorded, never judged;
- two probes, timed before and after the job at the benchmark's thread count: a small matrix
  product (in L2: a shared core) and a streaming copy of 64 MiB (beyond the caches: a memory
  or cache thrasher), against this machine's quiet *distribution* of their readings
  (:mod:`pipeline.measure.calibration`);
- stability in the manner of ``pyperf check``: the spread between passes over the very same
  calls and their coefficient of variation.

:meth:`Conditions.verdict` turns these into a reason (``None``: not contended) using the stated
thresholds of ``conf/bench/default.yaml`` (``bench.contention``) and the calibrated limits (a
quiet reading's highest value times ``1 + calibration_margin``).  docs/measuring.md says
what each kind of interference looks like here.

This module imports nothing from the package but :mod:`pipeline.measure.signals` and the core
(:mod:`pipeline.core.machine`; :mod:`pipeline.core.child` runs the baselines in a fresh process).
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from pipeline.config import ContentionConfig
from pipeline.core import child
from pipeline.core.machine import fingerprint, governor
from pipeline.measure.signals import Mark, Window

# -- the calibration probe -------------------------------------------------------------------------
PROBE_N = 256  # a 256^3 product: ~0.2 ms on a quiet core, long enough to see a shared core
PROBE_REPEATS = 31


def probe_model_bytes() -> bytes:
    """The probe's graph (one MatMul), serialized: made with ``onnx``, which a provider's own
    environment does not have (the benchmark there gets these bytes in a file)."""
    from onnx import TensorProto, helper

    n = PROBE_N
    node = helper.make_node("MatMul", ["A", "B"], ["C"])
    graph = helper.make_graph(
        [node],
        "probe",
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, [n, n]), helper.make_tensor_value_info("B", TensorProto.FLOAT, [n, n])],
        [helper.make_tensor_value_info("C", TensorProto.FLOAT, [n, n])],
    )
    # IR version 8 (opset 18's own): the newest onnx writes one that older onnxruntime builds refuse
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8).SerializeToString()


def _probe_session(threads: int, model_file: str | None = None):
    import onnxruntime as ort

    n = PROBE_N
    model = Path(model_file).read_bytes() if model_file else probe_model_bytes()
    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    so.log_severity_level = 3
    # no spinning: the probe's idle threads must not compete with the benchmark's right after it
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    rng = np.random.default_rng(0)
    feeds = {"A": rng.standard_normal((n, n), dtype=np.float32), "B": rng.standard_normal((n, n), dtype=np.float32)}
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"]), feeds


class Probe:
    """A fixed small workload at a thread count: the median time of one call, in ms."""

    def __init__(self, threads: int, model_file: str | None = None):
        self.threads = threads
        self._sess, self._feeds = _probe_session(threads, model_file)
        for _ in range(5):  # warm-up: thread pool up, pages touched
            self._sess.run(None, self._feeds)

    def __call__(self, repeats: int = PROBE_REPEATS, ramp_s: float = 0.02) -> float:
        pc = time.perf_counter_ns
        run, feeds = self._sess.run, self._feeds
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < ramp_s:  # idle cores clock down: let them come back up first
            run(None, feeds)
        d = []
        for _ in range(repeats):
            t = pc()
            run(None, feeds)
            d.append(pc() - t)
        return float(np.median(d)) / 1e6


class MemProbe:
    """A streaming copy of ``MEM_MB`` MiB (beyond L2 and most L3s): the median time of one copy, in
    ms.  A cache or memory-bandwidth thrasher slows it where the matrix probe, in L2, does not see it."""

    def __init__(self, mb: int = 64):
        n = mb * (1 << 20) // 8
        self._src = np.arange(n, dtype=np.float64)
        self._dst = np.empty_like(self._src)
        for _ in range(2):
            np.copyto(self._dst, self._src)

    def __call__(self, repeats: int = 9) -> float:
        pc = time.perf_counter_ns
        d = []
        for _ in range(repeats):
            t = pc()
            np.copyto(self._dst, self._src)
            d.append(pc() - t)
        return float(np.median(d)) / 1e6


def machine_key(threads: int) -> str:
    """What a machine baseline depends on: the machine's fingerprint (CPU model, cores, kernel,
    host, machine id) and the thread count."""
    return f"{platform.machine()}-{fingerprint()['id']}-c{os.cpu_count()}-t{threads}"


def machine() -> dict:
    fp = fingerprint()
    return {
        "cpu_model": fp["cpu_model"],
        "cores": os.cpu_count() or 1,
        "governor": governor(),
        "machine": platform.machine(),
        "fingerprint": fp["id"],
        "kind": fp["kind"],
        "kernel": fp["kernel"],
        "host": fp["host"],
    }


# passes shorter than this (a tiny model's few calls) vary by the scheduler's quantum alone:
# their spread is recorded, not judged
MIN_PASS_S = 0.05


# -- thresholds and the verdict ------------------------------------------------------------------
class Thresholds(ContentionConfig):
    """``bench.contention`` as the checks read it: the fields are :class:`pipeline.config.ContentionConfig`'s
    (one home, defaults stated in conf/bench/default.yaml), plus how a signal's limit is found."""

    @classmethod
    def of(cls, cfg) -> "Thresholds":
        if cfg is None:
            return cls()
        if isinstance(cfg, cls):
            return cfg
        get = cfg.get if isinstance(cfg, dict) else (lambda k, d=None: getattr(cfg, k, d))
        return cls(**{k: get(k, v) for k, v in asdict(cls()).items()})

    def limit(self, name: str, quiet: dict | None) -> float:
        """The limit of a direct signal: its stated floor, or the machine's quiet highest reading
        times ``1 + calibration_margin`` where that is higher."""
        floor = {"cpu_pressure": self.max_cpu_pressure, "involuntary_cs_per_s": self.max_involuntary_cs_per_s}[name]
        high = (quiet or {}).get(name)
        return max(floor, high * (1 + self.calibration_margin)) if high is not None else floor


def window_reasons(w: Window | None, th: Thresholds, quiet: dict | None = None, judge_cs: bool = True) -> list[str]:
    """Why a window was contended, by the direct signals (empty: quiet).  ``quiet``: the calibrated
    highest quiet readings of the signals (:mod:`pipeline.measure.calibration`)."""
    if w is None:
        return []
    why = []
    if w.other_cores is not None and w.other_cores > th.max_other_cores:
        why.append(f"other processes used {w.other_cores:.2f} cores during the timed calls (limit {th.max_other_cores:g})")
    elif w.other_cpu_share is not None and w.other_cpu_share > th.max_other_cpu_share:
        why.append(f"other processes used {w.other_cpu_share:.0%} of the CPU during the timed calls (limit {th.max_other_cpu_share:.0%})")
    if w.steal_share is not None and w.steal_share > th.max_steal_share:
        why.append(f"steal time {w.steal_share:.0%} (limit {th.max_steal_share:.0%})")
    # PSI and preemptions also count the benchmark's own threads waiting for each other (a quiet
    # batch-8 job with ONNX Runtime's spinning pool and the tokenizer was preempted 999 times/s):
    # they are judged only while other processes ran too (``pressure_needs_other_cores``)
    if w.other_cores is not None and w.other_cores < th.pressure_needs_other_cores:
        return why
    lim = th.limit("cpu_pressure", quiet)
    if w.cpu_pressure is not None and w.cpu_pressure > lim:
        why.append(f"CPU pressure: a task waited for a CPU {w.cpu_pressure:.0%} of the time (PSI some; limit {lim:.0%})")
    lim = th.limit("involuntary_cs_per_s", quiet)
    if judge_cs and w.involuntary_cs_per_s > lim:
        why.append(f"the benchmark was preempted {w.involuntary_cs_per_s:.0f} times/s (limit {lim:.0f}/s)")
    return why


@dataclass
class Conditions:
    """The conditions of one measurement (one benchmark attempt)."""

    window: Window | None = None
    probe_before_ms: float | None = None
    probe_after_ms: float | None = None
    probe_baseline_ms: float | None = None  # the quiet median of the probe
    probe_limit_ms: float | None = None  # the quiet highest reading x (1 + margin)
    mem_before_ms: float | None = None
    mem_after_ms: float | None = None
    mem_limit_ms: float | None = None
    quiet: dict | None = None  # the calibrated highest quiet readings of the direct signals
    pass_spread: float | None = None  # (slowest pass - fastest pass) / fastest pass
    shortest_pass_s: float = 0.0  # passes shorter than MIN_PASS_S are too short to judge
    pass_cv: float | None = None  # std / mean of the pass times
    latency_cv: float | None = None  # std / mean of every timed call (pyperf warns above 0.1)
    threads: int = 0
    other_benchmark: str | None = None  # another pipeline benchmark held the machine
    machine: dict = field(default_factory=machine)

    @property
    def probe_slowdown(self) -> float | None:
        if not self.probe_baseline_ms:
            return None
        seen = [p for p in (self.probe_before_ms, self.probe_after_ms) if p is not None]
        return max(seen) / self.probe_baseline_ms if seen else None

    def probe_reasons(self) -> list[str]:
        """The probes read outside their quiet distribution (by the calibration margin)."""
        # the lower of the two readings: a probe judges what lasts across the job (one slow reading
        # alone is a spell the direct signals judge over the timed window itself)
        why = []
        for name, readings, limit in (
            ("calibration probe", (self.probe_before_ms, self.probe_after_ms), self.probe_limit_ms),
            ("memory probe", (self.mem_before_ms, self.mem_after_ms), self.mem_limit_ms),
        ):
            seen = [r for r in readings if r is not None]
            if limit and seen and min(seen) > limit:
                why.append(f"{name} {min(seen):.3g} ms before and after the job, outside its quiet distribution (limit {limit:.3g} ms)")
        return why

    def verdict(self, th: Thresholds) -> str | None:
        """Why this measurement is contended (several reasons joined by '; '), or None."""
        if not th.enabled:
            return None
        why = [self.other_benchmark] if self.other_benchmark else []
        why += window_reasons(self.window, th, self.quiet)
        why += self.probe_reasons()
        if self.pass_spread is not None and self.pass_spread > th.max_pass_spread and self.shortest_pass_s >= MIN_PASS_S:
            why.append(f"passes over the same calls differ by {self.pass_spread:.0%} (limit {th.max_pass_spread:.0%})")
        return "; ".join(why) or None

    def metrics(self) -> dict[str, float]:
        m: dict[str, float] = {"conditions.threads": float(self.threads), "conditions.cores": float(self.machine.get("cores") or 0)}
        w = self.window
        if w is not None:
            for name in (
                "load_before",
                "load_after",
                "involuntary_cs_per_s",
                "other_cpu_share",
                "steal_share",
                "other_cores",
                "cpu_pressure",
            ):
                if getattr(w, name, None) is not None:
                    m[f"conditions.{name}"] = float(getattr(w, name))
            if w.core_busy:
                m["conditions.busiest_core"] = float(max(w.core_busy))
        for name in (
            "probe_before_ms",
            "probe_after_ms",
            "probe_baseline_ms",
            "probe_limit_ms",
            "probe_slowdown",
            "mem_before_ms",
            "mem_after_ms",
            "mem_limit_ms",
            "pass_spread",
            "pass_cv",
            "latency_cv",
        ):
            v = getattr(self, name)
            if v is not None and np.isfinite(v):
                m[f"conditions.{name}"] = float(v)
        return m

    def tags(self) -> dict[str, str]:
        return {
            "conditions.cpu_model": str(self.machine.get("cpu_model")),
            "conditions.governor": str(self.machine.get("governor") or "unknown"),
            "machine.fingerprint": str(self.machine.get("fingerprint") or fingerprint()["id"]),
            "machine.kind": str(self.machine.get("kind") or fingerprint()["kind"]),
        }

    def to_dict(self) -> dict:
        d = asdict(self)
        d["probe_slowdown"] = self.probe_slowdown
        return d


def stability(pass_ns: list[int], samples_ns: list[int]) -> tuple[float | None, float | None, float | None]:
    """(pass spread, pass CV, per-call CV) of one benchmark."""
    spread = cv = None
    if len(pass_ns) > 1:
        p = np.asarray(pass_ns, dtype=np.float64)
        spread = float((p.max() - p.min()) / p.min()) if p.min() > 0 else None
        cv = float(p.std() / p.mean()) if p.mean() > 0 else None
    s = np.asarray(samples_ns, dtype=np.float64)
    lat_cv = float(s.std() / s.mean()) if s.size > 1 and s.mean() > 0 else None
    return spread, cv, lat_cv


# -- quiet windows, and baselines measured in a fresh process ---------------------------------------
def quiet_window(fn, th: Thresholds, attempts: int | None = None):
    """Run ``fn()`` until a run's window is quiet by the direct signals' stated floors; returns
    (result, window, reason): reason is None for a quiet run, else why the last attempt was
    contended (its result is not to be cached).  With detection off every run is 'contended'
    (``detection is off``): nothing measured then is trusted as a baseline."""
    attempts = (th.retries + 1) if attempts is None else attempts
    result = window = reason = None
    for i in range(max(1, attempts)):
        a = Mark.now()
        result = fn()
        window = Window.between(a, Mark.now())
        if not th.enabled:
            return result, window, "contention detection is off (bench.contention.enabled=false)"
        # the baseline's own thread pools are woken many times a second: their switches are not judged
        why = window_reasons(window, th, judge_cs=False)
        reason = "; ".join(why) or None
        if reason is None:
            break
        if i + 1 < attempts:
            time.sleep(th.retry_wait_s)
    return result, window, reason


def in_fresh_process(kind: str, threads: int, precision: str, th: Thresholds):
    """Measure a machine baseline (``calibrate`` or ``peak``) in a fresh Python process, as the
    benchmark itself is: a long-lived process (a sweep, a test run) holds thread pools that spin
    after use and count as its own CPU, hiding other processes' time.  Returns (value, window,
    reason) as :func:`quiet_window`; raises :class:`pipeline.core.child.ChildFailed`."""
    request = {"kind": kind, "threads": threads, "precision": precision, "thresholds": asdict(th)}
    out = child.call("pipeline.measure.baselines", request, what=f"baseline process ({kind})", timeout=600)
    return out["value"], Window(**out["window"]), out["reason"]
