"""Quality stage: STS Benchmark Spearman, similar/different separation, L2 norms.

Results are cached per (artifact, pooling, provider, max length, data): a batch-size
or thread sweep never re-embeds the data set.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pipeline.core.cache import read_json_entry, write_json_entry
from pipeline.core.vocab import Metric
from pipeline.data.sts import StsData


@dataclass(frozen=True)
class QualityResult:
    stsb_spearman: float  # x100
    sim_high: float  # mean cosine of pairs scored >= 4
    sim_low: float  # mean cosine of pairs scored <= 1
    separation: float
    l2_norm_max_dev: float
    n_pairs: int
    seconds: float
    cached: bool = False

    def metrics(self) -> dict[str, float]:
        return {
            Metric.STSB: self.stsb_spearman,
            "quality.sim_high": self.sim_high,
            "quality.sim_low": self.sim_low,
            Metric.SEPARATION: self.separation,
            "quality.l2_norm_max_dev": self.l2_norm_max_dev,
            "quality.pairs": float(self.n_pairs),
        }


def score(embed, data: StsData, batch_size: int = 64) -> QualityResult:
    """Embed every unique sentence once and score the pairs."""
    from scipy.stats import spearmanr

    t0 = time.perf_counter()
    sentences = data.unique_sentences
    index = {s: i for i, s in enumerate(sentences)}
    vecs = embed(sentences, batch_size=batch_size).astype(np.float64)
    norms = np.linalg.norm(vecs, axis=1)
    unit = vecs / np.maximum(norms, 1e-12)[:, None]
    a = unit[[index[s] for s in data.sentences1]]
    b = unit[[index[s] for s in data.sentences2]]
    cos = (a * b).sum(axis=1)
    high, low = data.scores >= 4.0, data.scores <= 1.0
    sim_high = float(cos[high].mean()) if high.any() else float("nan")
    sim_low = float(cos[low].mean()) if low.any() else float("nan")
    return QualityResult(
        stsb_spearman=float(spearmanr(cos, data.scores).statistic * 100.0),
        sim_high=sim_high,
        sim_low=sim_low,
        separation=sim_high - sim_low,
        l2_norm_max_dev=float(np.abs(norms - 1.0).max()),
        n_pairs=len(data.scores),
        seconds=time.perf_counter() - t0,
    )


def cached_score(embed, data: StsData, cache_dir: str | Path, key_parts: dict, batch_size: int = 64) -> QualityResult:
    """:func:`score`, cached under ``cache_dir/quality`` by ``key_parts`` and the data's digest."""
    blob = json.dumps({**key_parts, "data": data.digest}, sort_keys=True).encode()
    path = Path(cache_dir) / "quality" / f"{hashlib.sha256(blob).hexdigest()[:20]}.json"
    stored = read_json_entry(path, lambda d: QualityResult(**{**{k: v for k, v in d.items() if k != "key"}, "cached": True}), "quality")
    if stored is not None:
        return stored
    result = score(embed, data, batch_size)
    write_json_entry(path, {**asdict(result), "key": key_parts}, indent=2)
    return result
