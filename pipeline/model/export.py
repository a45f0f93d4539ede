"""Export stage: checkpoint -> ONNX with Optimum, in a content-addressed cache.

The cache key hashes everything that changes the exported bytes: the weights' and the
model files' digests, the export settings and the versions of the exporting libraries.
An entry is written to a temporary folder and renamed into place when complete, with a
manifest of its files' sha256; an entry whose files no longer match its manifest (a
truncated or corrupted file) is not trusted: it is removed and exported again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from importlib import metadata
from pathlib import Path

from pipeline.config import ModelConfig, QualityConfig, VariantConfig
from pipeline.core.cache import cached_build, sha256_file
from pipeline.model.artifact import Artifact
from pipeline.model.sources import ResolvedModel, named_model, resolve

log = logging.getLogger(__name__)

OPSET = 18
# files of a checkpoint folder that change the export (besides the weights)
_MODEL_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def _versions() -> dict[str, str]:
    out = {}
    for dist in ("optimum", "optimum-onnx", "transformers", "torch", "onnx", "onnxruntime"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "absent"
    return out


def cache_key(resolved: ResolvedModel, model_cfg: ModelConfig, variant: dict, extra: dict | None = None) -> str:
    """A digest of everything that changes the bytes of the exported artifact."""
    files = {}
    for name in _MODEL_FILES:
        p = resolved.folder / name
        if p.is_file():
            files[name] = sha256_file(p)
    payload = {
        "weights": resolved.weights_sha256,
        "files": files,
        "opset": OPSET,
        "task": "feature-extraction",
        "trust_remote_code": model_cfg.trust_remote_code,
        "variant": variant,
        "versions": _versions(),
        **(extra or {}),
    }
    blob = json.dumps(payload, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def _export_fp32(resolved: ResolvedModel, model_cfg: ModelConfig, out: Path) -> None:
    from optimum.exporters.onnx import main_export

    main_export(
        str(resolved.folder),
        output=out,
        task="feature-extraction",
        opset=OPSET,
        library_name="transformers",
        do_validation=False,
        trust_remote_code=model_cfg.trust_remote_code,
        local_files_only=True,
    )
    # keep the sentence-transformers metadata beside the graph, so the folder is a
    # complete embedding model (pooling, prefixes) a user can take away
    for extra in ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json"):
        src = resolved.folder / extra
        if src.is_file():
            shutil.copy2(src, out / extra)
    if (resolved.folder / "1_Pooling").is_dir():
        shutil.copytree(resolved.folder / "1_Pooling", out / "1_Pooling", dirs_exist_ok=True)


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
IMPORT_INFO = "import.json"


def infer_token_output(onnx_path: Path) -> dict:
    """Which output of an existing ONNX graph holds the token embeddings.

    The hidden size is read from the word-embedding table (the initializer a Gather on
    ``input_ids`` reads); the token embeddings are the rank-3 output whose last dimension
    is that size.  Refuses a graph where this is not exactly one output.
    """
    import onnx

    m = onnx.load(str(onnx_path), load_external_data=False)
    g = m.graph
    inits = {i.name: list(i.dims) for i in g.initializer}
    # an int8 graph may feed the Gather from a dequantized table (DequantizeLinear, or Cast+Mul)
    producers = {o: n for n in g.node for o in n.output}

    def table_dims(name: str, depth: int = 0) -> list | None:
        if name in inits:
            return inits[name] if len(inits[name]) == 2 else None
        node = producers.get(name)
        if node is None or depth > 4 or node.op_type not in ("DequantizeLinear", "Cast", "Identity", "Mul"):
            return None
        for inp in node.input:
            dims = table_dims(inp, depth + 1)
            if dims is not None:
                return dims
        return None

    vocab = hidden = None
    for n in g.node:
        if n.op_type == "Gather" and len(n.input) > 1 and n.input[1] == "input_ids":
            dims = table_dims(n.input[0])
            if dims is not None:
                vocab, hidden = dims
                break
    if hidden is None:
        raise ValueError(f"{onnx_path}: no word-embedding table (a Gather on input_ids) found; cannot infer the hidden size")
    outputs = {o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in g.output}
    rank3 = [name for name, dims in outputs.items() if len(dims) == 3 and dims[-1] == hidden]
    if len(rank3) != 1:
        raise ValueError(f"{onnx_path}: expected one rank-3 output with last dim {hidden}, found {rank3} in {outputs}")
    return {
        "output_name": rank3[0],
        "hidden_size": int(hidden),
        "vocab_size": int(vocab),
        "outputs": outputs,
        "inputs": [i.name for i in g.input if i.name not in inits],
        "rule": "token embeddings = the rank-3 output whose last dim equals the word-embedding table's width",
    }


def _import_onnx(resolved: ResolvedModel, model_cfg: ModelConfig, tok_folder: Path, out: Path) -> None:
    assert resolved.weights is not None
    info = infer_token_output(resolved.weights)
    shutil.copy2(resolved.weights, out / "model.onnx")
    for name in _TOKENIZER_FILES:
        if (tok_folder / name).is_file():
            shutil.copy2(tok_folder / name, out / name)
    if not (out / "tokenizer.json").is_file():
        raise ValueError(f"model {model_cfg.tokenizer_from!r} (tokenizer_from) has no tokenizer.json in {tok_folder}")
    tok = json.loads((out / "tokenizer.json").read_text())
    ids = list(tok.get("model", {}).get("vocab", {}).values()) + [t["id"] for t in tok.get("added_tokens", [])]
    tok_vocab = max(ids) + 1 if ids else 0
    if tok_vocab > info["vocab_size"]:
        raise ValueError(
            f"the tokenizer of {model_cfg.tokenizer_from!r} has token ids up to {tok_vocab - 1}, beyond the graph's "
            f"embedding table ({info['vocab_size']}): not a compatible tokenizer"
        )
    info.update(
        {
            "source_file": str(resolved.weights),
            "source_sha256": resolved.weights_sha256,
            "tokenizer_from": model_cfg.tokenizer_from,
            "tokenizer_vocab": tok_vocab,
        }
    )
    (out / IMPORT_INFO).write_text(json.dumps(info, indent=2))


def base_artifact(resolved: ResolvedModel, model_cfg: ModelConfig, cache_dir: str | Path) -> Artifact:
    """The artifact every variant derives from: the fp32 export of a checkpoint, or an
    existing ONNX file imported as it is (with the tokenizer of ``tokenizer_from``)."""
    cache_dir = Path(cache_dir)
    if model_cfg.source.startswith("onnx_"):
        tok_model = resolve(named_model(model_cfg.tokenizer_from), cache_dir)  # type: ignore[arg-type]
        tok_files = {n: sha256_file(tok_model.folder / n) for n in _TOKENIZER_FILES if (tok_model.folder / n).is_file()}
        spec = {"name": "imported", "kind": "import"}
        key = cache_key(resolved, model_cfg, spec, {"tokenizer": tok_files})
        folder = cache_dir / "exports" / f"{model_cfg.name}-imported-{key}"
        cached, seconds = cached_build(
            folder,
            lambda tmp: _import_onnx(resolved, model_cfg, tok_model.folder, tmp),
            {"model": model_cfg.name, "variant": "imported", "key": key, "source": str(resolved.weights)},
        )
        info = json.loads((folder / IMPORT_INFO).read_text())
        return Artifact(model_cfg.name, "imported", key, folder, folder / "model.onnx", cached, seconds, info["output_name"], info)
    spec = {"name": "fp32", "kind": "export"}
    key = cache_key(resolved, model_cfg, spec)
    folder = cache_dir / "exports" / f"{model_cfg.name}-fp32-{key}"
    cached, seconds = cached_build(
        folder,
        lambda tmp: _export_fp32(resolved, model_cfg, tmp),
        {"model": model_cfg.name, "variant": "fp32", "key": key, "source": str(resolved.folder)},
    )
    return Artifact(model_cfg.name, "fp32", key, folder, folder / "model.onnx", cached, seconds)


def unsupported_reason(model_cfg: ModelConfig, variant_cfg: VariantConfig, provider_ep: str) -> str | None:
    """Why this model x variant x provider cannot run here (None: it can). Checked before any work."""
    if variant_cfg.providers and provider_ep not in variant_cfg.providers:
        return f"variant {variant_cfg.name!r} cannot run on {provider_ep}; it needs one of {', '.join(variant_cfg.providers)}"
    if model_cfg.source.startswith("onnx_") and variant_cfg.kind != "export":
        return (
            f"model {model_cfg.name!r} is an imported ONNX file used as it is (variant=fp32); "
            f"variant {variant_cfg.name!r} derives from a checkpoint's fp32 export"
        )
    return None


def export(
    resolved: ResolvedModel,
    model_cfg: ModelConfig,
    variant_cfg: VariantConfig,
    cache_dir: str | Path,
    quality_cfg: QualityConfig | None = None,
) -> Artifact:
    """The artifact for a model and variant, from the cache when it is there.

    ``variant.kind=export`` is the base artifact (fp32 export, or the imported ONNX file);
    other kinds derive from it (see :mod:`pipeline.model.variants`).  ``quality_cfg`` locates the
    STS Benchmark dev split that static quantization calibrates on.
    """
    base = base_artifact(resolved, model_cfg, cache_dir)
    if variant_cfg.kind == "export":
        return base
    from pipeline.model import variants

    texts = calibration_texts(variant_cfg, quality_cfg) if variants.needs_calibration(variant_cfg) else None
    return variants.build(base, model_cfg, variant_cfg, Path(cache_dir), texts)


def calibration_texts(variant: VariantConfig, quality_cfg: QualityConfig | None) -> list[str]:
    """Calibration sentences for static quantization: the STS Benchmark *dev* split (never test)."""
    from pipeline.data.sts import load_sts

    if quality_cfg is None:
        raise ValueError(f"variant {variant.name!r} (static int8) needs the quality config to find the STS dev split")
    return load_sts(quality_cfg, split="dev").unique_sentences[: variant.calibration_samples]
