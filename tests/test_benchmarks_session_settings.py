"""benchmarks/session_settings.py: the order of its rounds and its paired ratios, on hand-made inputs."""

from __future__ import annotations

import sys

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import session_settings as ss  # noqa: E402


def test_each_setting_leads_one_round_in_turn_and_every_round_holds_all():
    names = list(ss.SETTINGS)
    orders = [ss.rotation(names, r) for r in range(len(names))]
    assert [o[0] for o in orders] == names
    assert all(sorted(o) == sorted(names) for o in orders)
    assert ss.rotation(names, len(names)) == names


def test_ratios_are_paired_by_round_so_a_slow_round_moves_both_sides():
    per = {"t2": [1.0, 2.0, 1.0], "t1": [0.8, 1.6, 1.2], "other": [1.0, 1.0, 1.0]}
    got = ss.paired(per)
    assert got["t2"]["ratio_to_base"] == pytest.approx(1.0)
    assert got["t1"]["ratio_to_base"] == pytest.approx(0.8)  # rounds 0.8, 0.8, 1.2
    assert got["t1"]["median"] == pytest.approx(1.2) and got["t1"]["rounds"] == [0.8, 1.6, 1.2]
    assert got["other"]["ratio_to_base"] == pytest.approx(1.0)  # 1.0, 0.5, 1.0
    assert ss.paired({"t2": [0.0], "x": [1.0]})["x"]["ratio_to_base"] is None  # no division by a zero base
