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
import os
import shutil
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from .config import ModelConfig, VariantConfig
from .sources import ResolvedModel, sha256_file

log = logging.getLogger(__name__)

OPSET = 18
MANIFEST = "manifest.json"
# files of a checkpoint folder that change the export (besides the weights)
_MODEL_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


@dataclass(frozen=True)
class Artifact:
    model: str
    variant: str
    key: str
    folder: Path
    onnx_path: Path
    cached: bool
    seconds: float  # time spent producing it in this run (0 when it came from the cache)

    @property
    def size_mb(self) -> float:
        total = sum(p.stat().st_size for p in self.folder.glob("*.onnx*"))
        return total / 1e6


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


def write_manifest(folder: Path, info: dict) -> None:
    files = {
        str(p.relative_to(folder)): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }
    (folder / MANIFEST).write_text(json.dumps({"files": files, **info}, indent=2, sort_keys=True))


def verify_manifest(folder: Path) -> str | None:
    """None when every file matches the manifest, else what is wrong."""
    mf = folder / MANIFEST
    if not mf.is_file():
        return "no manifest (an interrupted export)"
    try:
        files = json.loads(mf.read_text())["files"]
    except (ValueError, KeyError) as exc:
        return f"unreadable manifest ({exc})"
    for rel, meta in files.items():
        p = folder / rel
        if not p.is_file():
            return f"{rel} is missing"
        if p.stat().st_size != meta["bytes"]:
            return f"{rel} has {p.stat().st_size} bytes, manifest says {meta['bytes']}"
        if sha256_file(p) != meta["sha256"]:
            return f"{rel} does not match its sha256"
    return None


def cached_build(folder: Path, build, info: dict) -> tuple[bool, float]:
    """Reuse ``folder`` if it is a complete, intact cache entry, else run ``build(tmp)``.

    Returns (cached, seconds spent building).  ``build`` writes into a temporary folder
    that is renamed into place only when complete, so a killed export leaves no entry.
    """
    if folder.is_dir():
        problem = verify_manifest(folder)
        if problem is None:
            return True, 0.0
        log.warning("cache entry %s is not trusted (%s): rebuilding it", folder, problem)
        shutil.rmtree(folder, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".tmp-{folder.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    t0 = time.perf_counter()
    try:
        build(tmp)
        write_manifest(tmp, info)
        try:
            os.rename(tmp, folder)
        except OSError:  # another process finished the same entry first
            if verify_manifest(folder) is not None:
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return False, time.perf_counter() - t0


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


def export(resolved: ResolvedModel, model_cfg: ModelConfig, variant_cfg: VariantConfig, cache_dir: str | Path) -> Artifact:
    """The fp32 ONNX export of a checkpoint, from the cache when it is there."""
    cache_dir = Path(cache_dir)
    spec = {"name": "fp32", "kind": "export"}
    key = cache_key(resolved, model_cfg, spec)
    folder = cache_dir / "exports" / f"{model_cfg.name}-fp32-{key}"
    cached, seconds = cached_build(
        folder,
        lambda tmp: _export_fp32(resolved, model_cfg, tmp),
        {"model": model_cfg.name, "variant": "fp32", "key": key, "source": str(resolved.folder)},
    )
    fp32 = Artifact(model_cfg.name, "fp32", key, folder, folder / "model.onnx", cached, seconds)
    if variant_cfg.kind == "export":
        return fp32
    raise NotImplementedError(f"variant {variant_cfg.name!r} ({variant_cfg.kind}) is not implemented yet")
