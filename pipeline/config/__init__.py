"""Typed configuration: the schema of every config group, registered in Hydra's ConfigStore.

One module per part: ``checks`` (allowed values, :class:`ConfigError`), ``job`` (what a job
measures), ``tracking`` (the MLflow store), ``decision`` (how a sweep is ranked) and
``compose`` (the whole :class:`Config`, the composer, :func:`to_config`).

The YAML files under ``conf/`` fill these dataclasses; a key that the schema does not
declare, or a value of the wrong type, is refused by OmegaConf when Hydra composes the
config.  Range checks live in ``__post_init__`` and run when the composed config is turned
into objects (:func:`to_config`), before any stage does work.
"""

from pipeline.config.checks import FUSIONS, INSTRUCTION_SETS, MODEL_SOURCES, PADDING_SIDES, VARIANT_KINDS, ConfigError
from pipeline.config.compose import (
    CONF_DIR,
    Config,
    compose_config,
    default_cache_dir,
    register_configs,
    register_resolvers,
    to_config,
    typed,
)
from pipeline.config.decision import (
    DIRECTIONS,
    GATE_OPS,
    NORMALIZATIONS,
    CriterionConfig,
    DecisionConfig,
    GradedGateConfig,
    HardGateConfig,
    RetimeConfig,
    RobustnessConfig,
)
from pipeline.config.job import (
    BENCH_SCENARIOS,
    BenchConfig,
    ContentionConfig,
    LoadConfig,
    ModelConfig,
    PoolingConfig,
    ProviderConfig,
    QualityConfig,
    VariantConfig,
    WorkloadConfig,
    default_data_dir,
)
from pipeline.config.tracking import TRACKING_SCHEMES, TrackingConfig, has_credentials, strip_credentials, uri_problem
from pipeline.core.vocab import POOLING_MODES

__all__ = [
    "BENCH_SCENARIOS",
    "CONF_DIR",
    "DIRECTIONS",
    "FUSIONS",
    "GATE_OPS",
    "INSTRUCTION_SETS",
    "MODEL_SOURCES",
    "NORMALIZATIONS",
    "PADDING_SIDES",
    "POOLING_MODES",
    "TRACKING_SCHEMES",
    "VARIANT_KINDS",
    "BenchConfig",
    "Config",
    "ConfigError",
    "ContentionConfig",
    "CriterionConfig",
    "DecisionConfig",
    "GradedGateConfig",
    "HardGateConfig",
    "LoadConfig",
    "ModelConfig",
    "PoolingConfig",
    "ProviderConfig",
    "QualityConfig",
    "RetimeConfig",
    "RobustnessConfig",
    "TrackingConfig",
    "VariantConfig",
    "WorkloadConfig",
    "compose_config",
    "default_cache_dir",
    "default_data_dir",
    "register_resolvers",
    "has_credentials",
    "register_configs",
    "strip_credentials",
    "to_config",
    "typed",
    "uri_problem",
]
