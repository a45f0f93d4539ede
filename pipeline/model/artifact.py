"""An exported model: the ONNX graph and its side files in a cache folder (a leaf module)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Artifact:
    model: str
    variant: str
    key: str
    folder: Path
    onnx_path: Path
    cached: bool
    seconds: float  # time spent producing it in this run (0 when it came from the cache)
    output_name: str | None = None  # the token-embeddings output (None: the embedder finds it)
    info: dict = field(default_factory=dict)  # what was inferred or chosen while building it
    base: "Artifact | None" = None  # the fp32 artifact a variant derives from

    @property
    def size_mb(self) -> float:
        total = sum(p.stat().st_size for p in self.folder.glob("*.onnx*"))
        return total / 1e6
