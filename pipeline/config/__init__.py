"""Typed configuration: the schema of every config group, registered in Hydra's ConfigStore.

One module per part: ``checks`` (allowed values, :class:`ConfigError`), ``job`` (what a job
measures), ``tracking`` (the MLflow store), ``decision`` (how a sweep is ranked) and
``compose`` (the whole :class:`Config`, the composer, :func:`to_config`).

The YAML files under ``conf/`` fill these dataclasses; a key that the schema does not
declare, or a value of the wrong type, is refused by OmegaConf when Hydra composes the
config.  Range checks live in ``__post_init__`` and run when the composed config is turned
into objects (:func:`to_config`), before any stage does work.

The job's schema (``checks``, ``job``, ``tracking``) imports nothing but the standard library: a
process in a provider's own environment (numpy, tokenizers and onnxruntime only) reads it.  What
needs Hydra or OmegaConf (``compose``, ``decision``) is imported on first use of its names.
"""

from pipeline.config.checks import FUSIONS, INSTRUCTION_SETS, MODEL_SOURCES, PADDING_SIDES, VARIANT_KINDS, ConfigError
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

# names whose module needs Hydra or OmegaConf, imported when first asked for (PEP 562)
_LAZY = {
    **dict.fromkeys(
        ("CONF_DIR", "Config", "compose_config", "default_cache_dir", "register_configs", "register_resolvers", "to_config", "typed"),
        "pipeline.config.compose",
    ),
    **dict.fromkeys(
        (
            "DIRECTIONS",
            "GATE_OPS",
            "NORMALIZATIONS",
            "CriterionConfig",
            "DecisionConfig",
            "GradedGateConfig",
            "HardGateConfig",
            "RetimeConfig",
            "RobustnessConfig",
        ),
        "pipeline.config.decision",
    ),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pipeline.config' has no attribute {name!r}")


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
