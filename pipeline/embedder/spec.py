"""EmbedderSpec: everything that builds a :class:`pipeline.embedder.Embedder`, frozen and JSON-able.

What the pipeline ships to the processes that measure (the benchmark, the load run, a
provider's own environment: :mod:`pipeline.runtime.worker`) and what ``bench_spec.json`` stores.
It imports nothing heavier than the embedder itself (numpy, tokenizers, onnxruntime), and
that only in :meth:`EmbedderSpec.build`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.embedder.embed import Embedder


@dataclass(frozen=True)
class EmbedderSpec:
    """Everything that builds an :class:`Embedder`, frozen and JSON-able.

    It is what the pipeline ships to the processes that measure (the benchmark, the load run,
    a provider's own environment) and what ``bench_spec.json`` stores; ``build()`` makes the
    embedder.  Its fields are the constructor's keywords (a test keeps the two in step).
    """

    model_dir: str
    pooling: str = "mean"
    provider: str = "CPUExecutionProvider"
    provider_options: dict[str, Any] = field(default_factory=dict)
    threads: int = 0
    max_length: int | None = None
    batch_size: int = 32
    padding_side: str = "right"
    prefix: str = ""
    onnx_file: str = "model.onnx"
    output_name: str | None = None
    tokenizer_dir: str | None = None
    graph_optimization_level: str = "all"
    mem_arena: bool = True
    normalize: bool = True
    io_binding: bool = False
    call_cost: int = 32
    disabled_optimizers: tuple[str, ...] | None = None
    session_config: dict[str, str] = field(default_factory=dict)
    plugin: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "model_dir", str(self.model_dir))
        if self.tokenizer_dir is not None:
            object.__setattr__(self, "tokenizer_dir", str(self.tokenizer_dir))
        if self.disabled_optimizers is not None:
            object.__setattr__(self, "disabled_optimizers", tuple(self.disabled_optimizers))
        object.__setattr__(self, "provider_options", dict(self.provider_options or {}))
        object.__setattr__(self, "session_config", {str(k): str(v) for k, v in (self.session_config or {}).items()})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EmbedderSpec":
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise TypeError(f"EmbedderSpec: unknown field(s) {', '.join(unknown)}")
        return cls(**d)

    @classmethod
    def of(cls, spec: "EmbedderSpec | dict[str, Any]") -> "EmbedderSpec":
        return spec if isinstance(spec, cls) else cls.from_dict(dict(spec))

    @classmethod
    def from_config(cls, cfg, artifact) -> "EmbedderSpec":
        """The embedder of one job: ``cfg`` a :class:`pipeline.config.Config`, ``artifact`` its
        export (:class:`pipeline.model.export.Artifact`).  Duck-typed: this module imports neither."""
        p = cfg.provider
        return cls(
            model_dir=str(artifact.folder),
            onnx_file=artifact.onnx_path.name,
            output_name=artifact.output_name,
            prefix=cfg.model.query_prefix,
            pooling=cfg.pooling.mode,
            provider=p.ep,
            provider_options=dict(p.options),
            threads=p.threads,
            max_length=cfg.model.max_length,
            padding_side=cfg.model.padding_side,
            graph_optimization_level=p.graph_optimization_level,
            mem_arena=p.mem_arena,
            io_binding=p.io_binding,
            call_cost=p.call_cost,
            disabled_optimizers=None if p.disabled_optimizers is None else tuple(p.disabled_optimizers),
            session_config=dict(getattr(p, "session_config", None) or {}),
            plugin=getattr(p, "plugin", None) or None,
        )

    def replace(self, **changes) -> "EmbedderSpec":
        from dataclasses import replace

        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: lists for tuples, plain dicts."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        if d["disabled_optimizers"] is not None:
            d["disabled_optimizers"] = list(d["disabled_optimizers"])
        d["provider_options"] = dict(d["provider_options"])
        d["session_config"] = dict(d["session_config"])
        return d

    def build(self) -> "Embedder":
        from pipeline.embedder.embed import Embedder

        return Embedder(**self.to_dict())
