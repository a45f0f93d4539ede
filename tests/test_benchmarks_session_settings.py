"""benchmarks/session_settings.py: the order of its rounds and its paired ratios, on hand-made inputs."""

from __future__ import annotations

import sys

import pytest
from conftest import ROOT, render_results

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


def test_a_candidate_graph_gets_its_source_s_tokenizer_and_config_but_no_other_graph(tmp_path):
    import graph_variants as gv

    src = tmp_path / "src"
    src.mkdir()
    for name in ("tokenizer.json", "config.json", "model.onnx", "model.onnx_data"):
        (src / name).write_text(name)
    graph = tmp_path / "work" / "model_optimized.onnx"
    graph.parent.mkdir()
    graph.write_text("the candidate")
    out = gv._folder(src, tmp_path / "cand", graph)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.onnx", "tokenizer.json"]
    assert (out / "model.onnx").read_text() == "the candidate" and not graph.exists()
    # made again over an old one: replaced whole
    graph.write_text("again")
    assert (gv._folder(src, tmp_path / "cand", graph) / "model.onnx").read_text() == "again"
    # every int8 candidate that is quantized from another candidate names one that is built
    assert all(src_name is None or src_name in gv.FP32 for src_name in gv.INT8.values())


def test_the_graph_variants_page_gives_each_candidate_its_ratio_to_its_group_s_base():
    render = render_results()
    data = {
        "groups": {"fp32": ["O2_cpu", ["O3_cpu"]]},
        "rounds": 4,
        "threads": 2,
        "fp32": {
            "base": "O2_cpu",
            "single_p50_ms": ss.paired({"O2_cpu": [3.0, 3.0], "O3_cpu": [2.7, 3.3]}, "O2_cpu"),
            "corpus_sentences_per_s": ss.paired({"O2_cpu": [500.0, 400.0], "O3_cpu": [510.0, 408.0]}, "O2_cpu"),
            "max_cosine_distance_to_base": {"O2_cpu": 0.0, "O3_cpu": 2e-5},
        },
        "skipped": {"matmulnbits8-of-O2_cpu": "ImportError: No module named 'onnx_ir'"},
        "conditions": {"other_cpu_share": 0.002, "loadavg_end": [1.0, 1.0, 1.0]},
    }
    rows, cond, notes = render.view_graph_variants(data)
    o3 = next(r for r in rows if r["graph"] == "O3_cpu")
    assert o3["single p50 ratio"] == 1.0 and o3["corpus ratio"] == pytest.approx(1.02) and o3["against"] == "O2_cpu"
    assert o3["max cosine distance to it"] == "2.0e-05" and cond["load_average"] == [1.0, 1.0, 1.0]
    assert any("onnx_ir" in n for n in notes)


def test_a_probe_round_warms_up_then_times_one_sentence_a_call_and_the_corpus_in_one_call():
    calls = []

    def embed(texts, batch_size):
        calls.append((len(texts), batch_size))

    sents = [f"s{i}" for i in range(40)]
    assert ss.single_p50_ms(embed, sents, 25) >= 0
    assert calls == [(1, 1)] * (10 + 25)
    calls.clear()
    assert ss.corpus_per_s(embed, sents) > 0 and calls == [(40, 32)]
