"""The config schema's shared pieces: allowed values, :class:`ConfigError` and the range checks."""

from __future__ import annotations

from typing import Any

from pipeline.core.errors import Exit, PipelineError

MODEL_SOURCES = ("package", "local", "hub", "onnx_package", "onnx_local", "split_zip_packages")
VARIANT_KINDS = ("export", "optimize", "fp16", "quantize")
INSTRUCTION_SETS = ("auto", "avx512_vnni", "avx512", "avx2", "arm64")
# the fusions Optimum's OptimizationConfig can leave out (disable_<name>_fusion)
FUSIONS = (
    "gelu",
    "attention",
    "bias_gelu",
    "layer_norm",
    "skip_layer_norm",
    "bias_skip_layer_norm",
    "skip_group_norm",
    "bias_splitgelu",
    "bias_add",
    "group_norm",
    "embed_layer_norm",
)
PADDING_SIDES = ("right", "left")
PRECISIONS = ("", "fp32", "fp16", "bf16", "int8")  # provider.precision ("": the graph's own)
HARDWARE = ("", "nvidia-gpu")  # provider.hardware: what must be on the machine before its environment is made


class ConfigError(PipelineError, ValueError):
    """A configuration value that is not allowed. The message names the field."""

    exit = Exit.CONFIG

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
