"""What a user ships: the Embedder (numpy, tokenizers and onnxruntime only), its spec, the length grouping,
plugin execution providers and the micro-batching front. Imports only :mod:`pipeline.core`.

    from pipeline.embedder import Embedder
"""

from pipeline.embedder.embed import Embedder

__all__ = ["Embedder"]
