"""STS data loading (clear errors) and the quality metrics' definitions."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import QualityConfig
from pipeline.data.sts import DataError, StsData, load_sts
from pipeline.measure.quality import cached_score, score


def _data(tmp_path, text: str) -> QualityConfig:
    (tmp_path / "stsb").mkdir(exist_ok=True)
    (tmp_path / "stsb" / "stsb-en-test.csv").write_text(text)
    return QualityConfig(data_dir=str(tmp_path), source="local", dataset="own")


def test_loads_quoted_commas(tmp_path):
    cfg = _data(tmp_path, '"Hello, world",Hi,4.5\n"He said ""no""",She said yes,0.5\n')
    data = load_sts(cfg)
    assert data.sentences1 == ["Hello, world", 'He said "no"']
    assert data.scores.tolist() == [4.5, 0.5]


@pytest.mark.parametrize(
    "text,message",
    [
        ("a,b,4.0\nc,d\n", "stsb-en-test.csv:2: expected 3 columns"),
        ("a,b,4.0\nc,d,high\n", "stsb-en-test.csv:2: score 'high' is not a number"),
        ("a,b,9\n", "stsb-en-test.csv:1: score 9.0 is outside 0..5"),
        ("", "no rows"),
    ],
)
def test_malformed_file_names_file_and_line(tmp_path, text, message):
    with pytest.raises(DataError, match=message.replace(".", r"\.").replace("(", r"\(")):
        load_sts(_data(tmp_path, text))


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(DataError, match="stsb-en-test.csv does not exist"):
        load_sts(QualityConfig(data_dir=str(tmp_path), source="local"))


def _fake_embed(vectors: dict[str, np.ndarray]):
    def embed(texts, batch_size=None):
        return np.stack([vectors[t] for t in texts]).astype(np.float32)

    return embed


def test_metrics_follow_their_definitions():
    v = {"a": np.array([1.0, 0.0]), "b": np.array([0.8, 0.6]), "c": np.array([0.0, 1.0]), "d": np.array([2.0, 0.0])}
    data = StsData(["a", "a", "c"], ["b", "c", "d"], np.array([4.5, 0.5, 0.0]), "mem", "x")
    q = score(_fake_embed(v), data)
    # cosines: a-b 0.8 (score 4.5), a-c 0.0 (0.5), c-d 0.0 (0.0)
    assert q.sim_high == pytest.approx(0.8)
    assert q.sim_low == pytest.approx(0.0)
    assert q.separation == pytest.approx(0.8)
    assert q.l2_norm_max_dev == pytest.approx(1.0)  # "d" has norm 2
    assert q.n_pairs == 3
    # Spearman x100 = Pearson of the ranks: cosines rank [3, 1.5, 1.5] (a tie), scores [3, 2, 1];
    # deviations [1, -.5, -.5] and [1, 0, -1]: 1.5 / sqrt(1.5 * 2)
    assert q.stsb_spearman == pytest.approx(100 * 1.5 / np.sqrt(3.0))


def test_cache_returns_same_result_without_embedding(tmp_path):
    v = {"a": np.array([1.0, 0.0]), "b": np.array([0.6, 0.8]), "c": np.array([0.0, 1.0])}
    data = StsData(["a", "b"], ["b", "c"], np.array([4.0, 1.0]), "mem", "digest")
    first = cached_score(_fake_embed(v), data, tmp_path, {"artifact": "k"})

    def boom(texts, batch_size=None):
        raise AssertionError("re-embedded despite the cache")

    second = cached_score(boom, data, tmp_path, {"artifact": "k"})
    assert second.cached and not first.cached
    assert second.stsb_spearman == first.stsb_spearman
