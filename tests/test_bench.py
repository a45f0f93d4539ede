"""The benchmark stage measures its own fresh process, not the one that started it."""

from __future__ import annotations

import numpy as np

from pipeline.config import BenchConfig, ModelConfig, VariantConfig
from pipeline.measure import bench
from pipeline.model.export import export
from pipeline.model.sources import resolve


def _rss_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise AssertionError("no VmRSS")


def test_peak_memory_is_the_benchmark_process_own(tiny_bert, tmp_path):
    cfg = ModelConfig(name="tiny-bert", source="local", path=str(tiny_bert), max_length=64, sha256=None)
    art = export(resolve(cfg), cfg, VariantConfig(), tmp_path / "cache")
    ballast = np.ones(1_000_000_000 // 8)  # 1 GB held (and touched) by the parent, as a sweep holds models
    parent = _rss_mb()
    assert parent > 1000
    result = bench.run(
        {"model_dir": str(art.folder), "max_length": 64},
        ["a dog runs", "two people are talking in a park"] * 10,
        BenchConfig(batch_size=2, warmup=2, iterations=12, min_iterations=3, max_seconds=1.0),
    )
    assert 0 < result.peak_rss_mb < parent - 500  # the child never held the parent's gigabyte
    assert result.iterations % result.passes == 0 and result.passes == 3
    del ballast
