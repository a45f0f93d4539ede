"""The old import path of the embedder, kept as the package's one shim: ``from pipeline.embed import Embedder``
still works. The embedder lives in :mod:`pipeline.embedder` (``from pipeline.embedder import Embedder``)."""

from pipeline.embedder.embed import Embedder, available_providers, l2_normalize, pool

__all__ = ["Embedder", "available_providers", "l2_normalize", "pool"]
