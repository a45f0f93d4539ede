"""benchmarks/stability.py can fail: its verdict on hand-made runs (no sweep is run here)."""

from __future__ import annotations

import importlib.util

import pytest
from conftest import ROOT

spec = importlib.util.spec_from_file_location("stability", ROOT / "benchmarks" / "stability.py")
stability = importlib.util.module_from_spec(spec)
spec.loader.exec_module(stability)

NAMES = [f"m v{v} b{b} t{t}" for v in ("fp32", "o2", "int8") for b in (1, 8) for t in (1, 2)]  # 12 jobs


def _run(
    p95: dict | None = None, flagged: set = frozenset(), winner: str = "m vint8 b1 t2", verdict: str = "go", retimed_quiet: tuple = ()
) -> dict:
    jobs = []
    for i, n in enumerate(NAMES):
        v = (p95 or {}).get(n, 2.0 + i)
        jobs.append(
            {
                "name": n,
                "record_id": f"r{i}",
                "run_id": f"run{i}",
                "status": "ok",
                "p50_ms": v * 0.8,
                "p95_ms": v,
                "contended": "CPU pressure 30%" if n in flagged else "false",
            }
        )
    win = next(j for j in jobs if j["name"] == winner)
    return {"jobs": jobs, "winner": winner, "winner_run_id": win["run_id"], "verdict": verdict, "retimed_quiet": list(retimed_quiet)}


QUIET_CHECKS = [{"quiet": True}, {"quiet": True}]


def _kinds(flagged: set = frozenset(NAMES)) -> dict:
    return {k: _run(flagged=flagged, verdict="no-go") for k in stability.KINDS}


def test_a_stable_run_passes_with_the_figures_the_issue_asks_for():
    got = stability.verdict([_run(), _run()], _kinds(), QUIET_CHECKS)
    assert got["ok"], got["failures"]
    q = got["quiet"]
    assert q["same_winner"] and q["false_alarms"] == [[], []] and q["p50_max_rel_diff"] == 0 and q["p95_max_rel_diff"] == 0
    assert set(got["kinds"]) == {"always_on", "burst_one_core", "pinned_core", "memory_thrasher"}
    assert all(k["jobs_ok"] == 12 and k["contended_share"] == 1.0 for k in got["kinds"].values())
    assert got["go_from_contended"] is False


@pytest.mark.parametrize(
    "case, why",
    [
        ("false_alarm", "false alarms"),
        ("other_winner", "different winners"),
        ("p95_drift", "p95 differs"),
        ("p50_drift", "p50 differs"),
        ("missed_burst", "burst_one_core"),
        ("too_few_jobs", "always_on"),
        ("busy_quiet_run", "did not start on a quiet machine"),
        ("go_from_contended", "a GO from a configuration that stayed contended"),
    ],
)
def test_each_way_of_failing_fails(case, why):
    quiet, kinds, checks = [_run(), _run()], _kinds(), QUIET_CHECKS
    if case == "false_alarm":
        quiet[1] = _run(flagged={NAMES[0]})
    elif case == "other_winner":
        quiet[1] = _run(winner=NAMES[0])
    elif case == "p95_drift":  # p50 within 5%, p95 11% apart
        quiet[1] = _run(p95={NAMES[3]: (2.0 + 3) * 1.11})
        for j in quiet[1]["jobs"]:
            if j["name"] == NAMES[3]:
                j["p50_ms"] = (2.0 + 3) * 0.8
    elif case == "p50_drift":
        quiet[1] = _run()
        quiet[1]["jobs"][2]["p50_ms"] *= 1.06
    elif case == "missed_burst":  # 11 of 12 flagged: 92% < 95%
        kinds["burst_one_core"] = _run(flagged=set(NAMES[1:]), verdict="no-go")
    elif case == "too_few_jobs":
        kinds["always_on"]["jobs"] = kinds["always_on"]["jobs"][:9]
    elif case == "busy_quiet_run":
        checks = [{"quiet": True}, {"quiet": False}]
    elif case == "go_from_contended":
        kinds["pinned_core"] = _run(flagged=set(NAMES), verdict="go")
    got = stability.verdict(quiet, kinds, checks)
    assert not got["ok"] and any(why in f for f in got["failures"]), got["failures"]


def test_a_contended_winner_quiet_when_retimed_is_no_go_from_contended():
    run = _run(flagged={"m vint8 b1 t2"}, verdict="go", retimed_quiet=("r9",))
    assert stability.go_from_contended(run) is False
    assert stability.go_from_contended({**run, "retimed_quiet": []}) is True


def test_the_interference_kinds_are_bounded_and_the_result_goes_under_the_cpu_slug():
    for code, _ in stability.KINDS.values():
        assert "end = time.time() + 7" in code.format(s=7)  # each stops by itself
    assert stability.cpu_slug("AMD EPYC 9R14 96-Core Processor") == "amd-epyc-9r14-96-core-processor"
