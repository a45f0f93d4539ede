"""Our embedder against the Python embedding libraries a user could pick instead.

    python benchmarks/peers.py [--threads 2] [--rounds 5] [--skip-torch]

In one process, on the same model files (the cached Optimum export of the configured
model), the same thread count and the same sentences (the STS Benchmark test sentences),
it measures:

- single: p50 latency of embedding one sentence per call;
- corpus: throughput over all test sentences in batches of 32;

for this project's ``Embedder`` (fp32 and int8), fastembed (pointed at the local files),
sentence-transformers with ``backend="onnx"`` and with torch, and Optimum's
``ORTModelForFeatureExtraction``.  Contenders are interleaved round by round (the order
rotates) so machine drift hits them alike; medians over rounds are reported.  Every
contender's embeddings are checked against ours (cosine >= 0.9999).

The last line printed is one JSON object with the headline ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


@dataclass
class Contender:
    name: str
    embed: Callable[[list[str], int], np.ndarray]  # (texts, batch_size) -> unit vectors
    is_ours: bool = False
    single_ms: list[float] = field(default_factory=list)
    corpus_s: list[float] = field(default_factory=list)
    min_cosine: float = float("nan")


def _unit(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _session_options(threads: int):
    from pipeline.embedder.embed import session_options

    return session_options(threads=threads)


def load_model(variant: str):
    """Compose the default config and return (cfg, resolved model, artifact) for a variant."""
    from pipeline.model import export, sources
    from pipeline.config import to_config
    from pipeline.study.stages import compose_config

    cfg = to_config(compose_config([f"variant={variant}"]))
    resolved = sources.resolve(cfg.model)
    art = export.export(resolved, cfg.model, cfg.variant, cfg.cache_dir)
    return cfg, resolved, art


def ours(art, cfg, threads: int, name: str) -> Contender:
    from pipeline.embedder.embed import Embedder

    emb = Embedder(art.folder, onnx_file=art.onnx_path.name, pooling="mean", threads=threads, max_length=cfg.model.max_length)
    return Contender(name, lambda texts, bs: emb.embed(texts, batch_size=bs), is_ours=True)


def fastembed_contender(art, threads: int, dim: int) -> Contender:
    from fastembed import TextEmbedding
    from fastembed.common.model_description import ModelSource, PoolingType

    name = "local/all-MiniLM-L6-v2-peers"
    try:
        TextEmbedding.add_custom_model(
            model=name, pooling=PoolingType.MEAN, normalization=True,
            sources=ModelSource(hf=name), dim=dim, model_file=art.onnx_path.name,
        )
    except ValueError:
        pass  # already registered in this process
    model = TextEmbedding(name, specific_model_path=str(art.folder), threads=threads, local_files_only=True)
    return Contender("fastembed", lambda texts, bs: _unit(np.stack(list(model.embed(texts, batch_size=bs)))))


def st_onnx_contender(resolved, art, threads: int, workdir: Path) -> Contender:
    from sentence_transformers import SentenceTransformer

    # sentence-transformers looks for onnx/model.onnx inside the model folder: give it a
    # copy of the checkpoint folder whose onnx/ holds the very same exported graph
    folder = workdir / "st-onnx"
    shutil.copytree(resolved.folder, folder, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    (folder / "onnx").mkdir(exist_ok=True)
    shutil.copy2(art.onnx_path, folder / "onnx" / "model.onnx")
    model = SentenceTransformer(
        str(folder), backend="onnx", device="cpu", local_files_only=True,
        model_kwargs={"file_name": "onnx/model.onnx", "provider": "CPUExecutionProvider", "session_options": _session_options(threads)},
    )
    return Contender("st-onnx", lambda texts, bs: _unit(model.encode(texts, batch_size=bs, normalize_embeddings=True)))


def st_torch_contender(resolved, threads: int) -> Contender:
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    model = SentenceTransformer(str(resolved.folder), device="cpu", local_files_only=True)

    def embed(texts, bs):
        with torch.inference_mode():
            return _unit(model.encode(texts, batch_size=bs, normalize_embeddings=True))

    return Contender("st-torch", embed)


def optimum_contender(art, threads: int, max_length: int) -> Contender:
    from optimum.onnxruntime import ORTModelForFeatureExtraction
    from transformers import AutoTokenizer

    model = ORTModelForFeatureExtraction.from_pretrained(
        str(art.folder), file_name=art.onnx_path.name, provider="CPUExecutionProvider", session_options=_session_options(threads)
    )
    tok = AutoTokenizer.from_pretrained(str(art.folder))

    def embed(texts, bs):
        out = []
        for i in range(0, len(texts), bs):
            enc = tok(texts[i : i + bs], padding=True, truncation=True, max_length=max_length, return_tensors="np")
            hidden = model(**enc).last_hidden_state
            hidden = np.asarray(hidden)
            m = enc["attention_mask"][..., None].astype(np.float32)
            out.append((hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9))
        return _unit(np.concatenate(out))

    return Contender("optimum-ort", embed)


def timer_overhead_ns() -> float:
    from pipeline.measure.bench import timer_overhead_ns as f

    return f()


# -- the measurement ----------------------------------------------------------------------
def run(args) -> dict:
    from pipeline.measure import roofline
    from pipeline.data.sts import load_sts
    from pipeline.config import QualityConfig

    cfg, resolved, fp32 = load_model("fp32")
    config = json.loads((fp32.folder / "config.json").read_text())
    data = load_sts(QualityConfig(split="test"))
    corpus = data.unique_sentences
    rng = np.random.default_rng(0)
    singles = [corpus[i] for i in rng.choice(len(corpus), size=args.singles, replace=False)]
    threads = args.threads

    workdir = Path(tempfile.mkdtemp(prefix="peers-"))
    contenders = [ours(fp32, cfg, threads, "ours-fp32")]
    # our fp32 path on graph-optimized exports (ORTOptimizer O2: fused attention and GELU;
    # O2_cpu: the same without the SkipLayerNorm fusion that is slow on the CPU provider; still
    # fp32 weights and activations) - what the pipeline ships when one of them wins
    for variant in [v for v in args.fp32_optimized_variants.split(",") if v]:
        try:
            _, _, opt_art = load_model(variant)
            contenders.append(ours(opt_art, cfg, threads, f"ours-fp32-{variant}"))
        except Exception as exc:
            print(f"optimized fp32 variant {variant} unavailable: {type(exc).__name__}: {exc}", file=sys.stderr)
    int8 = None
    try:
        _, _, int8_art = load_model(args.int8_variant)
        int8 = ours(int8_art, cfg, threads, "ours-int8")
        contenders.append(int8)
    except Exception as exc:  # reported, not hidden
        print(f"int8 variant unavailable: {type(exc).__name__}: {exc}", file=sys.stderr)
    builders = [
        ("fastembed", lambda: fastembed_contender(fp32, threads, config["hidden_size"])),
        ("st-onnx", lambda: st_onnx_contender(resolved, fp32, threads, workdir)),
        ("optimum-ort", lambda: optimum_contender(fp32, threads, cfg.model.max_length)),
    ]
    if not args.skip_torch:
        builders.append(("st-torch", lambda: st_torch_contender(resolved, threads)))
    skipped = {}
    for name, build in builders:
        try:
            contenders.append(build())
        except Exception as exc:
            skipped[name] = f"{type(exc).__name__}: {exc}"
            print(f"{name} skipped: {skipped[name]}", file=sys.stderr)

    # same embeddings? (fp32 peers vs ours-fp32; int8 is compared on quality, not here)
    check = corpus[:64]
    reference = contenders[0].embed(check, 32)
    for c in contenders:
        c.min_cosine = float((c.embed(check, 32) * reference).sum(axis=1).min())

    pc = time.perf_counter_ns
    for r in range(args.rounds):
        order = contenders[r % len(contenders):] + contenders[: r % len(contenders)]
        for c in order:
            for t in singles[:5]:  # warm this contender's caches again after the others ran
                c.embed([t], 1)
            samples = []
            for t in singles:
                t0 = pc()
                c.embed([t], 1)
                samples.append((pc() - t0) / 1e6)
            c.single_ms.append(statistics.median(samples))
        for c in order:
            if c.name == "st-torch" and r >= args.torch_corpus_rounds:
                continue
            t0 = time.perf_counter()
            c.embed(corpus, 32)
            c.corpus_s.append(time.perf_counter() - t0)
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)

    rows = []
    for c in contenders:
        rows.append({
            "contender": c.name,
            "single_p50_ms": statistics.median(c.single_ms),
            "corpus_sentences_per_s": len(corpus) / statistics.median(c.corpus_s),
            "min_cosine_vs_ours": c.min_cosine,
        })
    by = {row["contender"]: row for row in rows}
    ours_fp32 = [row for row in rows if row["contender"].startswith("ours-fp32")]
    best_ours_single = min(ours_fp32, key=lambda row: row["single_p50_ms"])
    best_ours_corpus = max(ours_fp32, key=lambda row: row["corpus_sentences_per_s"])
    peers = [row for row in rows if not row["contender"].startswith("ours")]
    best_single = min(peers, key=lambda row: row["single_p50_ms"]) if peers else None
    best_corpus = max(peers, key=lambda row: row["corpus_sentences_per_s"]) if peers else None

    # roofline: FLOPs of our best fp32 corpus run from the model's config and the real token counts
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(fp32.folder / "tokenizer.json"))
    tok.no_padding()  # the exported tokenizer.json may pad to a fixed length
    tok.enable_truncation(cfg.model.max_length)
    lengths = [len(e.ids) for e in tok.encode_batch(corpus)]
    flops = roofline.model_flops(config, lengths)
    best_fp32 = next(c for c in contenders if c.name == best_ours_corpus["contender"])
    achieved = flops / statistics.median(best_fp32.corpus_s)
    peak = roofline._measure_peak(threads)  # measured now, beside the contenders, not cached
    overhead = timer_overhead_ns()
    smallest_ms = min(min(c.single_ms) for c in contenders)

    summary = {
        "threads": threads,
        "rounds": args.rounds,
        "sentences_single": len(singles),
        "sentences_corpus": len(corpus),
        "best_single_peer": best_single["contender"] if best_single else None,
        "best_corpus_peer": best_corpus["contender"] if best_corpus else None,
        "ours_single": best_ours_single["contender"],
        "ours_corpus": best_ours_corpus["contender"],
        "single_p50_ratio_vs_best_peer": best_ours_single["single_p50_ms"] / best_single["single_p50_ms"] if best_single else None,
        "corpus_throughput_ratio_vs_best_peer": best_ours_corpus["corpus_sentences_per_s"] / best_corpus["corpus_sentences_per_s"] if best_corpus else None,
        # the same comparison with our path on the very same file as the peers (plain export)
        "single_p50_ratio_same_file": by["ours-fp32"]["single_p50_ms"] / best_single["single_p50_ms"] if best_single else None,
        "corpus_throughput_ratio_same_file": by["ours-fp32"]["corpus_sentences_per_s"] / best_corpus["corpus_sentences_per_s"] if best_corpus else None,
        "int8_speedup_vs_fp32": by["ours-int8"]["corpus_sentences_per_s"] / by["ours-fp32"]["corpus_sentences_per_s"] if int8 else None,
        "int8_single_speedup_vs_fp32": by["ours-fp32"]["single_p50_ms"] / by["ours-int8"]["single_p50_ms"] if int8 else None,
        # against our best fp32 graph rather than the plain export
        "int8_speedup_vs_best_fp32": by["ours-int8"]["corpus_sentences_per_s"] / best_ours_corpus["corpus_sentences_per_s"] if int8 else None,
        "roofline_fraction": achieved / (peak["peak_gflops"] * 1e9),
        "roofline_contender": best_fp32.name,
        "achieved_gflops": achieved / 1e9,
        **peak,
        "timer_overhead_ns": overhead,
        "timer_overhead_fraction_of_smallest": overhead / (smallest_ms * 1e6),
        "parity_min_cosine": min(row["min_cosine_vs_ours"] for row in rows if row["contender"] != "ours-int8"),
        "skipped": skipped,
        "table": rows,
    }
    shutil.rmtree(workdir, ignore_errors=True)
    return summary


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--singles", type=int, default=200, help="single-sentence calls per contender per round")
    p.add_argument("--torch-corpus-rounds", type=int, default=2, help="corpus rounds for the (slow) torch contender")
    p.add_argument("--int8-variant", default="int8_dynamic")
    p.add_argument("--fp32-optimized-variants", default="O2,O2_cpu", help="comma-separated fp32 variants of ours to add")
    p.add_argument("--skip-torch", action="store_true")
    p.add_argument("--out", default="reports/peers.json")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    summary = run(args)
    print(f"\n{'contender':<14} {'single p50 ms':>14} {'corpus sent/s':>14} {'min cos vs ours':>16}")
    for row in summary["table"]:
        print(f"{row['contender']:<14} {row['single_p50_ms']:>14.3f} {row['corpus_sentences_per_s']:>14.1f} {row['min_cosine_vs_ours']:>16.6f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2))
    headline = {k: v for k, v in summary.items() if k != "table"}
    print(json.dumps(headline))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
