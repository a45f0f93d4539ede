"""Resolve stage: find a checkpoint on disk and verify its pinned weights."""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from .config import ModelConfig


class ModelUnavailable(RuntimeError):
    """The model cannot be had here (not installed, no network). Jobs report it as skipped."""


class ChecksumMismatch(RuntimeError):
    """The weights on disk are not the pinned ones."""


@dataclass(frozen=True)
class ResolvedModel:
    name: str
    folder: Path  # a folder with config.json, tokenizer files and weights (or an ONNX file)
    weights: Path | None
    weights_sha256: str | None
    verified: bool  # the sha256 was pinned and matched
    source: str


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _package_folder(cfg: ModelConfig) -> Path:
    spec = importlib.util.find_spec(cfg.package) if cfg.package else None
    if spec is None or not spec.submodule_search_locations:
        dist = cfg.package.replace("_", "-") if cfg.package else "?"
        raise ModelUnavailable(
            f"model {cfg.name!r}: Python package {cfg.package!r} is not installed "
            f"(pip install {dist}, or see the README's model extras)"
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    return root / cfg.subdir if cfg.subdir else root


def _hub_folder(cfg: ModelConfig) -> Path:
    """Download (or find in the local hub cache) a model-hub snapshot. Needs a network
    the first time; with HF_HUB_OFFLINE=1 or no network it is reported as unavailable."""
    try:
        from huggingface_hub import snapshot_download

        return Path(
            snapshot_download(
                cfg.hub_id,
                revision=cfg.revision,
                allow_patterns=["*.json", "*.txt", "*.safetensors", "*.model", "1_Pooling/*", "onnx/model.onnx"],
            )
        )
    except Exception as exc:  # offline, unknown id, gated repo...
        raise ModelUnavailable(
            f"model {cfg.name!r}: hub model {cfg.hub_id!r} is unavailable ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); it needs a network or a local copy "
            "(model.source=local model.path=...)"
        ) from None


def resolve(cfg: ModelConfig) -> ResolvedModel:
    """Find the model's folder and verify its weights against the pinned sha256."""
    if cfg.source in ("package", "onnx_package"):
        folder = _package_folder(cfg)
    elif cfg.source in ("local", "onnx_local"):
        folder = Path(cfg.path).expanduser().resolve()  # type: ignore[arg-type]
    elif cfg.source == "hub":
        folder = _hub_folder(cfg)
    else:  # pragma: no cover - config validation refuses it first
        raise ValueError(cfg.source)
    if not folder.is_dir():
        raise ModelUnavailable(f"model {cfg.name!r}: folder {folder} does not exist")

    weights = folder / cfg.weights_file
    if not weights.is_file():
        raise ModelUnavailable(f"model {cfg.name!r}: weights file {weights} is missing")
    digest = sha256_file(weights)
    if cfg.sha256 is not None and digest != cfg.sha256.lower():
        raise ChecksumMismatch(
            f"model {cfg.name!r}: sha256 of {weights} is {digest}, but model.sha256 pins "
            f"{cfg.sha256}; refusing to use weights that are not the pinned ones"
        )
    return ResolvedModel(
        name=cfg.name,
        folder=folder,
        weights=weights,
        weights_sha256=digest,
        verified=cfg.sha256 is not None,
        source=cfg.source,
    )
