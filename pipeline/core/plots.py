"""The figures' common ground: matplotlib without a display, one way to save a figure, and the
empirical CDF every latency figure draws (a job's own, the decision's, the DVC study's)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def pyplot():
    """matplotlib's pyplot on the Agg backend (no display needed), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: Path, dpi: int = 110) -> Path:
    """Lay the figure out, write it, and free it."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return Path(path)


def ecdf(samples) -> tuple[np.ndarray, np.ndarray]:
    """The sorted samples and the fraction of samples at or below each."""
    x = np.sort(np.asarray(samples, dtype=np.float64))
    return x, np.arange(1, x.size + 1) / max(x.size, 1)


def palette(n: int) -> list:
    """``n`` distinct colours (tab10, or tab20 past ten)."""
    from matplotlib import colormaps

    cmap = colormaps["tab20" if n > 10 else "tab10"]
    return [cmap(i % cmap.N) for i in range(n)]
