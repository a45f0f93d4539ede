"""The Embedder: the path users ship. Edge-case texts, pooling, batching, ordering."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import ModelConfig, VariantConfig
from pipeline.embedder.embed import Embedder, ProviderUnavailable, length_groups, pool
from pipeline.model.export import export
from pipeline.model.sources import resolve

NASTY = [
    "",
    "   \t\n  ",
    "x" * 20_000,
    "word " * 5_000,
    "emoji 😀🎉👍🏽 and flags 🇫🇷",
    "中文句子，日本語の文、한국어 문장",
    "nul\x00byte and \x01\x02\x07 bell \x1b[31m escapes",
    "\u200b\u200d\ufeff zero-width",
]


@pytest.fixture(scope="module")
def onnx_dir(tiny_bert, tmp_path_factory):
    cfg = ModelConfig(name="tiny-bert", source="local", path=str(tiny_bert), max_length=64, sha256=None)
    art = export(resolve(cfg), cfg, VariantConfig(), tmp_path_factory.mktemp("cache"))
    return art.folder


@pytest.mark.parametrize("mode", ["mean", "cls", "max", "last_token"])
def test_never_crashes_on_nasty_text(onnx_dir, mode):
    emb = Embedder(onnx_dir, pooling=mode, max_length=64)
    out = emb.embed(NASTY)
    assert out.shape == (len(NASTY), emb.dim)
    assert out.dtype == np.float32
    assert np.isfinite(out).all()
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_empty_list_gives_empty_array(onnx_dir):
    emb = Embedder(onnx_dir)
    out = emb.embed([])
    assert out.shape == (0, emb.dim) and out.dtype == np.float32


def test_batched_corpus_keeps_input_order(onnx_dir):
    """Length-sorted batching must return rows in the input order, equal to one-by-one."""
    texts = [f"the {'big ' * (i % 7)}dog {i}" for i in range(23)]
    emb = Embedder(onnx_dir, batch_size=4)
    together = emb.embed(texts)
    alone = np.vstack([emb.embed([t]) for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)


@pytest.mark.parametrize("call_cost", [0, 32, 10**9])
def test_length_grouped_batch_equals_one_by_one(onnx_dir, call_cost):
    """However a batch is cut into groups of like lengths, every row is its text's vector."""
    texts = ["a", "the " * 40 + "end", "two dogs", "a man is playing a large flute " * 3, "sky", "x " * 20]
    emb = Embedder(onnx_dir, call_cost=call_cost)
    together = emb.embed(texts)
    alone = np.vstack([emb.embed([t]) for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_length_groups_trade_padding_for_calls():
    lengths = [3, 3, 4, 4, 60, 61]
    # calls are free: every distinct length is its own group
    assert length_groups(lengths, 32, 0) == [(0, 2), (2, 4), (4, 5), (5, 6)]
    # a call costs 20 padded tokens: short and long texts are split, near lengths merged
    assert length_groups(lengths, 32, 20) == [(0, 4), (4, 6)]
    # calls cost more than any padding: one batch
    assert length_groups(lengths, 32, 10**6) == [(0, 6)]
    # never more rows than the batch size
    groups = length_groups([5] * 70, 32, 10**6)
    assert max(b - a for a, b in groups) <= 32 and groups[0][0] == 0 and groups[-1][1] == 70
    assert length_groups([], 32, 10) == []


def test_slow_cpu_fusion_is_left_off_unless_asked(onnx_dir):
    assert Embedder(onnx_dir).disabled_optimizers == ("SkipLayerNormFusion",)
    assert Embedder(onnx_dir, disabled_optimizers=[]).disabled_optimizers == ()
    a = Embedder(onnx_dir).embed(["a dog runs"])
    b = Embedder(onnx_dir, disabled_optimizers=[]).embed(["a dog runs"])
    np.testing.assert_allclose(a, b, atol=1e-5)  # the same function either way


def test_truncation_at_max_length(onnx_dir):
    emb = Embedder(onnx_dir, max_length=8)
    long_a = "red " * 6 + "dog " * 50
    long_b = "red " * 6 + "cat " * 50
    # both keep only [CLS] + 6 tokens + [SEP]: identical after truncation
    np.testing.assert_allclose(emb.embed([long_a]), emb.embed([long_b]), atol=1e-6)


def test_right_padding_gives_batch_independent_vectors_for_every_pooling(onnx_dir):
    texts = ["a dog", "two people are playing music in the field", "sky"]
    for mode in ("mean", "max", "last_token", "cls"):
        right = Embedder(onnx_dir, pooling=mode, padding_side="right").embed(texts)
        # BERT uses absolute positions: compare each text alone (no padding) with the batch
        for i, t in enumerate(texts):
            alone = Embedder(onnx_dir, pooling=mode, padding_side="right").embed([t])[0]
            np.testing.assert_allclose(right[i], alone, atol=1e-5)
    # left padding on a graph without position_ids would shift every position: refused (issue 28, 7);
    # a decoder graph that takes position_ids is tested with left padding in test_models


def test_pooling_modes_are_mask_aware():
    hidden = np.arange(2 * 4 * 3, dtype=np.float32).reshape(2, 4, 3)
    mask = np.array([[1, 1, 0, 0], [0, 1, 1, 1]])
    np.testing.assert_allclose(pool(hidden, mask, "mean")[0], hidden[0, :2].mean(axis=0))
    np.testing.assert_allclose(pool(hidden, mask, "mean")[1], hidden[1, 1:].mean(axis=0))
    np.testing.assert_allclose(pool(hidden, mask, "max")[0], hidden[0, 1])
    np.testing.assert_allclose(pool(hidden, mask, "last_token")[0], hidden[0, 1])
    np.testing.assert_allclose(pool(hidden, mask, "last_token")[1], hidden[1, 3])
    np.testing.assert_allclose(pool(hidden, mask, "cls")[1], hidden[1, 0])
    with pytest.raises(ValueError, match="allowed: mean, cls, max, last_token"):
        pool(hidden, mask, "sum")


def test_prefix_changes_the_vector(onnx_dir):
    plain = Embedder(onnx_dir).embed(["a dog"])
    prefixed = Embedder(onnx_dir, prefix="query: ").embed(["a dog"])
    assert float(plain[0] @ prefixed[0]) < 0.99999


def test_missing_provider_is_refused_not_replaced(onnx_dir):
    with pytest.raises(ProviderUnavailable, match="CUDAExecutionProvider"):
        Embedder(onnx_dir, provider="CUDAExecutionProvider")


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"pooling": "sum"}, "unknown pooling"),
        ({"batch_size": 0}, "batch_size"),
        ({"max_length": 0}, "max_length"),
        ({"call_cost": -1}, "call_cost"),
    ],
)
def test_bad_arguments_are_refused(onnx_dir, kwargs, match):
    with pytest.raises(ValueError, match=match):
        Embedder(onnx_dir, **kwargs)
