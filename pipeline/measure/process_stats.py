"""A measuring process about itself: the cost of its timer and its own peak memory (a leaf)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np


def timer_overhead_ns(n: int = 20000) -> float:
    """The median cost of the timing itself (two back-to-back perf_counter_ns calls)."""
    pc = time.perf_counter_ns
    d = np.empty(n, dtype=np.int64)
    for i in range(n):
        t0 = pc()
        d[i] = pc() - t0
    return float(np.median(d))


def peak_rss_mb() -> float:
    """This process's own peak resident set size, in MiB.

    On Linux ``getrusage``'s ``ru_maxrss`` survives ``exec``: a benchmark process started by a
    sweep that holds gigabytes would report the sweep's peak.  ``VmHWM`` in /proc/self/status
    belongs to this process's own address space, so it is read first.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0  # kB
    except (OSError, ValueError, IndexError):
        pass
    import resource

    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024.0 if sys.platform != "darwin" else kb / 1e6
