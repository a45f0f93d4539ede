"""benchmarks/process_spread.py: the spread of one configuration's latency between fresh processes."""

from __future__ import annotations

import sys

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import process_spread  # noqa: E402


def _row(process, threads, p50, p95=None, halves=(None, None)):
    first, second = halves
    return {
        "process": process,
        "threads": threads,
        "p50_ms": p50,
        "p95_ms": p95 or 2 * p50,
        "first_half_p50_ms": first or p50,
        "second_half_p50_ms": second or p50,
    }


def test_the_spread_is_the_slowest_process_over_the_fastest():
    rows = [_row(0, 1, 5.0), _row(1, 1, 5.5), _row(2, 1, 6.0), _row(0, 2, 3.0), _row(1, 2, 3.6)]
    s = process_spread.summarize(rows)
    assert s["t1"]["p50_spread"] == pytest.approx(0.2) and s["t2"]["p50_spread"] == pytest.approx(0.2)
    assert s["t1"]["p50_ms"] == [5.0, 5.5, 6.0]  # each process's own figure, in the order they ran


def test_a_process_whose_halves_disagree_is_reported():
    rows = [_row(0, 1, 5.0, halves=(4.0, 5.0)), _row(1, 1, 5.0)]
    assert process_spread.summarize(rows)["t1"]["within_process_half_diff_max"] == pytest.approx(0.2)


def test_equal_processes_have_no_spread():
    assert process_spread.spread([2.0, 2.0, 2.0]) == 0.0
