"""``python -m pipeline.measure.baselines KIND THREADS PRECISION THRESHOLDS [PARENT_PID]``: one machine baseline (the
calibration of the contention signals, or the matmul peak), measured in this fresh process on a
quiet window and printed as JSON.  Started by :func:`pipeline.measure.conditions.in_fresh_process`; it
joins the calibration and the roofline (the peak) without either importing the other.
"""

from __future__ import annotations

import json
from dataclasses import asdict

from pipeline.measure.calibration import readings
from pipeline.measure.conditions import Thresholds, die_with_parent, quiet_window
from pipeline.measure.roofline import _measure_peak


def _main(argv: list[str]) -> int:
    kind, threads, precision, th_json = argv[:4]
    if len(argv) > 4:
        die_with_parent(int(argv[4]))
    th = Thresholds(**json.loads(th_json))
    if kind == "calibrate":
        # one try: on a busy machine the job goes on uncalibrated (its direct signals judge it) and the next job tries again
        value, window, reason = quiet_window(lambda: readings(int(threads)), th, attempts=1)
    elif kind == "peak":
        value, window, reason = quiet_window(lambda: _measure_peak(int(threads), precision=precision), th)
    else:
        raise SystemExit(f"unknown baseline {kind!r}")
    print(json.dumps({"value": value, "window": asdict(window), "reason": reason}))
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(_main(sys.argv[1:]))
