"""The arithmetic of benchmarks/peers_best.py (benchmarks/peerstats.py), on small hand-made inputs:
the visiting order, the batches every contender is given, padded tokens, the best peer and the ratios."""

from __future__ import annotations

import math
import sys

import pytest
from conftest import ROOT, render_results

sys.path.insert(0, str(ROOT / "benchmarks"))
import peerstats  # noqa: E402
from peerstats import Result  # noqa: E402


def test_over_n_rounds_every_contender_is_at_every_position_once():
    names = ["ours-fp32", "ours-int8", "ct2", "optimum", "st-onnx"]
    orders = [peerstats.round_order(names, r, len(names)) for r in range(len(names))]
    for name in names:
        assert sorted(o.index(name) for o in orders) == list(range(len(names)))
    assert all(sorted(o) == sorted(names) for o in orders)


def test_with_fewer_rounds_ours_is_spread_not_always_at_an_edge():
    names = [f"ours-{i}" for i in range(5)] + [f"peer-{i}" for i in range(15)]
    orders = [peerstats.round_order(names, r, 4) for r in range(4)]
    positions = [o.index("ours-0") for o in orders]
    # rotated by n/rounds = 5 places a round: four distinct positions, evenly spaced around the round
    assert len(set(positions)) == 4
    assert sorted((p - positions[0]) % 20 for p in positions) == [0, 5, 10, 15]
    # the base order is shuffled: ours are not the first five of round 0
    assert set(orders[0][:5]) != {f"ours-{i}" for i in range(5)}


def test_the_same_batches_are_length_sorted_and_cover_every_text_once():
    lengths = [5, 30, 6, 29, 7, 31, 5, 28]
    batches = peerstats.length_sorted_batches(lengths, batch_size=4, call_cost=32)
    assert sorted(i for b in batches for i in b) == list(range(8))
    assert all(len(b) <= 4 for b in batches)
    # short and long texts are not mixed: the long ones form their own batch
    assert [sorted(lengths[i] for i in b) for b in batches] == [[5, 5, 6, 7], [28, 29, 30, 31]]
    assert peerstats.padded_tokens(lengths, batches) == 4 * 7 + 4 * 31
    # in input order each batch pads to a long text
    assert peerstats.input_order_batches(8, 4) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert peerstats.padded_tokens(lengths, peerstats.input_order_batches(8, 4)) == 4 * 30 + 4 * 31


def _r(name, prec, ours, p50s, corpus, sts=82.0):
    return Result(name, prec, ours, sts, list(p50s), list(corpus))


def test_ratios_are_medians_of_per_round_ratios_against_the_best_qualifying_peer():
    results = [
        _r("ours-fp32", "fp32", True, [2.0, 2.2, 2.0], [4.0, 4.4, 4.0]),
        _r("ours-int8", "int8", True, [1.0, 1.1, 0.9], [2.0, 2.0, 2.2]),
        _r("peer-fast", "int8", False, [1.5, 1.5, 1.8], [3.0, 3.0, 3.3]),
        _r("peer-slow", "fp32", False, [3.0, 3.0, 3.0], [6.0, 6.0, 6.0]),
        # fastest of all, but loses 2 STS points: does not count
        _r("peer-lossy", "int8", False, [0.5, 0.5, 0.5], [1.0, 1.0, 1.0], sts=80.0),
    ]
    h = peerstats.headline(results, ref_sts=82.0, max_sts_loss=1.0)
    assert h["best_single_peer"] == "peer-fast" and h["ours_single"] == "ours-int8"
    assert h["best_single_p50_ratio_vs_best_peer"] == pytest.approx(statistics_median([1.0 / 1.5, 1.1 / 1.5, 0.9 / 1.8]))
    assert h["best_corpus_throughput_ratio_vs_best_peer"] == pytest.approx(statistics_median([3.0 / 2.0, 3.0 / 2.0, 3.3 / 2.2]))
    assert h["fp32_single_p50_ratio_vs_best_peer"] == pytest.approx(statistics_median([2 / 3, 2.2 / 3, 2 / 3]))
    assert h["fp32_corpus_throughput_ratio_vs_best_peer"] == pytest.approx(1.5)
    assert h["bf16_single_p50_ratio_vs_best_peer"] is None  # nobody in the class
    prefixed = peerstats.headline(results, 82.0, 1.0, prefix="as_shipped.")
    assert prefixed["as_shipped.best_corpus_peer"] == "peer-fast"


def test_the_best_peer_is_the_one_that_does_best_against_ours_round_by_round_not_the_lowest_median():
    ours = _r("ours", "int8", True, [1.0, 1.0, 3.0, 3.0], [1.0, 1.0, 3.0, 3.0])
    # lowest median (1.9 ms, 1.9 s), but its rounds pair well for ours: 0.53, 0.53, 0.6, 1.58 (single)
    lucky = _r("peer-low-median", "int8", False, [1.9, 1.9, 5.0, 1.9], [1.9, 1.9, 5.0, 1.9])
    # a higher median (2.2), yet 10% faster than ours in every round
    steady = _r("peer-steady", "int8", False, [1.1, 1.1, 3.3, 3.3], [1.1, 1.1, 3.3, 3.3])
    assert peerstats.best_single([lucky, steady]).name == "peer-low-median"
    r = peerstats.class_ratios([ours, lucky, steady], ("int8",), 82.0, 1.0)
    assert r["peer_single"] == "peer-steady" and r["single_p50_ratio"] == pytest.approx(1 / 1.1)
    assert r["peer_corpus"] == "peer-steady" and r["corpus_throughput_ratio"] == pytest.approx(1.1)
    # on the old rule (the peer by its own median) ours would have read 0.57x and 1.78x
    assert peerstats.single_ratio(ours, lucky) < 0.6 and peerstats.corpus_ratio(ours, lucky) > 1.7


def test_rounds_not_timed_are_left_out_of_the_pairing_and_nan_sts_never_qualifies():
    ours = _r("ours", "fp32", True, [1.0], [2.0, math.nan, 2.0])
    peer = _r("peer", "fp32", False, [1.0], [4.0, 1.0, math.nan])
    assert peerstats.corpus_ratio(ours, peer) == pytest.approx(2.0)  # only round 1 timed both
    nan_peer = _r("nan", "fp32", False, [0.1], [0.1], sts=math.nan)
    assert not peerstats.qualifies(nan_peer, 82.0, 1.0)
    assert peerstats.class_ratios([ours, peer, nan_peer], ("fp32",), 82.0, 1.0)["peer_single"] == "peer"


def test_results_are_filed_under_the_cpu_model():
    assert peerstats.cpu_slug("AMD EPYC 9R14 96-Core Processor") == "amd-epyc-9r14-96-core-processor"
    assert peerstats.results_path("Intel(R) Xeon(R) Platinum 8488C", "peers_best.json").parts[-3:] == (
        "results",
        "intel-r-xeon-r-platinum-8488c",
        "peers_best.json",
    )


def statistics_median(xs):
    import statistics

    return statistics.median(xs)


def test_a_full_precision_path_whose_vectors_differ_does_not_count_an_int8_one_is_judged_on_sts():
    """fastembed truncated 256-token passages at 128 tokens (its tokenizer_config's max_length): min
    cosine 0.67 against our fp32, STS on the sentences unchanged, and it was the 'best fp32 peer'."""
    truncating = Result("fastembed", "fp32", False, 82.03, [1.0], [1.0], min_cosine=0.668)
    whole = Result("optimum-ort", "fp32", False, 82.03, [2.0], [2.0], min_cosine=0.99999)
    ours = Result("ours", "fp32", True, 82.03, [2.0], [2.0], min_cosine=1.0)
    assert not peerstats.qualifies(truncating, 82.03, 1.0) and peerstats.qualifies(whole, 82.03, 1.0)
    r = peerstats.class_ratios([ours, truncating, whole], ("fp32",), 82.03, 1.0)
    assert r["peer_corpus"] == "optimum-ort" and r["corpus_throughput_ratio"] == pytest.approx(1.0)
    assert peerstats.qualifies(Result("bf16", "bf16", False, 82.0, [1.0], [1.0], min_cosine=0.9999), 82.03, 1.0)
    assert not peerstats.qualifies(Result("bf16", "bf16", False, 82.0, [1.0], [1.0], min_cosine=0.95), 82.03, 1.0)
    int8 = Result("st-openvino-int8-static", "int8", False, 82.23, [1.0], [1.0], min_cosine=0.77)
    assert peerstats.qualifies(int8, 82.03, 1.0)  # no floor for int8: its STS decides
    assert peerstats.qualifies(Result("unknown", "fp32", False, 82.0, [1.0], [1.0]), 82.03, 1.0)  # NaN: not judged


# -- pooling the rounds of several runs (benchmarks/peers_pool.py) --------------------------------
def _peers_run(rows: dict, roofline: dict | None = None, **over) -> dict:
    """A hand-made peers_best.py result: ``{name: (precision, ours, sts, single p50s, equal corpus s, as-shipped corpus s)}``."""
    nan = float("nan")
    table = [
        {
            "contender": name,
            "precision": prec,
            "ours": ours,
            "stsb_spearman": sts,
            "min_cosine_vs_ours_fp32": 1.0 if prec != "int8" else 0.95,
            "single_p50_ms_per_round": p50s,
            "single_p95_ms_per_round": [2 * x for x in p50s],
            "corpus_s_per_round": [nan if x is None else x for x in eq],
            "corpus_s_per_round_as_shipped": [nan if x is None else x for x in shipped],
        }
        for name, (prec, ours, sts, p50s, eq, shipped) in rows.items()
    ]
    run = {
        "cpu_model": "Test CPU",
        "cores": 2,
        "threads": 2,
        "workload": "sentences",
        "workload_detail": {"workload": "sentences"},
        "sentences_single": 3,
        "sentences_corpus": 100,
        "batch_size": 32,
        "max_sts_loss": 1.0,
        "batching_detail": {"equal": {"policy": "length_groups", "batches": 4, "padded_tokens": 120}},
        "rounds": len(table[0]["single_p50_ms_per_round"]),
        "when": "2026-12-07 10:00 UTC",
        "loadavg_before": [1.0, 1.0, 1.0],
        "other_cpu_share": 0.001,
        "roofline": roofline or {"fp32": None, "int8": None},
        "table": table,
    }
    return {**run, **over}


def test_pooled_peer_runs_pair_rounds_across_runs_and_refuse_runs_measured_differently(tmp_path):
    import json

    import peers_pool

    a = _peers_run(
        {
            "ours-fp32": ("fp32", True, 82.0, [3.0, 3.0], [4.0, 4.0], [5.0, 5.0]),
            "ours-int8": ("int8", True, 81.9, [1.0, 1.0], [1.0, 1.0], [1.0, 1.0]),
            "peer-int8": ("int8", False, 81.8, [2.0, 1.0], [1.5, None], [3.0, None]),
            "peer-bad": ("int8", False, 80.0, [0.1, 0.1], [0.1, 0.1], [0.1, 0.1]),  # 2 STS points lost: never the best
        },
        roofline={"fp32": None, "int8": {"contender": "ours-int8", "achieved_gops": 100.0, "peak_gops": 200.0, "fraction": 0.5}},
        best_single_p50_ratio_vs_best_peer=0.5,  # written by an older rule: the pool recomputes 0.75
    )
    b = _peers_run(
        {
            "ours-fp32": ("fp32", True, 82.0, [3.0], [4.0], [5.0]),
            "ours-int8": ("int8", True, 81.9, [1.0], [2.0], [2.0]),
            "peer-int8": ("int8", False, 81.8, [1.25], [2.0], [2.0]),
            "peer-bad": ("int8", False, 80.0, [0.1], [0.1], [0.1]),
            "only-in-b": ("fp32", False, 82.0, [0.5], [0.5], [0.5]),
        },
        roofline={"fp32": None, "int8": {"contender": "ours-int8", "achieved_gops": 50.0, "peak_gops": 300.0, "fraction": 50 / 300}},
        best_single_p50_ratio_vs_best_peer=0.8,
    )
    out = peers_pool.pool({"a.json": a, "b.json": b})
    # single: per-round ratios 1/2, 1/1 (run a) and 1/1.25 (run b): the median of all three, not of the runs' medians (0.775)
    assert out["best_single_p50_ratio_vs_best_peer"] == pytest.approx(0.8)
    assert out["best_single_peer"] == "peer-int8" and out["ours_single"] == "ours-int8"
    # corpus: rounds paired where both were timed: 1.5/1.0 (a, round 1) and 2.0/2.0 (b): median 1.25
    assert out["best_corpus_throughput_ratio_vs_best_peer"] == pytest.approx(1.25)
    assert out["as_shipped.best_corpus_throughput_ratio_vs_best_peer"] == pytest.approx((3.0 + 1.0) / 2)
    assert out["fp32_single_p50_ratio_vs_best_peer"] is None  # no fp32 peer in every run
    assert out["dropped"] == {"only-in-b": "not in a.json"} and out["rounds"] == 3 and out["batching"] == "equal"
    rows = {r["contender"]: r for r in out["table"]}
    assert rows["peer-int8"]["single_p50_ms_per_round"] == [2.0, 1.0, 1.25] and rows["peer-int8"]["rounds_pooled"] == 3
    assert rows["peer-int8"]["corpus_rounds"] == 2 and rows["peer-int8"]["corpus_sentences_per_s"] == pytest.approx(100 / 1.75)
    assert not rows["peer-bad"]["qualifies"] and rows["ours-int8"]["qualifies"]
    # roofline: the same work (100 GOP) over the pooled median corpus time (1.0 s) against the runs' median peak (250)
    assert out["roofline_fraction_int8"] == pytest.approx(0.4) and out["roofline_fraction_fp32"] is None
    assert out["runs"]["b.json"]["rounds"] == 1
    for other, what in (
        ({**b, "batch_size": 16}, "batch_size"),
        (
            {**b, "batching_detail": {"equal": {"policy": "length_groups", "batches": 5, "padded_tokens": 120}}},
            "batching_detail.equal.batches",
        ),
        ({**b, "cpu_model": "Other CPU"}, "cpu_model"),
    ):
        with pytest.raises(ValueError, match=what):
            peers_pool.pool({"a.json": a, "other.json": other})
    with pytest.raises(ValueError, match="at least two"):
        peers_pool.pool({"a.json": a})
    # written beside the first file and rendered with each run's own ratios
    for name, run in (("peers_best.json", a), ("peers_best_run_b.json", b)):
        (tmp_path / name).write_text(json.dumps(run))
    assert peers_pool.main([str(tmp_path / "peers_best.json"), str(tmp_path / "peers_best_run_b.json")]) == 0
    pooled = json.loads((tmp_path / "peers_pooled.json").read_text())
    assert pooled["best_single_p50_ratio_vs_best_peer"] == pytest.approx(0.8)
    (tmp_path / "other.json").write_text(json.dumps({**b, "threads": 1}))
    assert peers_pool.main([str(tmp_path / "peers_best.json"), str(tmp_path / "other.json")]) == 2
    render = render_results()
    rows, cond, notes = render.view_peers_pooled(pooled)
    assert {r["contender"]: r["rounds pooled"] for r in rows}["ours-int8"] == 3
    assert "`peers_best.json` (2 rounds" in notes[0] and "single 0.75/" in notes[0] and "`peers_best_run_b.json` (1 rounds" in notes[0]
    assert "`best_single_p50_ratio_vs_best_peer` 0.80" in notes[1] and any("only-in-b" in n for n in notes)
    assert cond["load_average"] == [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
