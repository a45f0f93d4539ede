"""Where a graph's nodes run: part of the validate stage, per execution provider.

Two sources, both from onnxruntime itself:

- :func:`node_assignment`: what a real session did.  onnxruntime (>= 1.23) records the
  subgraphs it gave each execution provider when the session option
  ``session.record_ep_graph_assignment_info`` is ``"1"``; ``get_provider_graph_assignment_info()``
  then lists them (``ep_name`` and the nodes, after graph optimization).  The share of
  nodes on the requested provider is the metric ``provider.node_share``; anything below 1
  means part of the graph fell back to another provider (normally the CPU).
- :func:`mobile_usability`: the static CoreML / NNAPI check that onnxruntime ships
  (``onnxruntime.tools.check_onnx_model_mobile_usability``), run in-process on the graph
  with its log captured, plus one check the tool does not make: CoreML refuses any tensor
  dimension over 16,384 (a large vocabulary's embedding table), so those nodes stay on the CPU.
"""

from __future__ import annotations

import io
import logging
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipeline.core.cache import read_json_entry, write_json_entry

COREML_MAX_DIM = 16_384


@dataclass(frozen=True)
class NodeAssignment:
    requested: str
    nodes_by_provider: dict[str, int]
    ops_off_requested: dict[str, int] = field(default_factory=dict)  # op type -> nodes elsewhere
    # graph_assignment_info: onnxruntime's record of the subgraphs; get_providers: an onnxruntime
    # without that record, where only the session's providers are known (all nodes counted as one)
    source: str = "graph_assignment_info"

    @property
    def total(self) -> int:
        return sum(self.nodes_by_provider.values())

    @property
    def share(self) -> float:
        return self.nodes_by_provider.get(self.requested, 0) / self.total if self.total else 0.0

    @property
    def fallback(self) -> bool:
        return self.total > 0 and self.share < 1.0

    def to_dict(self) -> dict:
        return {**asdict(self), "total": self.total, "share": self.share, "fallback": self.fallback}

    @classmethod
    def from_dict(cls, d: dict) -> "NodeAssignment":
        return cls(
            d["requested"], dict(d["nodes_by_provider"]), dict(d.get("ops_off_requested") or {}), d.get("source", "graph_assignment_info")
        )

    def fallback_reason(self) -> str | None:
        """Why this is not a run of the requested provider (None: every node ran on it)."""
        if self.total and not self.fallback:
            return None
        if not self.total:
            return f"{self.requested}: onnxruntime recorded no node assignment ({self.source})"
        elsewhere = ", ".join(f"{n} on {ep}" for ep, n in sorted(self.nodes_by_provider.items()) if ep != self.requested)
        ops = ", ".join(f"{op} x{n}" for op, n in sorted(self.ops_off_requested.items(), key=lambda kv: -kv[1])[:8])
        return (
            f"fallback: {self.requested} ran {self.nodes_by_provider.get(self.requested, 0)} of {self.total} nodes "
            f"(share {self.share:.3f}); {elsewhere}" + (f" (ops: {ops})" if ops else "")
        )


def assignment_of(session, provider: str) -> NodeAssignment:
    """The nodes per provider of a session built with ``session.record_ep_graph_assignment_info=1``;
    where onnxruntime has no such record (before 1.23), what ``get_providers()`` says: every node
    on its first provider."""
    counts: Counter[str] = Counter()
    off: Counter[str] = Counter()
    if not hasattr(session, "get_provider_graph_assignment_info"):
        first = session.get_providers()[0]
        return NodeAssignment(provider, {first: 1}, {}, "get_providers")
    for sub in session.get_provider_graph_assignment_info():
        nodes = sub.get_nodes()
        counts[sub.ep_name] += len(nodes)
        if sub.ep_name != provider:
            off.update(n.op_type for n in nodes)
    return NodeAssignment(provider, dict(counts), dict(off))


def node_assignment(onnx_path: str | Path, provider: str, provider_options: dict | None = None, session_options=None) -> NodeAssignment:
    """Build a session with assignment recording on and count the nodes per provider."""
    import onnxruntime as ort

    so = session_options or ort.SessionOptions()
    so.add_session_config_entry("session.record_ep_graph_assignment_info", "1")
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(onnx_path), sess_options=so, providers=[(provider, provider_options or {})])
    return assignment_of(sess, provider)


@dataclass(frozen=True)
class MobileUsability:
    """Findings of onnxruntime's CoreML/NNAPI usability check, plus CoreML's 16,384 limit."""

    may_use_mobile_ep: bool  # the tool's verdict: NNAPI or CoreML may be worth trying
    eps: dict[str, dict]  # per EP: nodes, supported_nodes, partitions, suitability (NO/MAYBE/YES)
    coreml_oversize_dims: list[dict]  # tensors with a dimension > 16,384
    log: str  # the tool's own report

    @property
    def coreml_supported_share(self) -> float:
        e = self.eps.get("CoreML MLProgram", {})
        return e["supported_nodes"] / e["nodes"] if e.get("nodes") else 0.0

    def to_dict(self) -> dict:
        return {
            "may_use_mobile_ep": self.may_use_mobile_ep,
            "eps": self.eps,
            "coreml_oversize_dims": self.coreml_oversize_dims,
            "coreml_max_dim": COREML_MAX_DIM,
        }


def _oversize_dims(model) -> list[dict]:
    found = []
    for init in model.graph.initializer:
        if any(d > COREML_MAX_DIM for d in init.dims):
            found.append({"tensor": init.name, "kind": "initializer", "shape": list(init.dims)})
    for vi in list(model.graph.input) + list(model.graph.output) + list(model.graph.value_info):
        dims = [d.dim_value for d in vi.type.tensor_type.shape.dim if d.HasField("dim_value")]
        if any(d > COREML_MAX_DIM for d in dims):
            found.append({"tensor": vi.name, "kind": "value", "shape": dims})
    return found


def mobile_usability(onnx_path: str | Path) -> MobileUsability:
    """Run onnxruntime's usability checker in-process, as its command line would (basic
    optimization first), capturing its log and the per-EP partitioning."""
    from onnxruntime.tools.mobile_helpers import usability_checker as uc
    from onnxruntime.tools.onnx_model_utils import ModelProtoWithShapeInfo, optimize_model

    buf = io.StringIO()
    logger = logging.getLogger(f"{__name__}.usability.{id(buf)}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = logging.StreamHandler(buf)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    logger.addHandler(handler)
    try:
        with tempfile.TemporaryDirectory(prefix="usability-") as tmp:
            opt = Path(tmp) / "model.onnx"
            optimize_model(Path(onnx_path), opt, use_external_initializers=True)
            may = bool(uc.checker(opt.resolve(strict=True), logger))
            model = ModelProtoWithShapeInfo(opt).model_with_shape_info
            checks = {
                "NNAPI": lambda m: uc.check_nnapi_partitions(m, True),
                "CoreML NeuralNetwork": lambda m: uc.check_coreml_partitions(m, True, "coreml_supported_neuralnetwork_ops.md"),
                "CoreML MLProgram": lambda m: uc.check_coreml_partitions(m, True, "coreml_supported_mlprogram_ops.md"),
            }
            eps = {}
            for name, fn in checks.items():
                info = fn(model)
                eps[name] = {
                    "nodes": info.num_nodes,
                    "supported_nodes": info.num_supported_nodes,
                    "partitions": info.num_partitions,
                    "suitability": info.suitability().name,
                    "unsupported_ops": sorted(info.unsupported_ops),
                }
            oversize = _oversize_dims(model)
    finally:
        logger.removeHandler(handler)
    text = buf.getvalue()
    if oversize:
        text += "".join(
            f"PIPELINE: {o['kind']} {o['tensor']} has shape {o['shape']}: a dimension over {COREML_MAX_DIM} "
            "that CoreML cannot take; those nodes stay on the CPU\n"
            for o in oversize
        )
    return MobileUsability(may, eps, oversize, text)


def cached_mobile_usability(onnx_path: str | Path, cache_dir: str | Path, key: str) -> MobileUsability:
    """:func:`mobile_usability`, cached per export artifact (its content key)."""
    path = Path(cache_dir) / "usability" / f"{key}.json"
    stored = read_json_entry(
        path, lambda d: MobileUsability(d["may_use_mobile_ep"], d["eps"], d["coreml_oversize_dims"], d["log"]), "usability"
    )
    if stored is not None:
        return stored
    result = mobile_usability(onnx_path)
    write_json_entry(path, {**result.to_dict(), "log": result.log})
    return result
