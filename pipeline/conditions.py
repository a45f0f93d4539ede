"""The conditions of a measurement: was the machine quiet while a benchmark was timed?

A latency taken while another process shares the cores is not the configuration's latency.
This module measures what can be read about that from inside a Linux process, with no extra
privileges:

- the load average (``/proc/loadavg``) before and after;
- the CPU time *other* processes used during the timed window: the machine's busy time from
  ``/proc/stat`` minus this process's own CPU time, as a share of the window's capacity
  (wall time x cores), and the steal time a hypervisor took (``steal``);
- this process's involuntary context switches (``getrusage``): its threads were preempted;
- the machine: CPU model, cores, the frequency governor where ``/sys`` exposes it;
- a calibration probe: a fixed small matrix product at the benchmark's thread count, timed
  before and after the job, against this machine's quiet baseline for that thread count;
- stability in the manner of ``pyperf check``: the spread between passes over the very same
  calls and their coefficient of variation.

:func:`verdict` turns these into a reason (``None``: not contended) using the thresholds of
``conf/bench/default.yaml`` (``bench.contention``).  The load average is recorded, never
judged: it counts the benchmark's own threads, and a sweep's previous job keeps it high for a
minute after it ends.

This module imports nothing from the package but the leaves :mod:`pipeline.cache` and
:mod:`pipeline.machine_lock` (one benchmark at a time on a machine).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .cache import write_atomic
from .machine_lock import LOCK_NAME, MachineLock, machine_lock_path  # noqa: F401  (the benchmark's lock, re-exported)

_CPU_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def governor() -> str | None:
    try:
        return Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor").read_text().strip()
    except OSError:
        return None


def loadavg() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:  # pragma: no cover - not on Linux
        return float("nan")


def _proc_stat() -> dict[str, float] | None:
    """Whole-machine CPU times in seconds (the ``cpu`` line of /proc/stat), or None."""
    try:
        with open("/proc/stat") as f:
            parts = f.readline().split()
    except OSError:
        return None
    if not parts or parts[0] != "cpu":
        return None
    tick = os.sysconf("SC_CLK_TCK")
    vals = [int(x) / tick for x in parts[1 : 1 + len(_CPU_FIELDS)]]
    return dict(zip(_CPU_FIELDS, vals))


@dataclass
class Mark:
    """What is read at one instant; two marks make a :class:`Window`."""

    wall: float
    stat: dict[str, float] | None
    own_cpu: float  # this process's user + system CPU seconds (all threads)
    nivcsw: int
    load: float

    @classmethod
    def now(cls, children: bool = False) -> "Mark":
        """``children``: count the CPU of this process's finished children as its own (a window
        around a subprocess that is waited for; elsewhere a child reaped inside the window would
        hide other processes' time)."""
        ru = resource.getrusage(resource.RUSAGE_SELF)
        own = ru.ru_utime + ru.ru_stime
        if children:
            ch = resource.getrusage(resource.RUSAGE_CHILDREN)
            own += ch.ru_utime + ch.ru_stime
        return cls(
            wall=time.perf_counter(),
            stat=_proc_stat(),
            own_cpu=own,
            nivcsw=ru.ru_nivcsw,
            load=loadavg(),
        )


@dataclass
class Window:
    """What happened on the machine between two marks."""

    seconds: float
    other_cpu_share: float | None  # other processes' CPU time / (seconds x cores)
    steal_share: float | None
    involuntary_cs_per_s: float
    load_before: float
    load_after: float

    @classmethod
    def between(cls, a: Mark, b: Mark) -> "Window":
        dt = max(b.wall - a.wall, 1e-9)
        cores = os.cpu_count() or 1
        other = steal = None
        if a.stat is not None and b.stat is not None:
            busy = sum(b.stat[k] - a.stat[k] for k in _CPU_FIELDS if k not in ("idle", "iowait", "steal"))
            own = b.own_cpu - a.own_cpu
            # /proc/stat counts whole ticks (10 ms) per core: each of the two readings may be off
            # by one tick a core, so that much busy time is not held against a short window
            slack = 2 * cores / os.sysconf("SC_CLK_TCK")
            other = max(0.0, (busy - own - slack) / (dt * cores))
            steal = max(0.0, (b.stat["steal"] - a.stat["steal"]) / (dt * cores))
        return cls(dt, other, steal, (b.nivcsw - a.nivcsw) / dt, a.load, b.load)


# -- the calibration probe -------------------------------------------------------------------------
PROBE_N = 256  # a 256^3 product: ~0.2 ms on a quiet core, long enough to see a shared core
PROBE_REPEATS = 31


def _probe_session(threads: int):
    import onnxruntime as ort
    from onnx import TensorProto, helper

    n = PROBE_N
    node = helper.make_node("MatMul", ["A", "B"], ["C"])
    graph = helper.make_graph(
        [node],
        "probe",
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, [n, n]), helper.make_tensor_value_info("B", TensorProto.FLOAT, [n, n])],
        [helper.make_tensor_value_info("C", TensorProto.FLOAT, [n, n])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    so.log_severity_level = 3
    # no spinning: the probe's idle threads must not compete with the benchmark's right after it
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    rng = np.random.default_rng(0)
    feeds = {"A": rng.standard_normal((n, n), dtype=np.float32), "B": rng.standard_normal((n, n), dtype=np.float32)}
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"]), feeds


class Probe:
    """A fixed small workload at a thread count: the median time of one call, in ms."""

    def __init__(self, threads: int):
        self.threads = threads
        self._sess, self._feeds = _probe_session(threads)
        for _ in range(5):  # warm-up: thread pool up, pages touched
            self._sess.run(None, self._feeds)

    def __call__(self, repeats: int = PROBE_REPEATS) -> float:
        pc = time.perf_counter_ns
        run, feeds = self._sess.run, self._feeds
        d = []
        for _ in range(repeats):
            t = pc()
            run(None, feeds)
            d.append(pc() - t)
        return float(np.median(d)) / 1e6


def machine_key(threads: int) -> str:
    """What a machine baseline depends on: CPU model, cores and the thread count."""

    model = hashlib.sha256(cpu_model().encode()).hexdigest()[:8]
    return f"{platform.machine()}-{model}-c{os.cpu_count()}-t{threads}"


def machine() -> dict:
    return {"cpu_model": cpu_model(), "cores": os.cpu_count() or 1, "governor": governor(), "machine": platform.machine()}


# passes shorter than this (a tiny model's few calls) vary by the scheduler's quantum alone:
# their spread is recorded, not judged
MIN_PASS_S = 0.05


# -- thresholds and the verdict ------------------------------------------------------------------
@dataclass
class Thresholds:
    """``bench.contention`` (see conf/bench/default.yaml for the measured defaults)."""

    enabled: bool = True
    max_other_cpu_share: float = 0.10
    max_steal_share: float = 0.05
    max_probe_slowdown: float = 1.5
    max_pass_spread: float = 0.25
    retries: int = 2
    retry_wait_s: float = 5.0
    wait_for_other_s: float = 300.0

    @classmethod
    def of(cls, cfg) -> "Thresholds":
        if cfg is None:
            return cls()
        if isinstance(cfg, cls):
            return cfg
        get = cfg.get if isinstance(cfg, dict) else (lambda k, d=None: getattr(cfg, k, d))
        return cls(**{k: get(k, v) for k, v in asdict(cls()).items()})


@dataclass
class Conditions:
    """The conditions of one measurement (one benchmark attempt)."""

    window: Window | None = None
    probe_before_ms: float | None = None
    probe_after_ms: float | None = None
    probe_baseline_ms: float | None = None
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

    def verdict(self, th: Thresholds) -> str | None:
        """Why this measurement is contended (several reasons joined by '; '), or None."""
        if not th.enabled:
            return None
        why = []
        if self.other_benchmark:
            why.append(self.other_benchmark)
        w = self.window
        if w is not None and w.other_cpu_share is not None and w.other_cpu_share > th.max_other_cpu_share:
            why.append(f"other processes used {w.other_cpu_share:.0%} of the CPU during the timed calls (limit {th.max_other_cpu_share:.0%})")
        if w is not None and w.steal_share is not None and w.steal_share > th.max_steal_share:
            why.append(f"steal time {w.steal_share:.0%} (limit {th.max_steal_share:.0%})")
        slow = self.probe_slowdown
        if slow is not None and slow > th.max_probe_slowdown:
            why.append(f"calibration probe {slow:.2f}x its quiet baseline (limit {th.max_probe_slowdown:g}x)")
        if self.pass_spread is not None and self.pass_spread > th.max_pass_spread and self.shortest_pass_s >= MIN_PASS_S:
            why.append(f"passes over the same calls differ by {self.pass_spread:.0%} (limit {th.max_pass_spread:.0%})")
        return "; ".join(why) or None

    def metrics(self) -> dict[str, float]:
        m: dict[str, float] = {"conditions.threads": float(self.threads), "conditions.cores": float(self.machine.get("cores") or 0)}
        w = self.window
        if w is not None:
            m["conditions.load_before"] = w.load_before
            m["conditions.load_after"] = w.load_after
            m["conditions.involuntary_cs_per_s"] = w.involuntary_cs_per_s
            if w.other_cpu_share is not None:
                m["conditions.other_cpu_share"] = w.other_cpu_share
            if w.steal_share is not None:
                m["conditions.steal_share"] = w.steal_share
        for name, v in (
            ("conditions.probe_before_ms", self.probe_before_ms),
            ("conditions.probe_after_ms", self.probe_after_ms),
            ("conditions.probe_baseline_ms", self.probe_baseline_ms),
            ("conditions.probe_slowdown", self.probe_slowdown),
            ("conditions.pass_spread", self.pass_spread),
            ("conditions.pass_cv", self.pass_cv),
            ("conditions.latency_cv", self.latency_cv),
        ):
            if v is not None and np.isfinite(v):
                m[name] = float(v)
        return m

    def tags(self) -> dict[str, str]:
        t = {"conditions.cpu_model": str(self.machine.get("cpu_model")), "conditions.governor": str(self.machine.get("governor") or "unknown")}
        return t

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


# -- the quiet baseline of the probe ---------------------------------------------------------------
def quiet_window(fn, th: Thresholds, attempts: int | None = None):
    """Run ``fn()`` until a run's window is quiet; returns (result, window, reason): reason is
    None for a quiet run, else why the last attempt was contended (its result is not to be cached)."""
    attempts = (th.retries + 1) if attempts is None else attempts
    result = window = reason = None
    for i in range(max(1, attempts)):
        a = Mark.now()
        result = fn()
        window = Window.between(a, Mark.now())
        share = window.other_cpu_share
        steal = window.steal_share
        reason = None
        if th.enabled and share is not None and share > th.max_other_cpu_share:
            reason = f"other processes used {share:.0%} of the CPU (limit {th.max_other_cpu_share:.0%})"
        elif th.enabled and steal is not None and steal > th.max_steal_share:
            reason = f"steal time {steal:.0%} (limit {th.max_steal_share:.0%})"
        if reason is None:
            break
        if i + 1 < attempts:
            time.sleep(th.retry_wait_s)
    return result, window, reason


def probe_baseline(threads: int, cache_dir: str | Path | None, th: Thresholds) -> tuple[float | None, str | None]:
    """This machine's quiet probe time at ``threads`` (ms), cached per CPU model, cores and
    threads; (None, why) when it could only be measured on a busy machine (then nothing is cached
    and the next job tries again)."""
    path = Path(cache_dir) / "machine" / f"probe-{machine_key(threads)}.json" if cache_dir else None
    if path is not None and path.is_file():
        try:
            return float(json.loads(path.read_text())["probe_ms"]), None
        except (ValueError, KeyError, TypeError):
            path.unlink(missing_ok=True)
    value, window, reason = in_fresh_process("probe", threads, "fp32", th)
    if reason is not None:
        return None, f"no quiet baseline for the probe: {reason}"
    if path is not None:
        write_atomic(path, json.dumps({"probe_ms": value, "threads": threads, **machine(), "window": asdict(window)}))
    return value, None


# -- baselines measured in a fresh process ---------------------------------------------------------
def in_fresh_process(kind: str, threads: int, precision: str, th: Thresholds):
    """Measure a machine baseline (``probe`` or ``peak``) in a fresh Python process, as the
    benchmark itself is: a long-lived process (a sweep, a test run) holds thread pools that spin
    after use and count as its own CPU, hiding other processes' time.  Returns (value, window,
    reason) as :func:`quiet_window`."""

    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.baselines", kind, str(threads), precision, json.dumps(asdict(th)), str(os.getpid())],
        capture_output=True, text=True, timeout=600,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"baseline process failed (exit {proc.returncode}): {proc.stderr.strip()[-800:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return out["value"], Window(**out["window"]), out["reason"]


def die_with_parent(parent_pid: int) -> None:
    """End this measuring process when the process that started it ends (killed included), so
    that it never runs on beside the next job (Linux: PR_SET_PDEATHSIG)."""
    import ctypes
    import signal
    import sys

    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the line above: go now
        os._exit(1)
