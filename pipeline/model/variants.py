"""Export variants: ORTOptimizer O1-O4, fp16, ORTQuantizer int8 (dynamic and static).

Every variant derives from the cached fp32 export and is cached itself with
:func:`cache.cached_build`; its key is the fp32 key plus the variant's spec plus
whatever else changes its bytes (the chosen instruction set, the calibration data's
digest).  A variant folder holds ``model.onnx`` and the tokenizer files: it is a
complete model folder for :class:`pipeline.embedder.Embedder`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import shutil
from dataclasses import asdict
from pathlib import Path

from pipeline.config import ModelConfig, VariantConfig
from pipeline.core.cache import MANIFEST, cached_build
from pipeline.model.artifact import Artifact

log = logging.getLogger(__name__)

# fields of a variant config that do not change its bytes
_NOT_IN_KEY = ("name", "providers")


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def choose_instruction_set(configured: str = "auto") -> str:
    """The ORTQuantizer instruction set: as configured, else the best this CPU has."""
    if configured != "auto":
        return configured
    if platform.machine().lower() in ("arm64", "aarch64"):
        return "arm64"
    flags = cpu_flags()
    if "avx512_vnni" in flags:
        return "avx512_vnni"
    if "avx512f" in flags or "avx512bw" in flags:
        return "avx512"
    return "avx2"


def _copy_side_files(src: Path, dst: Path) -> None:
    """Everything of the source folder but its graph(s) and manifest: tokenizer, configs, pooling."""
    for p in src.iterdir():
        if p.name == MANIFEST or p.suffix == ".onnx" or p.name.endswith(".onnx_data") or p.name.startswith("."):
            continue
        if (dst / p.name).exists():
            continue
        if p.is_dir():
            shutil.copytree(p, dst / p.name)
        else:
            shutil.copy2(p, dst / p.name)


def _rename_graph(out: Path) -> None:
    """Optimum names its output ``model_<suffix>.onnx`` or ``model.onnx``; make it model.onnx."""
    graphs = sorted(out.glob("*.onnx"))
    if len(graphs) != 1:
        raise RuntimeError(f"expected one .onnx file in {out}, found {[g.name for g in graphs]}")
    if graphs[0].name != "model.onnx":
        graphs[0].rename(out / "model.onnx")


# -- one builder per kind ------------------------------------------------------------
def _optimize(src: Path, out: Path, level: int, disable_fusions: list[str] | None = None) -> None:
    from optimum.onnxruntime import ORTOptimizer
    from optimum.onnxruntime.configuration import AutoOptimizationConfig

    off = {f"disable_{name}_fusion": True for name in disable_fusions or []}
    cfg = AutoOptimizationConfig.with_optimization_level(f"O{level}", for_gpu=level == 4, **off)
    ORTOptimizer.from_pretrained(src).optimize(cfg, save_dir=out, file_suffix=None)
    _rename_graph(out)
    _copy_side_files(src, out)


def _fp16(src: Path, out: Path) -> None:
    """Half-precision weights and activations (inputs/outputs kept as they are), by ORTOptimizer."""
    from optimum.onnxruntime import ORTOptimizer
    from optimum.onnxruntime.configuration import OptimizationConfig

    cfg = OptimizationConfig(optimization_level=1, optimize_for_gpu=True, fp16=True)
    ORTOptimizer.from_pretrained(src).optimize(cfg, save_dir=out, file_suffix=None)
    _rename_graph(out)
    _copy_side_files(src, out)


def quantization_config(variant: VariantConfig, isa: str):
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    is_static = variant.quantization == "static"
    kwargs = {"is_static": is_static, "per_channel": variant.per_channel, "operators_to_quantize": variant.operators or None}
    make = getattr(AutoQuantizationConfig, isa)
    if isa in ("avx2", "avx512"):
        kwargs["reduce_range"] = variant.reduce_range
    qc = make(**kwargs)
    if isa not in ("avx2", "avx512"):
        qc.reduce_range = variant.reduce_range
    return qc


def calibration_rows(src: Path, texts: list[str], max_length: int, same_length: bool = False) -> list[dict]:
    """Tokenized calibration inputs, one row per text (the graph's own input names).

    ``same_length``: right-pad every row to the longest one (mask 0 on the padding), which the
    histogram calibrators (percentiles, entropy) need: they stack activations across rows.
    """
    import onnx
    from tokenizers import Tokenizer

    m = onnx.load(str(src / "model.onnx"), load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    inputs = [i.name for i in m.graph.input if i.name not in inits]
    tok = Tokenizer.from_file(str(src / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=max_length)
    encs = tok.encode_batch(texts)
    width = max((len(e.ids) for e in encs), default=0) if same_length else 0
    rows = []
    for enc in encs:
        n = len(enc.ids)
        pad = max(width - n, 0)
        row = {"input_ids": list(enc.ids) + [0] * pad, "attention_mask": [1] * n + [0] * pad, "token_type_ids": [0] * (n + pad)}
        if "position_ids" in inputs:
            row["position_ids"] = list(range(n + pad))
        rows.append({k: v for k, v in row.items() if k in inputs})
    return rows


def _typed_graph(src: Path, tmp: Path) -> Path:
    """A copy of ``src/model.onnx`` with every tensor's type recorded, for the quantizer.

    ONNX's own shape inference does not know ONNX Runtime's fused operators (Attention,
    BiasGelu, ...), so on an ORTOptimizer graph the quantizer cannot tell the type of their
    outputs; ONNX Runtime's symbolic shape inference does.  Returns the folder holding it.
    """
    import onnx
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    model = onnx.load(str(src / "model.onnx"))
    if not any(n.domain == "com.microsoft" for n in model.graph.node):
        return src  # a plain graph: onnx's inference is enough
    typed = SymbolicShapeInference.infer_shapes(model, auto_merge=True)
    folder = tmp / ".typed"
    folder.mkdir()
    onnx.save(typed, str(folder / "model.onnx"))
    if (src / "config.json").is_file():
        shutil.copy2(src / "config.json", folder / "config.json")
    return folder


def weight_products(path: Path) -> list[str]:
    """Names of the nodes that multiply by a constant weight: MatMul / Gemm with an initializer
    input, and fused Attention (its QKV weights)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    inits = {i.name for i in graph.initializer}
    return [
        n.name for n in graph.node if n.op_type == "Attention" or (n.op_type in ("MatMul", "Gemm") and any(i in inits for i in n.input))
    ]


def _quantize(src: Path, out: Path, variant: VariantConfig, isa: str, calibration: list[str] | None, max_length: int) -> dict:
    from onnxruntime.quantization import CalibrationMethod
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import CalibrationConfig

    qc = quantization_config(variant, isa)
    typed = _typed_graph(src, out)
    if variant.weights_only:  # and calibrate only those nodes' tensors
        qc.nodes_to_quantize = weight_products(typed / "model.onnx")
        qc.operators_to_quantize = [op for op in qc.operators_to_quantize if op in ("MatMul", "Gemm", "Attention")]
    quantizer = ORTQuantizer.from_pretrained(typed, file_name="model.onnx")
    ranges = None
    if variant.quantization == "static":
        assert calibration is not None
        rows = calibration_rows(src, calibration, max_length, same_length=variant.calibration_method != "minmax")
        method = {"minmax": CalibrationMethod.MinMax, "percentiles": CalibrationMethod.Percentile, "entropy": CalibrationMethod.Entropy}
        cal = CalibrationConfig(
            dataset_name="stsb",
            dataset_config_name="en",
            dataset_split="dev",
            dataset_num_samples=len(rows),
            method=method[variant.calibration_method],
            num_bins=2048 if variant.calibration_method != "minmax" else None,
            num_quantized_bins=128 if variant.calibration_method == "entropy" else None,
            percentile=99.999 if variant.calibration_method == "percentiles" else None,
            moving_average=False if variant.calibration_method == "minmax" else None,
        )
        ranges = quantizer.fit(
            dataset=rows,  # the reader only iterates rows of {input name: ids}
            calibration_config=cal,
            onnx_augmented_model_name=str(out / "augmented.onnx.tmp"),
            operators_to_quantize=qc.operators_to_quantize,
        )
        for p in out.glob("augmented.onnx.tmp*"):
            p.unlink()
    quantizer.quantize(qc, save_dir=out, file_suffix=None, calibration_tensors_range=ranges)
    if typed != src:
        shutil.rmtree(typed)
    _rename_graph(out)
    _copy_side_files(src, out)
    return {
        "instruction_set": isa,
        "format": str(qc.format),
        "mode": str(qc.mode),
        "per_channel": qc.per_channel,
        "reduce_range": qc.reduce_range,
        "operators": list(qc.operators_to_quantize),
        "nodes_quantized": len(qc.nodes_to_quantize) if qc.nodes_to_quantize else None,  # None: every node of those types
    }


# -- the entry point -----------------------------------------------------------------
def needs_calibration(variant: VariantConfig) -> bool:
    """Static int8: the caller passes the calibration sentences to :func:`build`."""
    return variant.kind == "quantize" and variant.quantization == "static"


def build(
    base: Artifact, model_cfg: ModelConfig, variant: VariantConfig, cache_dir: Path, calibration_texts: list[str] | None = None
) -> Artifact:
    """The variant of ``base`` (an fp32 export) that ``variant`` describes, cached.  Static int8
    calibrates on ``calibration_texts`` (their digest is part of the cache key)."""
    spec = {k: v for k, v in asdict(variant).items() if k not in _NOT_IN_KEY}
    extra: dict = {}
    src = base
    calibration = None
    if variant.kind == "quantize":
        extra["instruction_set"] = choose_instruction_set(variant.instruction_set)
        extra["max_length"] = model_cfg.max_length
        if variant.optimization_level is not None:  # quantize the optimized graph
            without = "".join(f"-no_{f}" for f in variant.disable_fusions)
            opt = VariantConfig(
                name=f"O{variant.optimization_level}{without}",
                kind="optimize",
                optimization_level=variant.optimization_level,
                disable_fusions=list(variant.disable_fusions),
            )
            src = build(base, model_cfg, opt, cache_dir)
        if variant.quantization == "static":
            if not calibration_texts:
                raise ValueError(f"variant {variant.name!r} (static int8) needs calibration sentences")
            calibration = list(calibration_texts)
            extra["calibration_sha256"] = hashlib.sha256(json.dumps(calibration).encode()).hexdigest()
    payload = json.dumps({"base": src.key, "spec": spec, **extra}, sort_keys=True).encode()
    key = hashlib.sha256(payload).hexdigest()[:20]
    folder = cache_dir / "exports" / f"{model_cfg.name}-{variant.name}-{key}"
    if not folder.is_dir():  # the same bytes built under another variant name: reuse them
        folder = next(iter(sorted((cache_dir / "exports").glob(f"{model_cfg.name}-*-{key}"))), folder)
    built: dict = {}

    def make(tmp: Path) -> None:
        if variant.kind == "optimize":
            _optimize(src.folder, tmp, int(variant.optimization_level), list(variant.disable_fusions))  # type: ignore[arg-type]
        elif variant.kind == "fp16":
            _fp16(src.folder, tmp)
        elif variant.kind == "quantize":
            built.update(_quantize(src.folder, tmp, variant, extra["instruction_set"], calibration, model_cfg.max_length))
        else:  # pragma: no cover - config validation refuses it first
            raise ValueError(variant.kind)
        (tmp / "variant.json").write_text(json.dumps({"spec": spec, **extra, **built, "from": src.key}, indent=2, sort_keys=True))

    log.info("variant %s of %s (from %s)", variant.name, model_cfg.name, src.folder.name)
    cached, seconds = cached_build(folder, make, {"model": model_cfg.name, "variant": variant.name, "key": key, "from": src.key})
    info = json.loads((folder / "variant.json").read_text())
    return Artifact(model_cfg.name, variant.name, key, folder, folder / "model.onnx", cached, seconds, base.output_name, info, base)
