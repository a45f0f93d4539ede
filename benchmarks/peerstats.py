"""The arithmetic of benchmarks/peers_best.py, kept apart so that it is tested on hand-made inputs
(tests/test_benchmarks_peers.py): the visiting order of a round, the batches every contender is
given, the padded-token count of a batching, the best contender of a class and the ratios.

No timing happens here and nothing is imported from a peer library.
"""

from __future__ import annotations

import random
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

CLASSES = ("fp32", "int8", "bf16")
RESULTS = Path(__file__).resolve().parent / "results"


def cpu_slug(cpu_model: str) -> str:
    """A folder name for a CPU model: ``AMD EPYC 9R14 96-Core Processor`` -> ``amd-epyc-9r14-96-core-processor``.
    Every benchmark's results go under it (``benchmarks/results/<slug>/``)."""
    return re.sub(r"[^a-z0-9]+", "-", cpu_model.lower())[:60].strip("-") or "unknown-cpu"


def results_path(cpu_model: str, name: str) -> Path:
    """Where a benchmark's full result is committed: ``benchmarks/results/<cpu>/<name>``."""
    return RESULTS / cpu_slug(cpu_model) / name


# -- the order of a round ------------------------------------------------------------------------
def round_order(names: Sequence[str], r: int, rounds: int, seed: int = 0) -> list[str]:
    """The order in which round ``r`` (0-based) of ``rounds`` visits the contenders.

    The base order is a seeded shuffle (so ours, listed first by the caller, do not sit together at
    a round's edge), and each round rotates it by ``r * n / rounds`` places: over the rounds every
    contender's positions are spread evenly across the round, and when ``rounds`` is ``n`` each
    contender is at every position exactly once.
    """
    base = list(names)
    random.Random(seed).shuffle(base)
    n = len(base)
    if n == 0:
        return []
    shift = (r * n) // max(rounds, 1) % n
    return base[shift:] + base[:shift]


# -- the batches ---------------------------------------------------------------------------------
def input_order_batches(n: int, batch_size: int) -> list[list[int]]:
    """Batches as a plain loop cuts them: input order, ``batch_size`` at a time."""
    return [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)]


def length_sorted_batches(lengths: Sequence[int], batch_size: int, call_cost: int) -> list[list[int]]:
    """The batches our embedder would make of this corpus (``pipeline.embedder.grouping.length_groups``):
    indices sorted by token count, cut where padding plus per-call cost is least. Given to every
    contender in the equal-batching mode, so that all of them compute the same padded shapes."""
    from pipeline.embedder.grouping import length_groups

    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    groups = length_groups([lengths[i] for i in order], batch_size, call_cost)
    return [order[a:b] for a, b in groups]


def padded_tokens(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> int:
    """Tokens a padded batching computes: each batch is as wide as its longest text."""
    return sum(len(b) * max(lengths[i] for i in b) for b in batches if len(b))


# -- best contenders and ratios ------------------------------------------------------------------
@dataclass
class Result:
    """What the ratios need of a contender: per-round single-call p50s and corpus seconds."""

    name: str
    precision: str
    ours: bool
    sts: float
    single_p50: list[float] = field(default_factory=list)
    corpus_s: list[float] = field(default_factory=list)  # per round; NaN where not timed
    min_cosine: float = float("nan")  # against our fp32 on the timed texts (NaN: not known)


def timed(values: Sequence[float]) -> list[float]:
    return [v for v in values if v == v]


# a full-precision path computes the same function as our fp32: its vectors of the timed texts must
# match (bf16 rounds a little).  Below this, it embedded other inputs: fastembed, for one, truncates at
# the tokenizer_config's max_length (128 for all-MiniLM-L6-v2) and so timed less work on 256-token
# passages (min cosine 0.67).  int8 paths are judged by their STS loss alone.
COSINE_FLOORS = {"fp32": 0.999, "bf16": 0.99}


def qualifies(c: Result, ref_sts: float, max_sts_loss: float) -> bool:
    """Within ``max_sts_loss`` STS points of the fp32 reference (a NaN STS never qualifies) and, for a
    full-precision class, at or above its cosine floor against our fp32 on the timed texts."""
    floor = COSINE_FLOORS.get(c.precision)
    if floor is not None and c.min_cosine == c.min_cosine and c.min_cosine < floor:
        return False
    return c.sts == c.sts and (ref_sts - c.sts) <= max_sts_loss


def best_single(cands: Sequence[Result]) -> Result | None:
    """The lowest median single-call p50; ties go to the earlier name (stable, not by luck)."""
    ok = [c for c in cands if c.single_p50]
    return min(sorted(ok, key=lambda c: c.name), key=lambda c: statistics.median(c.single_p50)) if ok else None


def best_corpus(cands: Sequence[Result]) -> Result | None:
    """The shortest median corpus time over the rounds it was timed."""
    ok = [c for c in cands if timed(c.corpus_s)]
    return min(sorted(ok, key=lambda c: c.name), key=lambda c: statistics.median(timed(c.corpus_s))) if ok else None


def single_ratio(ours: Result, peer: Result) -> float:
    """Median over rounds of ours' p50 / the peer's p50 (below 1: ours faster)."""
    return statistics.median([x / y for x, y in zip(ours.single_p50, peer.single_p50)])


def corpus_ratio(ours: Result, peer: Result) -> float:
    """Median over the rounds both were timed of the peer's time / ours (a throughput ratio: above
    1, ours faster); the ratio of the medians where no round timed both."""
    pairs = [(x, y) for x, y in zip(ours.corpus_s, peer.corpus_s) if x == x and y == y]
    if pairs:
        return statistics.median([y / x for x, y in pairs])
    return statistics.median(timed(peer.corpus_s)) / statistics.median(timed(ours.corpus_s))


def hardest_single(ours: Result, peers: Sequence[Result]) -> Result | None:
    """The peer whose rounds do best against ``ours``: the highest ``single_ratio`` (ties: the
    earlier name).  Picking the peer by its own median instead lets noise choose a peer whose
    rounds happen to pair well for ours: pooled over three runs, Optimum's qint8 file had the lowest
    median p50 while the int8 O2 file, a hair behind, beat ours by more in the paired rounds."""
    ok = [p for p in peers if p.single_p50]
    return max(sorted(ok, key=lambda p: p.name), key=lambda p: single_ratio(ours, p)) if ok and ours.single_p50 else None


def hardest_corpus(ours: Result, peers: Sequence[Result]) -> Result | None:
    """The peer whose corpus rounds do best against ``ours``: the lowest ``corpus_ratio``."""
    ok = [p for p in peers if timed(p.corpus_s)]
    return min(sorted(ok, key=lambda p: p.name), key=lambda p: corpus_ratio(ours, p)) if ok and timed(ours.corpus_s) else None


def class_ratios(results: Sequence[Result], classes: Sequence[str], ref_sts: float, max_sts_loss: float) -> dict:
    """Our best (by its own median) against the best peer among the qualifying contenders of
    ``classes``: the peer that does best against it round by round (``hardest_single``/``_corpus``)."""
    ok = [c for c in results if c.precision in classes and qualifies(c, ref_sts, max_sts_loss)]
    our, peer = [c for c in ok if c.ours], [c for c in ok if not c.ours]
    o1, o2 = best_single(our), best_corpus(our)
    p1 = hardest_single(o1, peer) if o1 else None
    p2 = hardest_corpus(o2, peer) if o2 else None
    out = {
        "ours_single": o1.name if o1 else None,
        "peer_single": p1.name if p1 else None,
        "ours_corpus": o2.name if o2 else None,
        "peer_corpus": p2.name if p2 else None,
        "single_p50_ratio": single_ratio(o1, p1) if o1 and p1 else None,
        "corpus_throughput_ratio": corpus_ratio(o2, p2) if o2 and p2 else None,
    }
    # the same from each one's medians (less robust to drift between rounds; shown beside)
    out["single_p50_ratio_of_medians"] = statistics.median(o1.single_p50) / statistics.median(p1.single_p50) if o1 and p1 else None
    out["corpus_throughput_ratio_of_medians"] = (
        statistics.median(timed(p2.corpus_s)) / statistics.median(timed(o2.corpus_s)) if o2 and p2 else None
    )
    return out


def headline(results: Sequence[Result], ref_sts: float, max_sts_loss: float, prefix: str = "") -> dict:
    """The headline keys: overall and per precision class."""
    overall = class_ratios(results, CLASSES, ref_sts, max_sts_loss)
    out = {
        f"{prefix}best_single_p50_ratio_vs_best_peer": overall["single_p50_ratio"],
        f"{prefix}best_corpus_throughput_ratio_vs_best_peer": overall["corpus_throughput_ratio"],
        f"{prefix}ours_single": overall["ours_single"],
        f"{prefix}best_single_peer": overall["peer_single"],
        f"{prefix}ours_corpus": overall["ours_corpus"],
        f"{prefix}best_corpus_peer": overall["peer_corpus"],
    }
    for k in CLASSES:
        r = class_ratios(results, (k,), ref_sts, max_sts_loss)
        out[f"{prefix}{k}_single_p50_ratio_vs_best_peer"] = r["single_p50_ratio"]
        out[f"{prefix}{k}_corpus_throughput_ratio_vs_best_peer"] = r["corpus_throughput_ratio"]
    return out
