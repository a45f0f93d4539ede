"""``python -m pipeline.baselines KIND THREADS PRECISION THRESHOLDS [PARENT_PID]``: one machine baseline (the
calibration probe, or the matmul peak), measured in this fresh process on a quiet window and
printed as JSON.  Started by :func:`pipeline.conditions.in_fresh_process`; it joins the
conditions (the probe, the quiet window) and the roofline (the peak) without either importing
the other.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict

from .conditions import Probe, Thresholds, die_with_parent, quiet_window
from .roofline import _measure_peak


def _main(argv: list[str]) -> int:
    kind, threads, precision, th_json = argv[:4]
    if len(argv) > 4:
        die_with_parent(int(argv[4]))
    th = Thresholds(**json.loads(th_json))
    if kind == "probe":
        probe = Probe(int(threads))

        def best_over_half_a_second() -> float:  # a window long enough for /proc/stat's 10 ms ticks
            t0, best = time.perf_counter(), float("inf")
            while time.perf_counter() - t0 < 0.5:
                best = min(best, probe())
            return best

        value, window, reason = quiet_window(best_over_half_a_second, th)
    elif kind == "peak":
        value, window, reason = quiet_window(lambda: _measure_peak(int(threads), precision=precision), th)
    else:
        raise SystemExit(f"unknown baseline {kind!r}")
    print(json.dumps({"value": value, "window": asdict(window), "reason": reason}))
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(_main(sys.argv[1:]))
