"""What Linux says directly about contention, read from inside a process with no privileges.

- ``/proc/stat``: every core's busy time (``cpuN`` lines).  The machine's busy time minus this
  process's own CPU time is what *other* processes used: reported as a share of the machine and
  in cores (``other_cores``: 0.2 is a fifth of one core, whatever the machine's size, so one
  process on one core is not diluted by many idle ones);
- ``/proc/pressure/cpu`` (PSI, Linux >= 4.20): ``some total`` is the microseconds in which at
  least one runnable task waited for a CPU; its growth over a window, as a share of the window,
  is ``cpu_pressure`` (None where the kernel has no PSI);
- ``getrusage``: this process's involuntary context switches (its threads were preempted).

The machine's own facts (CPU model, fingerprint) are :mod:`pipeline.core.machine`'s.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass, field

from pipeline.core.machine import loadavg

_CPU_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
_IDLE = ("idle", "iowait", "steal")
PSI_FILE = "/proc/pressure/cpu"


def proc_stat(path: str = "/proc/stat") -> dict[str, dict[str, float]] | None:
    """CPU times in seconds from /proc/stat: ``cpu`` (the machine) and ``cpu0``.. (each core), or None."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, dict[str, float]] = {}
    try:
        with open(path) as f:
            for line in f:
                if not line.startswith("cpu"):
                    break
                parts = line.split()
                out[parts[0]] = dict(zip(_CPU_FIELDS, (int(x) / tick for x in parts[1 : 1 + len(_CPU_FIELDS)])))
    except (OSError, ValueError):
        return None
    return out if "cpu" in out else None


def psi_some_total_us(path: str = PSI_FILE) -> int | None:
    """PSI's ``some total`` for the CPU (microseconds some task waited for a CPU), or None where the
    kernel has no PSI (before 4.20, or booted with psi=0)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("some"):
                    return int(dict(kv.split("=") for kv in line.split()[1:])["total"])
    except (OSError, ValueError, KeyError):
        return None
    return None


def _busy(t: dict[str, float]) -> float:
    return sum(v for k, v in t.items() if k not in _IDLE)


@dataclass
class Mark:
    """What is read at one instant; two marks make a :class:`Window`."""

    wall: float
    stat: dict[str, dict[str, float]] | None
    own_cpu: float  # this process's user + system CPU seconds (all threads)
    nivcsw: int
    load: float
    psi_us: int | None = None

    @classmethod
    def now(cls, children: bool = False) -> "Mark":
        """``children``: count the CPU of this process's finished children as its own (a window
        around a subprocess that is waited for; elsewhere a child reaped inside the window would
        hide other processes' time)."""
        ru = resource.getrusage(resource.RUSAGE_SELF)
        own = ru.ru_utime + ru.ru_stime
        nivcsw = ru.ru_nivcsw
        if children:
            ch = resource.getrusage(resource.RUSAGE_CHILDREN)
            own += ch.ru_utime + ch.ru_stime
            nivcsw += ch.ru_nivcsw
        return cls(wall=time.perf_counter(), stat=proc_stat(), own_cpu=own, nivcsw=nivcsw, load=loadavg(), psi_us=psi_some_total_us())


@dataclass
class Window:
    """What happened on the machine between two marks."""

    seconds: float
    other_cpu_share: float | None  # other processes' CPU time / (seconds x cores)
    steal_share: float | None
    involuntary_cs_per_s: float
    load_before: float
    load_after: float
    other_cores: float | None = None  # other processes' CPU time / seconds: in cores
    cpu_pressure: float | None = None  # PSI 'some' growth / seconds: the share of the window a task waited for a CPU
    core_busy: list[float] = field(default_factory=list)  # each core's busy share (this process's threads included)

    @classmethod
    def between(cls, a: Mark, b: Mark) -> "Window":
        dt = max(b.wall - a.wall, 1e-9)
        cores = os.cpu_count() or 1
        other = steal = other_cores = pressure = None
        per_core: list[float] = []
        if a.stat is not None and b.stat is not None:
            busy = _busy(b.stat["cpu"]) - _busy(a.stat["cpu"])
            own = b.own_cpu - a.own_cpu
            # /proc/stat counts whole ticks (10 ms) per core: each of the two readings may be off
            # by one tick a core, so that much busy time is not held against a short window
            slack = 2 * cores / os.sysconf("SC_CLK_TCK")
            other_s = max(0.0, busy - own - slack)
            other, other_cores = other_s / (dt * cores), other_s / dt
            steal = max(0.0, (b.stat["cpu"]["steal"] - a.stat["cpu"]["steal"]) / (dt * cores))
            per_core = [
                round(min(1.0, max(0.0, (_busy(b.stat[k]) - _busy(a.stat[k])) / dt)), 4)
                for k in sorted((k for k in b.stat if k != "cpu" and k in a.stat), key=lambda k: int(k[3:]))
            ]
        if a.psi_us is not None and b.psi_us is not None:
            pressure = max(0.0, (b.psi_us - a.psi_us) / 1e6 / dt)
        return cls(dt, other, steal, (b.nivcsw - a.nivcsw) / dt, a.load, b.load, other_cores, pressure, per_core)
