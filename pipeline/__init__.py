"""Choose a text-embedding configuration from measurements.

The embedding path a user ships is :class:`pipeline.embedder.Embedder`; the rest of the
package measures it (see README.md).  Kept free of heavy imports: ``python -m
pipeline.measure.bench`` must start fast.
"""

__version__ = "0.1.0"
