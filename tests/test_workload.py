"""Workloads (pipeline/measure/workload.py): the texts a job embeds, their token lengths and prefixes, the
padding share, the refusals, and a job that runs one (tiny model, tests/conftest.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import tiny_overrides
from tokenizers import Tokenizer

from pipeline.config import ConfigError, ModelConfig, ProviderConfig, WorkloadConfig, to_config
from pipeline.embedder.embed import Embedder
from pipeline.embedder.grouping import padded_tokens, padding_share
from pipeline.job.run import execute
from pipeline.job.workload_checks import loss_vs_fp32
from pipeline.measure import workload

DOC, QUERY = "passage: ", "query: "
MODEL = ModelConfig(query_prefix=QUERY, document_prefix=DOC)
SENTENCES = ["a man is playing a guitar", "two dogs run in the field", "the sky is blue"]


def _tok(folder):
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tok.no_truncation()
    return tok


def _export_dir(tiny_bert, tmp_path):
    """The tiny model as an ONNX folder the embedder reads (export cached under tmp)."""
    from pipeline.config import VariantConfig
    from pipeline.model import export
    from pipeline.model.sources import resolve

    model = ModelConfig(name="tiny-bert", source="local", path=str(tiny_bert), max_length=64)
    art = export.export(resolve(model, tmp_path / "cache"), model, VariantConfig(), tmp_path / "cache")
    return art.folder


@pytest.mark.parametrize("name,prefix", [("passages", DOC), ("lengths", DOC)])
def test_long_workloads_are_real_prose_of_exactly_the_stated_token_lengths_with_the_document_prefix(tiny_bert, name, prefix):
    lengths = [16, 40, 100] if name == "passages" else [24]
    wl = workload.build(
        WorkloadConfig(name=name, lengths=lengths, model_limit=True, texts_per_length=6),
        MODEL,
        tiny_bert / "tokenizer.json",
        SENTENCES,
        limit=128,
    )
    tok = _tok(tiny_bert)
    want = sorted(set(lengths) | {128})
    assert wl.targets[name] == [n for n in want for _ in range(6)]
    for text, n in zip(wl.texts, wl.targets[name]):
        assert text.startswith(prefix) and not text.startswith(prefix + QUERY)
        assert len(tok.encode(text).ids) == n
        words = text[len(prefix) :].split()
        assert len(set(words)) > len(words) // 3  # prose, not one word repeated
    assert len(set(wl.texts)) == len(wl.texts)
    assert wl.prefixed and "pydoc_data" in wl.tags()["workload.source"]


def test_the_embedder_counts_the_workload_texts_as_the_workload_states(tiny_bert, tmp_path):
    """The embedder that runs a workload (prefix already in the texts, none added) feeds the stated lengths."""
    wl = workload.build(
        WorkloadConfig(name="passages", lengths=[20, 60], texts_per_length=4), MODEL, tiny_bert / "tokenizer.json", SENTENCES, limit=128
    )
    emb = Embedder(_export_dir(tiny_bert, tmp_path), prefix="", max_length=128)
    assert emb.token_counts(wl.texts) == wl.targets["passages"]


def test_queries_carry_the_query_prefix_and_sentences_stay_as_before(tiny_bert):
    q = workload.build(WorkloadConfig(name="queries"), MODEL, tiny_bert / "tokenizer.json", SENTENCES, 128)
    assert q.texts == [QUERY + s for s in SENTENCES] and q.prefixed
    s = workload.build(WorkloadConfig(name="sentences"), MODEL, tiny_bert / "tokenizer.json", SENTENCES, 128)
    assert s.texts == SENTENCES and not s.prefixed  # the embedder adds the query prefix, as before


def test_mixed_workload_holds_its_parts_in_the_configured_shares(tiny_bert):
    sentences = [f"{a} {b} is playing" for a in ("a man", "a woman", "the child", "a dog") for b in ("red", "blue", "old", "new", "sad")]
    wl = workload.build(
        WorkloadConfig(name="mixed", lengths=[30], texts_per_length=5, weights={"queries": 3, "passages": 1}),
        MODEL,
        tiny_bert / "tokenizer.json",
        sentences,
        128,
    )
    assert len(wl.parts["queries"]) == 3 * len(wl.parts["passages"]) == 15
    assert all(t.startswith(QUERY) for t in wl.parts["queries"]) and all(t.startswith(DOC) for t in wl.parts["passages"])


def test_a_workload_longer_than_the_models_positions_is_refused_with_the_reason():
    with pytest.raises(workload.WorkloadRefused, match=r"\[256\] tokens, but the model has 128 positions"):
        workload.check_limits(WorkloadConfig(name="passages", lengths=[64, 256]), 128, ProviderConfig())
    workload.check_limits(WorkloadConfig(name="passages", lengths=[64, 128]), 128, ProviderConfig())
    with pytest.raises(workload.WorkloadRefused, match="provider.max_sequence"):
        workload.check_limits(WorkloadConfig(name="lengths", lengths=[100]), 128, ProviderConfig(name="x", max_sequence=64))


def test_workload_config_refuses_what_it_cannot_build():
    with pytest.raises(ConfigError, match="workload.lengths"):
        WorkloadConfig(name="lengths")
    with pytest.raises(ConfigError, match="workload.weights"):
        WorkloadConfig(name="mixed", weights={"tweets": 1.0})
    with pytest.raises(ConfigError, match="workload.name"):
        WorkloadConfig(name="novels")


def test_padding_share_is_exact_on_a_hand_made_batch():
    # call_cost 0 cuts wherever lengths differ: no padding at all
    assert padded_tokens([10, 10, 30], 32, 0) == (50, 50)
    # a huge call cost keeps one call: every row padded to 30 -> 90 positions for 50 tokens
    assert padded_tokens([10, 10, 30], 32, 10**6) == (90, 50)
    assert padding_share([[10, 10, 30]], 32, 10**6) == pytest.approx(40 / 50)
    # rows capped at 2: [10, 10] and [30]; one text alone is never padded
    assert padded_tokens([30, 10, 10], 2, 10**6) == (50, 50)
    assert padded_tokens([7], 32, 10**6) == (7, 7)
    # two calls: (3*12 - 30) + (2*20 - 38) = 6 + 2 over 68 real tokens
    assert padding_share([[8, 10, 12], [18, 20]], 32, 10**6) == pytest.approx(8 / 68)


def test_padding_share_matches_what_the_embedder_feeds(tiny_bert, tmp_path, monkeypatch):
    emb = Embedder(_export_dir(tiny_bert, tmp_path), prefix="", call_cost=32)
    texts = ["a", "a man is playing a guitar on the road with a dog", "the cat", "two big red birds fly over the green tree"]
    fed = []
    real = emb._infer_batch
    monkeypatch.setattr(emb, "_infer_batch", lambda ids: (fed.append(len(ids) * max(map(len, ids))), real(ids))[1])
    emb.embed(texts, batch_size=4)
    assert padded_tokens(emb.token_counts(texts), 4, 32) == (sum(fed), sum(emb.token_counts(texts)))


def test_loss_vs_fp32_is_one_for_the_same_vectors_and_falls_when_they_move():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(12, 8))
    same = loss_vs_fp32(a, a)
    assert same["cosine_to_fp32_min"] == pytest.approx(1) and same["rank_agreement_vs_fp32"] == pytest.approx(1)
    moved = loss_vs_fp32(a + rng.normal(scale=0.5, size=a.shape), a)
    assert moved["cosine_to_fp32_min"] < 0.99 and moved["rank_agreement_vs_fp32"] < 0.99


def test_a_passage_job_measures_its_workload_and_logs_it(compose, tiny_bert, tiny_sts_dir, tmp_path):
    dcfg = compose(
        tiny_overrides(tiny_bert, tiny_sts_dir, tmp_path)
        + [
            "workload=passages",
            "workload.lengths=[24,48]",
            "workload.model_limit=false",
            "workload.texts_per_length=8",
            "bench.batch_size=4",
            "model.document_prefix='passage: '",
        ]
    )
    result = execute(to_config(dcfg), dcfg, tmp_path / "out")
    assert result.status == "ok", result.reason
    m = result.metrics
    assert m["parity.workload_min_cosine"] > 0.9999
    assert 0 <= m["bench.padding_share"] < 1
    # tokens per second: the real token counts over the same best pass as texts per second
    assert m["throughput.tokens_per_s"] == pytest.approx(m["throughput.sentences_per_s"] * 36, rel=0.35)
    rec = json.loads((result.record / "record.json").read_text())
    assert rec["params"]["workload"] == "passages"
    assert rec["tags"]["workload"] == "passages" and "pydoc_data" in rec["tags"]["workload.source"]
    # a re-timing at the sweep's end times the same passages, not the STS sentences
    from pipeline.sweep.retime import _sentences

    spec = json.loads((tmp_path / "out" / "bench_spec.json").read_text())
    texts = _sentences(spec)
    assert len(texts) == 16 and all(t.startswith("passage: ") for t in texts)


def test_a_job_whose_workload_exceeds_the_positions_is_skipped_with_the_reason(compose, tiny_bert, tiny_sts_dir, tmp_path):
    dcfg = compose(tiny_overrides(tiny_bert, tiny_sts_dir, tmp_path) + ["workload=passages", "workload.lengths=[64,512]"])
    result = execute(to_config(dcfg), dcfg, tmp_path / "out")
    assert result.status == "skipped"
    assert "[512] tokens, but the model has 128 positions" in result.reason


def test_peers_best_passage_workload_times_prose_and_keeps_sts_on_the_sentences(tiny_bert):
    """benchmarks/peers_best.py --workload passages: the texts every contender is timed on."""
    import sys
    from types import SimpleNamespace

    from conftest import ROOT

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import peers_best

    cfg = SimpleNamespace(model=ModelConfig(max_length=100, document_prefix=DOC))
    args = SimpleNamespace(workload="passages", passages_per_length=5)
    texts, sts, tags = peers_best.workload_texts(args, cfg, SimpleNamespace(folder=tiny_bert), SENTENCES)
    tok = _tok(tiny_bert)
    assert sorted(len(tok.encode(t).ids) for t in texts) == [64] * 5  # 128 and 256 exceed max_length 100: left out
    assert all(t.startswith(DOC) for t in texts) and sts == SENTENCES and tags["lengths"] == [64]
    same, none, _ = peers_best.workload_texts(SimpleNamespace(workload="sentences"), cfg, None, SENTENCES)
    assert same == SENTENCES and none is None


def test_a_length_sweep_reports_its_curve(tiny_bert, tiny_sts_dir, tmp_path):
    """`-m workload=lengths workload.lengths=[16],[40]` on the tiny model: one job per length, and the
    sweep's report draws latency and throughput against length (reports/latest/workloads.md)."""
    import os
    import subprocess
    import sys

    from conftest import ROOT

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [
        sys.executable,
        "-m",
        "pipeline",
        "-m",
        "workload=lengths",
        "workload.lengths=[16],[40]",
        "bench.batch_size=4",
        "workload.texts_per_length=8",
        *tiny_overrides(tiny_bert, tiny_sts_dir, tmp_path),
    ]
    proc = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads((tmp_path / "reports" / "latest" / "workloads.json").read_text())
    assert sorted(r["workload.length"] for r in doc["length_curve"]) == [16, 40]
    assert all(r["bench.padding_share"] == 0 for r in doc["length_curve"])  # one length per job: nothing padded
    assert (tmp_path / "reports" / "latest" / "length_curve.png").is_file()


def test_the_default_workload_leaves_the_config_hash_of_earlier_runs_as_it_was(compose):
    """A sweep run before workloads resumes: the default workload (and no provider max_sequence) hash as nothing."""
    from omegaconf import OmegaConf

    from pipeline.sweep.plan import config_hash

    now = OmegaConf.to_container(compose(["bench.batch_size=4"]), resolve=True)
    before = {k: v for k, v in now.items() if k != "workload"}
    before["provider"] = {k: v for k, v in before["provider"].items() if k != "max_sequence"}
    assert config_hash(now) == config_hash(before)
    assert config_hash(OmegaConf.to_container(compose(["bench.batch_size=4", "workload=passages"]), resolve=True)) != config_hash(before)


def test_a_graph_with_a_fixed_sequence_axis_refuses_longer_texts_with_the_reason(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    def graph(batch, seq):
        x = helper.make_tensor_value_info("input_ids", TensorProto.INT64, [batch, seq])
        y = helper.make_tensor_value_info("out", TensorProto.INT64, [batch, seq])
        path = tmp_path / f"m{batch}_{seq}.onnx"
        onnx.save(helper.make_model(helper.make_graph([helper.make_node("Identity", ["input_ids"], ["out"])], "g", [x], [y])), path)
        return path

    wl = workload.Workload("passages", {"passages": ["x"] * 3}, prefixed=True, targets={"passages": [64, 64, 128]})
    with pytest.raises(workload.WorkloadRefused, match="fixed sequence axis of 64; the workload needs 128"):
        workload.check_shapes(graph("batch", 64), wl, 1)
    with pytest.raises(workload.WorkloadRefused, match="fixed batch axis of 1, the job asks for 32"):
        workload.check_shapes(graph(1, "seq"), wl, 32)
    workload.check_shapes(graph("batch", "seq"), wl, 32)  # dynamic axes: anything goes
