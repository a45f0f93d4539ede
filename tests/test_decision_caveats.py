"""The verdict carries its caveats: ties, a winner the noise moves, busy-machine runs that looked faster.

Pure DataFrame tests of pipeline.decision (no MLflow store): made-up metrics, test data only.
"""

from __future__ import annotations

import pandas as pd
import pytest
from test_decide import good_metrics as metrics
from test_decision_noise import label, rounds, run

from pipeline.decision import Inputs, Robustness, compose_decision, decide, runs_frame
from pipeline.decision.caveats import robustness_caveats

FAST = ["decision.robustness.bootstrap=100", "decision.robustness.noise_draws=10"]
BUSY = "other processes used 60% of the CPU during the timed calls (limit 10%)"


@pytest.fixture(scope="module")
def cfg():
    return compose_decision("default", FAST).decision


def test_a_tie_is_not_announced_as_a_clean_go(cfg):
    frame = runs_frame([run("mean", metrics(12.0)), run("cls", metrics(11.0))])
    d = decide(Inputs(runs=frame, rounds=rounds({"mean": [10.5, 13.0, 11.8], "cls": [12.6, 10.2, 11.4]})), cfg)
    assert d.verdict == "go" and d.winner.tied_with
    assert "It meets every target" not in d.recommendation
    assert d.recommendation.startswith(f"GO: ship {d.winner.label}")
    assert f"or any of {d.winner.tied_with[0]}" in d.recommendation and "inside the measured noise" in d.recommendation


def test_a_clear_go_says_it_meets_every_target_without_caveats(cfg):
    d = decide(runs_frame([run("mean", metrics(5.0)), run("cls", metrics(25.0, **{"quality.stsb_spearman": 70.0}))]), cfg)
    assert d.verdict == "go" and not d.winner.tied_with
    assert "It meets every target." in d.recommendation and "Caveats" not in d.recommendation
    assert d.caveats == [] and d.to_dict()["caveats"] == []


def test_a_busy_machine_run_that_looked_faster_is_named(cfg):
    d = decide(runs_frame([run("fast", metrics(2.0), contended=BUSY), run("slow", metrics(12.0))]), cfg)
    assert d.winner.label == label("slow")
    assert any("looked faster" in c and label("fast") in c for c in d.caveats)
    assert "Caveats:" in d.recommendation and "looked faster" in d.recommendation
    assert d.recommendation.index("Caveats:") < d.recommendation.index("Reproduce:")


def test_a_contended_no_go_does_not_say_any_of_them_will_do(cfg):
    frame = runs_frame([run("mean", metrics(12.0), contended=BUSY), run("cls", metrics(12.0), contended=BUSY)])
    d = decide(frame, cfg)
    assert d.verdict == "no-go"
    assert "cannot support a go" in d.recommendation and "will do" not in d.recommendation


def test_a_winner_the_redraws_move_is_not_firm():
    rob = Robustness(
        weights=pd.DataFrame(), winner_stability=0.95, top_stability=0.9, noise=pd.DataFrame(), noise_stability=0.32, noise_draws=200
    )
    (text,) = robustness_caveats(rob)
    assert "32%" in text and "200" in text and "Not firm" in text
    rob.noise_stability, rob.winner_stability = 0.9, 0.5
    (text,) = robustness_caveats(rob)
    assert "50%" in text and "weights" in text
