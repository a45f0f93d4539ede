"""The arithmetic of benchmarks/peers_best.py (benchmarks/peerstats.py), on small hand-made inputs:
the visiting order, the batches every contender is given, padded tokens, the best peer and the ratios."""

from __future__ import annotations

import math
import sys

import pytest
from conftest import ROOT

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
