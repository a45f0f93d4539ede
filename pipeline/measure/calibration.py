"""This machine's quiet distribution of the contention signals, measured on the machine itself.

A fixed limit tuned on one CPU (a best-of and 1.5x) is a false alarm on another whose clock
moves with the instruction mix.  Here each signal is calibrated where it is judged: in a fresh
process, under the machine lock, on a window that is quiet by the direct signals' stated
floors, :mod:`pipeline.measure.baselines` takes many readings of the probes (a matrix product in L2 and
a 64 MiB streaming copy), half of them right after a burst of heavy matrix work (as in a job,
after the model's calls), and of the direct signals per window (CPU pressure, involuntary
context switches, other processes' cores).  A job's reading is outside the distribution when it
is above the highest quiet reading by more than ``bench.contention.calibration_margin``.

The calibration is cached per machine fingerprint (CPU model, cores, kernel, host, machine id)
and thread count, and measured again when it is older than ``baseline_max_age_h``, when the
fingerprint changes, or when a job that is quiet by every direct signal reads a probe outside
it (:func:`pipeline.measure.bench.run` asks for ``force``).  Nothing is cached from a busy window or
with detection off.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from pipeline.core.cache import write_atomic
from pipeline.core.machine import fingerprint
from pipeline.core.machine_lock import MachineLock
from pipeline.measure import conditions
from pipeline.measure.signals import Mark, Window


@dataclass
class Calibration:
    threads: int
    created: float
    fingerprint: dict
    probe_ms: list[float]
    mem_ms: list[float]
    cpu_pressure: list[float] = field(default_factory=list)
    involuntary_cs_per_s: list[float] = field(default_factory=list)
    other_cores: list[float] = field(default_factory=list)

    @property
    def probe_median_ms(self) -> float:
        return float(np.median(self.probe_ms))

    def limits(self, th: conditions.Thresholds) -> tuple[float, float | None]:
        """(the matrix probe's limit, the memory probe's limit) in ms: highest quiet reading x (1 + margin)."""
        m = 1 + th.calibration_margin
        return max(self.probe_ms) * m, (max(self.mem_ms) * m if self.mem_ms else None)

    def quiet(self) -> dict[str, float]:
        """The highest quiet reading of each direct signal (for :meth:`conditions.Thresholds.limit`)."""
        return {
            k: float(max(v))
            for k, v in (
                ("cpu_pressure", self.cpu_pressure),
                ("involuntary_cs_per_s", self.involuntary_cs_per_s),
                ("other_cores", self.other_cores),
            )
            if v
        }

    def expired(self, max_age_h: float, now: float | None = None) -> str | None:
        """Why this calibration cannot be used here and now, or None."""
        if self.fingerprint.get("id") != fingerprint()["id"]:
            return f"measured on another machine ({self.fingerprint.get('host')}, {self.fingerprint.get('cpu_model')})"
        age_h = ((now or time.time()) - self.created) / 3600
        if age_h > max_age_h:
            return f"{age_h:.1f} h old (limit {max_age_h:g} h)"
        return None


def path_for(cache_dir, threads: int) -> Path | None:
    return Path(cache_dir) / "machine" / f"calibration-{conditions.machine_key(threads)}.json" if cache_dir else None


def load(path: Path | None) -> Calibration | None:
    if path is None or not path.is_file():
        return None
    try:
        return Calibration(**json.loads(path.read_text())["calibration"])
    except (ValueError, KeyError, TypeError):
        path.unlink(missing_ok=True)
        return None


def calibrate(threads: int, cache_dir, th: conditions.Thresholds, force: bool = False) -> tuple[Calibration | None, str | None]:
    """This machine's calibration at ``threads``: cached, or measured now (under the machine lock,
    in a fresh process, on a quiet window).  (None, why) when it could not be measured quietly:
    nothing is cached and the next job tries again."""
    path = path_for(cache_dir, threads)
    cal = None if force else load(path)
    if cal is not None and cal.expired(th.baseline_max_age_h) is None:
        return cal, None
    with MachineLock(th.wait_for_other_s if th.enabled else 0.0, "calibration") as lock:
        if lock.contention:
            return None, f"no quiet calibration: {lock.contention}"
        value, window, reason = conditions.in_fresh_process("calibrate", threads, "fp32", th)
    if reason is not None:
        return None, f"no quiet calibration: {reason}"
    cal = Calibration(threads=threads, created=time.time(), fingerprint=fingerprint(), **value)
    if path is not None:
        write_atomic(path, json.dumps({"calibration": asdict(cal), "window": asdict(window)}))
    return cal, None


def readings(threads: int, windows: int = 10, window_s: float = 0.4) -> dict[str, list[float]]:
    """Run in the fresh process (:mod:`pipeline.measure.baselines`): every probe reading over ``windows``
    windows, and each window's direct signals; odd windows start right after 0.2 s of heavy matrix
    work (the clock a job's probe_after sees)."""
    from pipeline.measure.roofline import _matmul_session

    probe, mem = conditions.Probe(threads), conditions.MemProbe()
    heavy, feeds = _matmul_session(512, "fp32", threads)
    out: dict[str, list[float]] = {"probe_ms": [], "mem_ms": [], "cpu_pressure": [], "involuntary_cs_per_s": [], "other_cores": []}
    for i in range(windows):
        if i % 2:
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < 0.2:
                heavy.run(None, feeds)
            time.sleep(0.05)  # as a job does before its probe_after
        a = Mark.now()
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < window_s:
            out["probe_ms"].append(probe())
            out["mem_ms"].append(mem())
        w = Window.between(a, Mark.now())
        out["involuntary_cs_per_s"].append(w.involuntary_cs_per_s)
        if w.cpu_pressure is not None:
            out["cpu_pressure"].append(w.cpu_pressure)
        if w.other_cores is not None:
            out["other_cores"].append(w.other_cores)
    return out


def apply(cond: conditions.Conditions, cal: Calibration, th: conditions.Thresholds) -> None:
    """Give a job's conditions the calibrated limits they are judged by."""
    cond.probe_baseline_ms = cal.probe_median_ms
    cond.probe_limit_ms, cond.mem_limit_ms = cal.limits(th)
    cond.quiet = cal.quiet()


def disagrees(cond: conditions.Conditions, th: conditions.Thresholds) -> bool:
    """A probe reads outside the calibration while every direct signal says the machine was quiet."""
    if not cond.probe_reasons() or cond.other_benchmark:
        return False
    return not conditions.window_reasons(cond.window, th, cond.quiet)
