"""The whole config (:class:`Config`), Hydra's ConfigStore entry, the one composer, and
:func:`to_config` (a composed config to typed objects, every range check run)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from pipeline.config.checks import ConfigError
from pipeline.config.decision import DecisionConfig
from pipeline.config.job import BenchConfig, ModelConfig, PoolingConfig, ProviderConfig, QualityConfig, VariantConfig, WorkloadConfig
from pipeline.config.tracking import TrackingConfig


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
    workload: WorkloadConfig = field(default_factory=WorkloadConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    decision: DecisionConfig = field(default_factory=DecisionConfig)
    cache_dir: str = ""
    # sweeps skip jobs already done (same config hash, status ok); rerun=true runs them again
    rerun: bool = False
    # where the decision matrix writes its reports (ranking, figures, metrics.json)
    reports_dir: str = "reports"
    # every job's local record (params, metrics, artifacts), written before MLflow logging
    records_dir: str = "reports/runs"

    def __post_init__(self) -> None:
        if not self.cache_dir:
            self.cache_dir = default_cache_dir()

    def precision(self) -> str:
        """The precision the job computes in: the provider's when it sets one (OpenVINO bf16), else
        the variant's (int8 for quantized graphs, fp16), else the imported file's own (model.precision), else fp32."""
        if self.provider.precision:
            return self.provider.precision
        variant = {"quantize": "int8", "fp16": "fp16"}.get(self.variant.kind)
        return variant or self.model.precision or "fp32"  # an imported int8 file is int8 as it is


CONF_DIR = Path(__file__).resolve().parent.parent.parent / "conf"


def compose_config(overrides: list[str], hydra_config: bool = False):
    """The project's config composed with these overrides (``hydra_config``: with its hydra node).

    The one composer: the DVC stages, the decision's command line, the benchmarks and the tests
    use it.  Not for use inside a running Hydra app (it resets Hydra's global state).
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_configs()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
            return compose(config_name="config", overrides=overrides, return_hydra_config=hydra_config)
    finally:
        GlobalHydra.instance().clear()


def _version(distribution: str) -> str:
    """``${version:numpy}`` in a config: the version of a distribution installed here (a provider's
    environment pins numpy and tokenizers to ours)."""
    from importlib.metadata import version

    return version(distribution)


def _cores() -> int:
    """``${cores:}`` in a config: the cores this process may run on (a provider whose own default
    is one thread, ggml, gets what the CPU provider takes by default)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("version"):
        OmegaConf.register_new_resolver("version", _version)
    if not OmegaConf.has_resolver("cores"):
        OmegaConf.register_new_resolver("cores", _cores)


def register_configs() -> None:
    register_resolvers()
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)


def typed(schema: type, node, prefix: str = ""):
    """``node`` (a DictConfig or dict) merged into the dataclass ``schema`` and turned into its
    objects, every ``__post_init__`` check run.  The one translator of OmegaConf's errors: an
    unknown key or a wrong type becomes a :class:`ConfigError` naming ``prefix`` + the key."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), node))
    except ConfigError:
        raise
    except OmegaConfBaseException as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, ConfigError):  # __post_init__ errors arrive wrapped
            raise cause from None
        key = f"{prefix}{getattr(exc, 'full_key', None) or ''}".rstrip(".") or "config"
        raise ConfigError(key, str(exc).splitlines()[0]) from None


def to_config(cfg: DictConfig | dict) -> Config:
    """Turn a composed config into typed objects, running every range check.

    Raises :class:`ConfigError` naming the field; OmegaConf's own validation errors
    (unknown key, wrong type) are re-raised as ConfigError too, with the key's full path.
    """
    from omegaconf.errors import OmegaConfBaseException

    register_resolvers()
    try:
        if isinstance(cfg, dict):
            cfg = OmegaConf.merge(OmegaConf.structured(Config), cfg)
        container = OmegaConf.to_container(cfg, resolve=False)
        container.pop("hydra", None)  # Hydra's own node may hold values only a job can resolve
        container = OmegaConf.to_container(OmegaConf.create(container), resolve=True)
    except OmegaConfBaseException as exc:
        raise ConfigError(str(getattr(exc, "full_key", None) or "config"), str(exc).splitlines()[0]) from None
    obj = typed(Config, container)
    assert isinstance(obj, Config)
    return obj
