"""What a job's stages hand on: the job's state, and the typed result each stage adds to it.

A stage (:mod:`pipeline.job.stages`) is a function from a :class:`JobState` to the next: it reads
what the stages before it found and adds its own result, typed (the export's artifact, the node
placement, the parity, the benchmark's :class:`~pipeline.measure.bench.BenchResult`...).  No stage
writes a metric or tag name: :func:`record_fields` is the one place that turns the results into
the metrics and tags a run logs (docs/design.md, "Names every run logs"), also for a job that
stopped half-way (a skipped or failed job keeps what its earlier stages found).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config import Config
from pipeline.core.vocab import Metric, contended_reason
from pipeline.data.sts import StsData
from pipeline.embedder.spec import EmbedderSpec
from pipeline.measure.bench import BenchResult
from pipeline.measure.quality import QualityResult
from pipeline.measure.workload import Workload
from pipeline.model.artifact import Artifact
from pipeline.model.sources import ResolvedModel
from pipeline.model.validate import StructureReport
from pipeline.runtime.placement import MobileUsability, NodeAssignment
from pipeline.runtime.providers import Runtime


def _flag(value: bool) -> str:
    return str(value).lower()


@dataclass(frozen=True)
class Placed:
    """Where the provider put the graph's nodes, and whether a mobile EP could take it."""

    assignment: NodeAssignment
    usability: MobileUsability

    def metrics(self) -> dict[str, float]:
        return {
            "provider.node_share": self.assignment.share,
            "provider.nodes_total": float(self.assignment.total),
            "usability.coreml_supported_share": self.usability.coreml_supported_share,
            "usability.coreml_oversize_dims": float(len(self.usability.coreml_oversize_dims)),
        }

    def tags(self) -> dict[str, str]:
        t = {
            "fallback": _flag(self.assignment.fallback),
            "usability.mobile_ep": _flag(self.usability.may_use_mobile_ep),
            "provider.assignment_source": self.assignment.source,
        }
        if self.assignment.fallback:
            elsewhere = {k: v for k, v in self.assignment.nodes_by_provider.items() if k != self.assignment.requested}
            t["fallback.nodes"] = json.dumps(elsewhere)[:500]
        return t


@dataclass(frozen=True)
class Parity:
    """The lowest cosine against the PyTorch reference, or why there is no reference here."""

    min_cosine: float | None
    unavailable: str = ""

    def metrics(self) -> dict[str, float]:
        return {"parity.min_cosine": self.min_cosine} if self.min_cosine is not None else {}

    def tags(self) -> dict[str, str]:
        return {"parity.unavailable": self.unavailable} if self.min_cosine is None else {}


@dataclass(frozen=True)
class WorkloadRun:
    """The workload's texts, the spec that embeds them, and what was measured on them besides
    the timings (parity on these texts, a reduced precision's loss against fp32)."""

    workload: Workload
    spec: EmbedderSpec
    texts: list[str]
    widened_to: int | None = None  # the embedder's max_length, where the texts are longer than the model's
    parity_min_cosine: float | None = None
    parity_unavailable: str = ""
    loss_vs_fp32: dict[str, float] = field(default_factory=dict)

    def metrics(self) -> dict[str, float]:
        m = {f"workload.{k}": v for k, v in self.loss_vs_fp32.items()}
        if self.parity_min_cosine is not None:
            m["parity.workload_min_cosine"] = self.parity_min_cosine
        return m

    def tags(self) -> dict[str, str]:
        t = dict(self.workload.tags())
        if self.widened_to is not None:
            t["workload.max_length"] = str(self.widened_to)
        if self.parity_unavailable:
            t["parity.workload_unavailable"] = self.parity_unavailable
        return t


@dataclass(frozen=True)
class LoadRun:
    """The load scenario's result, and its own conditions (None: not judged)."""

    result: Any  # load.LoadResult
    other_cpu_share: float | None
    other_cores: float | None
    contended: str | None

    def metrics(self) -> dict[str, float]:
        m = dict(self.result.metrics())
        if self.other_cpu_share is not None:
            m["load.conditions.other_cpu_share"] = self.other_cpu_share
        if self.other_cores is not None:
            m["load.conditions.other_cores"] = self.other_cores
        return m


@dataclass(frozen=True)
class Scored:
    """Quality on the evaluation data (cached), and the loss against the model's fp32."""

    quality: QualityResult
    delta_vs_fp32: float | None

    def metrics(self) -> dict[str, float]:
        m = dict(self.quality.metrics())
        if self.delta_vs_fp32 is not None:
            m["quality.stsb_delta_vs_fp32"] = self.delta_vs_fp32
        return m

    def tags(self) -> dict[str, str]:
        return {"quality.cached": _flag(self.quality.cached)}


@dataclass
class JobState:
    """One job on its way through the stages: the config, then each stage's result (None until
    that stage ran)."""

    cfg: Config
    out_dir: Path
    resolved: ResolvedModel
    positions: int | None = None  # the most tokens the model takes (its config.json), None: it does not say
    data: StsData | None = None
    sentences: list[str] = field(default_factory=list)  # the benchmark's pool of distinct sentences
    artifact: Artifact | None = None
    structure: StructureReport | None = None
    model_config: dict = field(default_factory=dict)  # the model's config.json
    spec: EmbedderSpec | None = None
    runtime: Runtime | None = None
    versions: dict[str, str] = field(default_factory=dict)  # runtime.* tags: the provider's build
    embedder: Any = None  # embeds for quality and parity (this process, or the provider's own)
    placed: Placed | None = None
    reference: ResolvedModel | None = None  # the PyTorch checkpoint parity compares against
    parity: Parity | None = None
    workload: WorkloadRun | None = None
    bench: BenchResult | None = None
    load: LoadRun | None = None
    scored: Scored | None = None

    @property
    def quality_key(self) -> dict:
        """What the quality and parity caches are keyed on."""
        cfg = self.cfg
        return {
            "artifact": self.artifact.key,
            "pooling": cfg.pooling.mode,
            "provider": cfg.provider.name,
            "max_length": cfg.model.max_length,
            **({"prefix": cfg.model.query_prefix} if cfg.model.query_prefix else {}),
        }


def record_fields(state: JobState) -> tuple[dict[str, float], dict[str, str]]:
    """The metrics and tags of a job, from the results its stages reached."""
    metrics: dict[str, float] = {}
    tags: dict[str, str] = {"weights.verified": _flag(state.resolved.verified)}
    if state.data is not None:
        metrics["quality.pairs"] = float(len(state.data.scores))
        tags.update({"quality.data_sha256": state.data.digest, "quality.dataset": state.data.label})
    if state.artifact is not None:
        a = state.artifact
        tags.update(
            {
                "export.cached": _flag(a.cached),
                "artifact.key": a.key,
                "artifact.folder": str(a.folder.resolve()),
                "artifact.onnx_file": a.onnx_path.name,
            }
        )
        if not a.cached:  # a cached export took no time here: no 0 s figure that reads as a fast export
            metrics["export.seconds"] = a.seconds
        metrics["model.size_mb"] = a.size_mb
    tags.update(state.versions)
    for part in (state.placed, state.parity, state.workload, state.bench, state.load, state.scored):
        if part is not None:
            metrics.update(part.metrics())
            tags.update(part.tags() if hasattr(part, "tags") else {})
    if state.load is not None and state.load.contended and not contended_reason(tags.get(Metric.CONTENDED)):
        tags[Metric.CONTENDED] = state.load.contended  # the load run was contended where the benchmark was not
        metrics[Metric.CONTENDED] = 1.0
    return metrics, tags
