"""The texts a job embeds (``conf/workload/``; docs/workloads.md): what a provider really serves.

- ``sentences``: the STS sentences with the model's query prefix, as every earlier figure;
- ``queries``: the same short texts, each with the model's query prefix;
- ``passages``: real prose cut to target token lengths, each with the model's document prefix;
- ``lengths``: the same prose cut to one fixed length per target (the latency-against-length curve);
- ``mixed``: parts in the configured shares of the texts.

The prose is Python's own documentation as the interpreter ships it (``pydoc_data.topics``, PSF
licence): offline, real sentences, never repeated words.  A target length counts the tokens the
model is fed (prefix and special tokens included), exactly as :meth:`pipeline.embedder.Embedder.token_counts`
counts them; every text is checked against it.  Texts carry their prefix: the embedder that runs a
workload other than ``sentences`` adds none of its own.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.core.errors import Exit, PipelineError

PROSE_SOURCE = "pydoc_data.topics (the Python documentation shipped with the interpreter; PSF licence)"


class WorkloadRefused(PipelineError, ValueError):
    """The workload cannot run on this model or provider (a length beyond its positions, a fixed shape)."""

    exit = Exit.SKIPPED


@dataclass
class Workload:
    """What a job embeds: ``texts`` (prefix included where ``prefixed``), per part."""

    name: str
    parts: dict[str, list[str]]  # part -> its texts
    prefixed: bool  # the texts carry their prefix (the embedder must add none)
    targets: dict[str, list[int]] = field(default_factory=dict)  # part -> the token length of each text (passages, lengths)

    @property
    def texts(self) -> list[str]:
        return [t for part in self.parts.values() for t in part]

    def longest(self) -> int | None:
        lengths = [n for ns in self.targets.values() for n in ns]
        return max(lengths) if lengths else None

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.parts, sort_keys=True).encode()).hexdigest()[:16]

    def tags(self) -> dict[str, str]:
        t = {
            "workload": self.name,
            "workload.sha256": self.digest(),
            "workload.parts": json.dumps({k: len(v) for k, v in self.parts.items()}),
        }
        if any(p in self.parts for p in ("passages", "lengths")):
            t["workload.source"] = PROSE_SOURCE
        return t


def target_lengths(wcfg, limit: int | None) -> list[int]:
    """The configured token lengths, and the model's limit where asked; refused beyond the limit."""
    lengths = sorted(set(int(n) for n in wcfg.lengths))
    if wcfg.model_limit:
        if limit is None:
            raise WorkloadRefused(f"workload {wcfg.name!r} asks for the model's limit, but its config.json gives no positions")
        lengths = sorted(set(lengths) | {limit})
    too_long = [n for n in lengths if limit is not None and n > limit]
    if too_long:
        raise WorkloadRefused(
            f"workload {wcfg.name!r} asks for {too_long} tokens, but the model has {limit} positions "
            f"(max_position_embeddings in its config.json): texts that long cannot be embedded whole (refused, not truncated)"
        )
    return lengths


def check_limits(wcfg, limit: int | None, provider) -> None:
    """Before any work: the workload's lengths fit the model's positions and the provider's
    ``max_sequence``; raises :class:`WorkloadRefused` with the reason."""
    lengths = target_lengths(wcfg, limit) if _long_part(wcfg) else []
    cap = int(getattr(provider, "max_sequence", 0) or 0)
    if cap and lengths and max(lengths) > cap:
        raise WorkloadRefused(
            f"provider {provider.name} takes at most {cap} tokens per text (provider.max_sequence); "
            f"workload {wcfg.name!r} needs {max(lengths)}"
        )


def check_shapes(onnx_path: Path, workload: Workload, batch_size: int) -> None:
    """A graph with a fixed batch or sequence axis cannot take the workload's shapes: refused with why."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    for inp in model.graph.input:
        if inp.name != "input_ids":
            continue
        dims = [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]
        if len(dims) == 2 and dims[0] is not None and dims[0] != batch_size and batch_size > 1:
            raise WorkloadRefused(f"{onnx_path.name}: input_ids has a fixed batch axis of {dims[0]}, the job asks for {batch_size}")
        longest = workload.longest()
        if len(dims) == 2 and dims[1] is not None and longest is not None and longest > dims[1]:
            raise WorkloadRefused(f"{onnx_path.name}: input_ids has a fixed sequence axis of {dims[1]}; the workload needs {longest}")


def _long_part(wcfg) -> bool:
    return wcfg.name in ("passages", "lengths") or (wcfg.name == "mixed" and any(p in wcfg.weights for p in ("passages", "lengths")))


def prose_paragraphs() -> list[str]:
    """The prose paragraphs of the Python documentation the interpreter ships (no code, no tables)."""
    import pydoc_data.topics as topics

    out = []
    for key in sorted(topics.topics):
        for para in re.split(r"\n\s*\n", topics.topics[key]):
            lines = para.split("\n")
            if any(line.startswith(" ") for line in lines):  # code, lists, tables
                continue
            text = " ".join(line.strip() for line in lines)
            if len(text.split()) < 25 or not text[0].isupper() or "::" in text or "====" in text or "----" in text:
                continue
            if text.count("*") > 4:
                continue
            out.append(re.sub(r"\s+", " ", text))
    return out


def cut(tokenizer, text: str, prefix: str, target: int) -> str | None:
    """``text`` cut so that ``prefix + text`` is ``target`` tokens as the model is fed it, or None."""
    enc = tokenizer.encode(prefix + text)
    if len(enc.ids) < target:
        return None
    specials = len(tokenizer.encode("").ids)
    content = [i for i, s in enumerate(enc.special_tokens_mask) if not s]
    keep = target - specials
    if keep <= 0 or keep > len(content):
        return None
    end = enc.offsets[content[keep - 1]][1]
    out = (prefix + text)[:end][len(prefix) :].rstrip()
    for trim in range(4):  # a word cut in two may tokenize into one token more: drop its last characters
        if len(tokenizer.encode(prefix + out).ids) == target:
            return out
        if len(tokenizer.encode(prefix + out).ids) < target:
            return None
        out = out[:-1].rstrip()
    return None


def prose_texts(tokenizer, prefix: str, target: int, count: int, seed: int = 0) -> list[str]:
    """``count`` distinct passages of exactly ``target`` tokens (``prefix`` + text), from consecutive
    paragraphs starting at seeded places; raises :class:`WorkloadRefused` when the prose runs out."""
    paras = prose_paragraphs()
    starts = list(range(len(paras)))
    random.Random(f"{seed}-{target}").shuffle(starts)
    out: list[str] = []
    seen: set[str] = set()
    for s in starts:
        text, i = paras[s], s + 1
        while len(tokenizer.encode(prefix + text).ids) < target and i < s + len(paras):
            text += " " + paras[i % len(paras)]
            i += 1
        got = cut(tokenizer, text, prefix, target)
        if got is not None and got not in seen:
            seen.add(got)
            out.append(prefix + got)
        if len(out) == count:
            return out
    raise WorkloadRefused(f"only {len(out)} distinct passages of {target} tokens could be cut from {PROSE_SOURCE}, not {count}")


def build(wcfg, model, tokenizer_file: Path, sentences: list[str], limit: int | None) -> Workload:
    """The workload of ``wcfg`` for ``model`` (its prefixes), with its tokenizer and the model's
    positions ``limit``; ``sentences``: the short texts (STS)."""
    if wcfg.name == "sentences":
        return Workload("sentences", {"sentences": list(sentences)}, prefixed=False)
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_file))
    tok.no_truncation()
    tok.no_padding()
    lengths = target_lengths(wcfg, limit) if _long_part(wcfg) else []

    def part(name: str) -> tuple[list[str], list[int]]:
        if name in ("sentences", "queries"):
            return [model.query_prefix + s for s in sentences], []
        texts, targets = [], []
        for n in lengths:
            got = prose_texts(tok, model.document_prefix, n, wcfg.texts_per_length)
            texts += got
            targets += [n] * len(got)
        return texts, targets

    if wcfg.name != "mixed":
        texts, targets = part(wcfg.name)
        return Workload(wcfg.name, {wcfg.name: texts}, prefixed=True, targets={wcfg.name: targets} if targets else {})
    return _mixed(wcfg, {name: part(name) for name in wcfg.weights})


def _mixed(wcfg, pools: dict[str, tuple[list[str], list[int]]]) -> Workload:
    """Each part's share of the texts as weighted: as many texts as the scarcest part allows."""
    total_w = sum(wcfg.weights.values())
    shares = {k: w / total_w for k, w in wcfg.weights.items()}
    n = min(int(len(pools[k][0]) / shares[k]) for k in shares)
    rng = random.Random(0)  # the same texts every time
    parts, targets = {}, {}
    for k, share in shares.items():
        texts, lens = pools[k]
        idx = sorted(rng.sample(range(len(texts)), max(1, round(n * share))))
        parts[k] = [texts[i] for i in idx]
        if lens:
            targets[k] = [lens[i] for i in idx]
    return Workload("mixed", parts, prefixed=True, targets=targets)
