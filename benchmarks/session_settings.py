"""Which ONNX Runtime session settings make our embedder faster here: a probe, interleaved in one process.

    python benchmarks/session_settings.py             # ~2 min on 2 cores; last line: JSON

Our ``Embedder`` is built once per setting (the same export, pooling and texts), and the settings
are timed in turn, round after round, the order rotated each round.  Two workloads: single calls
of the int8 variant (the p50 of ``--single`` STS sentences, one at a time: the single-call
headline of peers_best.py) and the fp32 O2_cpu corpus (all STS-test sentences at batch 32:
sentences/s).  Each setting's figure is the median over rounds, and its ratio to the default (2
intra-op threads) is the median of the per-round ratios, so a slow round moves both sides.  The
run holds the machine lock and records its conditions.  A lead, not a product figure: a setting
that wins here is a change to test in peers_best.py.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import harness

SETTINGS = {  # name -> (intra-op threads, session config entries)
    "t2": (2, {}),
    "t1": (1, {}),
    "t2-dynamic_block_base4": (2, {"session.dynamic_block_base": "4"}),
    "t2-no-spinning": (2, {"session.intra_op.allow_spinning": "0"}),
    "t2-force-spinning-stop": (2, {"session.force_spinning_stop": "1"}),  # pipeline serve's default
}
BASE = "t2"


def rotation(names: list[str], r: int) -> list[str]:
    """Round ``r``'s order: the list rotated by ``r``, so each setting leads one round in turn."""
    k = r % len(names)
    return names[k:] + names[:k]


def paired(per_round: dict[str, list[float]], base: str = BASE) -> dict[str, dict]:
    """Each setting's median over rounds and the median of its per-round ratios to ``base``."""
    out = {}
    for name, xs in per_round.items():
        pairs = [x / b for x, b in zip(xs, per_round[base]) if b]
        out[name] = {"median": statistics.median(xs), "ratio_to_base": statistics.median(pairs) if pairs else None, "rounds": xs}
    return out


def embedder(folder: Path, onnx_file: str, threads: int, config: dict):
    """Our embed call on ``folder``/``onnx_file`` with these settings: _peer_worker.py's builder of ours
    (its session config entries)."""
    from _peer_worker import BUILDERS

    spec = {"root": str(harness.ROOT), "folder": str(folder), "onnx_file": onnx_file, "threads": threads, "max_length": 256}
    fn, _ = BUILDERS["ours"]({**spec, "session_config": config})
    return fn


def single_p50_ms(embed, sents: list[str], n: int) -> float:
    """The median of ``n`` single-sentence calls, after 10 unmeasured ones."""
    for t in sents[:10]:
        embed([t], 1)
    ms = []
    for t in sents[:n]:
        s0 = time.perf_counter_ns()
        embed([t], 1)
        ms.append((time.perf_counter_ns() - s0) / 1e6)
    return statistics.median(ms)


def corpus_per_s(embed, sents: list[str], batch_size: int = 32) -> float:
    """Sentences per second of one pass over ``sents`` in one call."""
    s0 = time.perf_counter()
    embed(sents, batch_size)
    return len(sents) / (time.perf_counter() - s0)


def conditions(before, t0: float, lock) -> dict:
    """What a probe records of the stretch since ``before`` (a ``Mark``) under the machine ``lock``."""
    from pipeline.measure.signals import Mark, Window

    w = Window.between(before, Mark.now())
    return {
        "other_cpu_share": w.other_cpu_share,
        "seconds": round(time.time() - t0, 1),
        "loadavg_start": w.load_before,
        "loadavg_end": harness.loadavg(),
        "lock": {"held": True, "contended": lock.contention},
    }


def main(argv=None) -> int:
    p = harness.parser(__doc__, threads=None, rounds=6, lock_wait_s=600)
    p.add_argument("--single", type=int, default=100, help="sentences timed one at a time per round")
    p.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/<cpu-slug>/session_settings.json")
    a = p.parse_args(argv)
    from peerstats import results_path

    from pipeline.config import QualityConfig
    from pipeline.core.machine import cpu_model
    from pipeline.core.machine_lock import MachineLock
    from pipeline.data.sts import load_sts
    from pipeline.measure.signals import Mark

    sents = list(load_sts(QualityConfig(split="test")).unique_sentences)
    result = {"benchmark": "session_settings", "cpu_model": cpu_model(), "rounds": a.rounds, "settings": SETTINGS, "base": BASE}
    with MachineLock(a.lock_wait_s, "session settings") as lock:
        before, t0 = Mark.now(), time.time()
        for work, variant in (("single_p50_ms", "int8_dynamic"), ("corpus_sentences_per_s", "O2_cpu")):
            art = harness.load_artifact(variant)[2]
            embs = {n: embedder(art.folder, art.onnx_path.name, t, c) for n, (t, c) in SETTINGS.items()}
            per = {n: [] for n in SETTINGS}
            for r in range(a.rounds):
                for n in rotation(list(SETTINGS), r):
                    single = work == "single_p50_ms"
                    per[n].append(single_p50_ms(embs[n], sents, a.single) if single else corpus_per_s(embs[n], sents))
            result[work] = {"variant": variant, **paired(per)}
            del embs
        result["conditions"] = conditions(before, t0, lock)
    result["date"] = harness.utc_now()
    result["versions"] = harness.versions(("onnxruntime", "numpy", "tokenizers"))
    out = a.out or results_path(result["cpu_model"], "session_settings.json")
    harness.write_result(out, result)
    print(
        json.dumps(
            {
                "out": str(out),
                **{
                    k: {n: v["ratio_to_base"] for n, v in result[k].items() if isinstance(v, dict)}
                    for k in ("single_p50_ms", "corpus_sentences_per_s")
                },
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
