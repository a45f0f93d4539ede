"""The evaluation data: the STS Benchmark splits shipped in ``pipeline/data/stsb`` (with their licence),
checked against their pinned digests, or a user's own data set in the same format; the hub as a
fallback where there is a network.  Quality scores on it; static int8 calibrates on its dev split."""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.config import QualityConfig
from pipeline.core.errors import Exit, PipelineError


class DataError(PipelineError, ValueError):
    """A missing or malformed data-set file; the message names the file (and line)."""

    exit = Exit.CONFIG


@dataclass(frozen=True)
class StsData:
    sentences1: list[str]
    sentences2: list[str]
    scores: np.ndarray
    source: str  # the file (or hub data set) it came from
    digest: str  # sha256 of the content, for cache keys
    label: str = "own"  # stsb-<split> (the pinned split, verified) or own (a user's data set)

    @property
    def unique_sentences(self) -> list[str]:
        return list(dict.fromkeys(self.sentences1 + self.sentences2))


def _read_csv(path: Path) -> StsData:
    if not path.is_file():
        raise DataError(f"STS Benchmark file {path} does not exist (set quality.data_dir or PIPELINE_DATA_DIR)")
    raw = path.read_bytes()
    s1, s2, scores = [], [], []
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 ({exc})") from None
    for lineno, row in enumerate(csv.reader(text.splitlines()), start=1):
        if not row:
            continue
        if len(row) != 3:
            raise DataError(f"{path}:{lineno}: expected 3 columns (sentence1,sentence2,score), got {len(row)}")
        try:
            score = float(row[2])
        except ValueError:
            raise DataError(f"{path}:{lineno}: score {row[2]!r} is not a number") from None
        if not 0.0 <= score <= 5.0:
            raise DataError(f"{path}:{lineno}: score {score} is outside 0..5")
        s1.append(row[0])
        s2.append(row[1])
        scores.append(score)
    if not scores:
        raise DataError(f"{path}: no rows")
    return StsData(s1, s2, np.asarray(scores, dtype=np.float64), str(path), hashlib.sha256(raw).hexdigest())


def _read_hub(dataset: str, split: str) -> StsData:  # pragma: no cover - needs a network
    try:
        from datasets import load_dataset
    except ImportError:
        raise DataError(
            f"STS Benchmark from the hub ({dataset}) needs the `datasets` package: pip install -e '.[hub]' "
            "(and a network), or point quality.data_dir / PIPELINE_DATA_DIR at a folder holding stsb/stsb-en-<split>.csv"
        ) from None
    try:
        ds = load_dataset(dataset, split="validation" if split == "dev" else split)
    except Exception as exc:
        raise DataError(f"STS Benchmark from the hub ({dataset}) is unavailable: {exc}") from None
    s1, s2, sc = list(ds["sentence1"]), list(ds["sentence2"]), np.asarray(ds["score"], dtype=np.float64)
    digest = hashlib.sha256(json.dumps([s1, s2, sc.tolist()]).encode()).hexdigest()
    return StsData(s1, s2, sc, f"hub:{dataset}:{split}", digest)


# The STS Benchmark splits as published (stsb-en-<split>.csv): pair count and the file's sha256.
# A file that differs (truncated, edited, another data set) is refused under dataset=stsb.
PINNED = {
    "test": (1379, "11523b625219e94e9ca05d2816b5f02cac1614c5894fe657376fa0806378d053"),
    "dev": (1500, "d29586e96558c4eb52cf5ea5d14e9c24d3bf0e44f111b017caba43a5adc33226"),
}


def _check_pinned(data: StsData, cfg: QualityConfig, split: str) -> StsData:
    if cfg.dataset == "own":
        return StsData(data.sentences1, data.sentences2, data.scores, data.source, data.digest, "own")
    pairs, digest = PINNED[split]
    n = len(data.scores)
    hub = data.source.startswith("hub:")
    if n != pairs or (not hub and data.digest != digest):
        raise DataError(
            f"{data.source}: not the STS Benchmark {split} split ({n} pairs, sha256 {data.digest[:12]}...; expected "
            f"{pairs} pairs, sha256 {digest[:12]}...): a damaged or different file. To score your own data set, "
            "set quality.dataset=own"
        )
    return StsData(data.sentences1, data.sentences2, data.scores, data.source, data.digest, f"stsb-{split}")


def load_sts(cfg: QualityConfig, split: str | None = None) -> StsData:
    """The split's pairs, checked against :data:`PINNED` (``quality.dataset=stsb``) or labelled
    as the user's own data set (``quality.dataset=own``)."""
    split = split or cfg.split
    path = Path(cfg.data_dir) / "stsb" / f"stsb-en-{split}.csv"
    if cfg.source == "local" or (cfg.source == "auto" and path.is_file()):
        return _check_pinned(_read_csv(path), cfg, split)
    if cfg.source == "auto":
        try:
            return _check_pinned(_read_hub(cfg.hub_dataset, split), cfg, split)
        except DataError as exc:
            raise DataError(f"{path} does not exist and {exc}") from None
    return _check_pinned(_read_hub(cfg.hub_dataset, split), cfg, split)
