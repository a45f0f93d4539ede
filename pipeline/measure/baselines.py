"""``python -m pipeline.measure.baselines REQUEST.json REPLY.json`` (:mod:`pipeline.core.child`): one machine
baseline (the calibration of the contention signals, or the matmul peak), measured in this fresh process on
a quiet window.  Request: ``{"kind": "calibrate" | "peak", "threads": int, "precision": str, "thresholds":
{...}}``; reply: ``{"value", "window", "reason"}``.  Started by :func:`pipeline.measure.conditions.in_fresh_process`;
it joins the calibration and the roofline (the peak) without either importing the other.
"""

from __future__ import annotations

from dataclasses import asdict

from pipeline.core import child
from pipeline.measure.calibration import readings
from pipeline.measure.conditions import Thresholds, quiet_window
from pipeline.measure.roofline import _measure_peak


def measure(request: dict) -> dict:
    kind, threads, precision = request["kind"], int(request["threads"]), request["precision"]
    th = Thresholds(**request["thresholds"])
    if kind == "calibrate":
        # one try: on a busy machine the job goes on uncalibrated (its direct signals judge it) and the next job tries again
        value, window, reason = quiet_window(lambda: readings(threads), th, attempts=1)
    elif kind == "peak":
        value, window, reason = quiet_window(lambda: _measure_peak(threads, precision=precision), th)
    else:
        raise ValueError(f"unknown baseline {kind!r}")
    return {"value": value, "window": asdict(window), "reason": reason}


if __name__ == "__main__":
    raise SystemExit(child.serve(measure))
