"""The schema of the decision: how the configurations of a sweep are ranked (pipeline/decision/)."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING

from pipeline.config.checks import ConfigError, _one_of, _positive

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
    the noise between runs (pipeline/sweep/retime.py); differences inside it are ties."""

    top_k: int = 3  # how many leaders (0: no re-timing)
    rounds: int = 3  # rounds over the leaders, each in a rotated order
    max_seconds: float = 2.0  # timed seconds per benchmark of a round

    def __post_init__(self) -> None:
        _positive("decision.retime.top_k", self.top_k, allow_zero=True)
        _positive("decision.retime.rounds", self.rounds, allow_zero=True)
        _positive("decision.retime.max_seconds", self.max_seconds)


@dataclass
class WorkloadPartConfig:
    """One part of a provider's traffic in a decision profile (pipeline/decision/parts.py): the runs
    of this workload, judged by these graded gates (empty: the profile's), weighing ``weight``."""

    workload: str = MISSING  # queries | passages | sentences | lengths (the runs' param `workload`)
    weight: float = 1.0
    graded_gates: list[GradedGateConfig] = field(default_factory=list)
    label: str = ""  # how the report names it (empty: the workload), e.g. "indexing"

    def __post_init__(self) -> None:
        if not self.weight > 0:
            raise ConfigError(f"decision.parts[{self.workload}].weight", f"got {self.weight!r}, must be > 0")
        if not self.label:
            self.label = self.workload


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
    # the runs judged: those of this workload (param `workload`; empty: every run)
    workload: str = ""
    # a provider's traffic: each part decided on its own runs, then weighed (pipeline/decision/parts.py)
    parts: list[WorkloadPartConfig] = field(default_factory=list)

    def __post_init__(self) -> None:
        parts = [p.workload for p in self.parts]
        if len(set(parts)) != len(parts):
            raise ConfigError("decision.parts", f"a workload listed twice: {parts}")
        metrics = [c.metric for c in self.criteria]
        dupes = sorted({m for m in metrics if metrics.count(m) > 1})
        if dupes:
            raise ConfigError("decision.criteria", f"metric listed twice: {', '.join(dupes)}")
        if self.criteria and not any(c.weight > 0 for c in self.criteria):
            raise ConfigError("decision.criteria", "every weight is 0")
        if not 0 < self.noise_percentile < 100:
            raise ConfigError("decision.noise_percentile", f"got {self.noise_percentile!r}, must be in (0, 100)")
