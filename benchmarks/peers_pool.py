"""Pool the rounds of several runs of benchmarks/peers_best.py that were made with the same settings.

    python benchmarks/peers_pool.py benchmarks/results/amd-epyc/peers_best.json benchmarks/results/amd-epyc/peers_best_run_b.json

One run's headline is the median of its per-round ratios, and on this machine two runs of the same
command a few hours apart have put the best single call at 0.74x and then 0.85x the best peer: a
run samples where its worker processes land as much as the code.  Pooling gives each contender
its rounds from every run, in run order, so that round k of one contender is still paired with
round k of every other (they ran in the same run, minutes apart); the headline, per class and as
shipped, is then ``peerstats.headline`` over those rounds, exactly as one run computes it.

Runs whose settings differ (CPU, threads, workload, texts, batch size, STS rule, the equal batches)
are refused: their rounds measure different things.  Only contenders present in every run are
pooled (a ratio pairs rounds); the others are listed with the runs they are missing from.
The roofline fractions are our best pooled corpus run against the median of the runs' measured peaks.
Writes ``peers_pooled.json`` beside the first file (``--out`` to change it), which
scripts/render_results.py renders into docs/embedder.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
import peerstats  # noqa: E402

# what two runs must share for their rounds to be pooled
SETTINGS = (
    "cpu_model",
    "threads",
    "workload_detail",
    "sentences_single",
    "sentences_corpus",
    "batch_size",
    "max_sts_loss",
    "batching_detail.equal.batches",  # the equal batches (their policy's text names the module, which moved)
    "batching_detail.equal.padded_tokens",
)
HEADLINE_KEYS = [f"best_{k}_ratio_vs_best_peer" for k in ("single_p50", "corpus_throughput")] + [
    f"{c}_{k}_ratio_vs_best_peer" for c in peerstats.CLASSES for k in ("single_p50", "corpus_throughput")
]


def _nan(v) -> float:
    return float("nan") if v is None else float(v)


def _result(rows: list[dict], equal: bool) -> peerstats.Result:
    """One contender's rounds from every run, in run order (NaN where a run did not time its corpus)."""
    r0 = rows[0]
    key = "corpus_s_per_round" if equal else "corpus_s_per_round_as_shipped"
    return peerstats.Result(
        r0["contender"],
        r0["precision"],
        r0["ours"],
        r0["stsb_spearman"],
        [float(x) for r in rows for x in r["single_p50_ms_per_round"]],
        [_nan(x) for r in rows for x in r[key]],
        _nan(r0.get("min_cosine_vs_ours_fp32")),
    )


def _row(rows: list[dict], n_corpus: int, ref_sts: float, max_sts_loss: float) -> dict:
    eq, shipped = _result(rows, True), _result(rows, False)
    t_eq, t_sh = peerstats.timed(eq.corpus_s), peerstats.timed(shipped.corpus_s)
    r0 = rows[0]
    return {
        "contender": eq.name,
        "precision": eq.precision,
        "ours": eq.ours,
        "single_p50_ms": statistics.median(eq.single_p50),
        "single_p95_ms": statistics.median([float(x) for r in rows for x in r["single_p95_ms_per_round"]]),
        "corpus_sentences_per_s": n_corpus / statistics.median(t_eq) if t_eq else None,
        "corpus_sentences_per_s_as_shipped": n_corpus / statistics.median(t_sh) if t_sh else None,
        "corpus_rounds": len(t_eq),
        "rounds_pooled": len(eq.single_p50),
        "min_cosine_vs_ours_fp32": r0.get("min_cosine_vs_ours_fp32"),
        "stsb_spearman": eq.sts,
        "sts_loss_vs_fp32": ref_sts - eq.sts,
        "qualifies": peerstats.qualifies(eq, ref_sts, max_sts_loss),
        "single_p50_ms_per_round": eq.single_p50,
        "corpus_s_per_round": eq.corpus_s,
        "corpus_s_per_round_as_shipped": shipped.corpus_s,
    }


def _roofline(runs: dict[str, dict], by_name: dict[str, list[dict]], per_class: dict) -> dict:
    """Our best pooled corpus contender of fp32 and int8 against the median of the runs' peaks.  A
    corpus pass is the same work for every contender of every run (the model's operations on the same
    texts): each run's achieved rate times its own roofline contender's median corpus time gives it back."""
    out = {}
    for prec in ("fp32", "int8"):
        best, work, peaks, fractions = per_class[prec]["ours_corpus"], [], [], []
        for run in runs.values():
            x = (run.get("roofline") or {}).get(prec)
            if x is None:
                continue
            row = next(r for r in run["table"] if r["contender"] == x["contender"])
            work.append(x["achieved_gops"] * statistics.median(peerstats.timed([_nan(v) for v in row["corpus_s_per_round"]])))
            peaks.append(x["peak_gops"])
            fractions.append(x["fraction"])
        if best is None or not work:
            out[prec] = None
            continue
        pooled_s = statistics.median(peerstats.timed([_nan(v) for row in by_name[best] for v in row["corpus_s_per_round"]]))
        achieved, peak = statistics.median(work) / pooled_s, statistics.median(peaks)
        out[prec] = {"contender": best, "achieved_gops": achieved, "peak_gops": peak, "fraction": achieved / peak, "runs": fractions}
    return out


def pool(runs: dict[str, dict]) -> dict:
    """``{name: a peers_best.py result}`` -> pooled rows and headline; ValueError when settings differ."""
    harness.refuse_different({name: harness.settings_of(r, SETTINGS) for name, r in runs.items()})
    by_name: dict[str, list[dict]] = {}
    for run in runs.values():
        for r in run["table"]:
            by_name.setdefault(r["contender"], []).append(r)
    missing = {c: [n for n, run in runs.items() if c not in {r["contender"] for r in run["table"]}] for c in by_name}
    dropped = {c: f"not in {', '.join(m)}" for c, m in missing.items() if m}
    by_name = {c: rows for c, rows in by_name.items() if c not in dropped}
    if "ours-fp32" not in by_name:
        raise ValueError("ours-fp32, the STS reference, is not in every run")
    r0 = next(iter(runs.values()))
    ref_sts, max_loss, n = by_name["ours-fp32"][0]["stsb_spearman"], r0["max_sts_loss"], r0["sentences_corpus"]
    equal = [_result(rows, True) for rows in by_name.values()]
    per_class = {k: peerstats.class_ratios(equal, (k,), ref_sts, max_loss) for k in peerstats.CLASSES}
    roof = _roofline(runs, by_name, per_class)
    # each run's own ratios, by the rule that pooled them (a file written before a rule changed keeps its old keys)
    own = {name: peerstats.headline([_result([r], True) for r in run["table"]], ref_sts, max_loss) for name, run in runs.items()}
    return {
        **{
            k: r0.get(k)
            for k in ("workload", "workload_detail", "threads", "sentences_single", "sentences_corpus", "batch_size", "max_sts_loss")
        },
        "fp32_stsb_spearman": ref_sts,
        "batching": "equal",
        **peerstats.headline(equal, ref_sts, max_loss),
        **peerstats.headline([_result(rows, False) for rows in by_name.values()], ref_sts, max_loss, prefix="as_shipped."),
        "rounds": sum(len(run["table"][0]["single_p50_ms_per_round"]) for run in runs.values()),
        "batching_detail": r0.get("batching_detail"),
        "by_class": per_class,
        "roofline_fraction_fp32": (roof.get("fp32") or {}).get("fraction"),
        "roofline_fraction_int8": (roof.get("int8") or {}).get("fraction"),
        "roofline": roof,
        "runs": {
            name: {
                "rounds": run.get("rounds"),
                "when": run.get("when"),
                "loadavg_before": run.get("loadavg_before"),
                "loadavg_after": run.get("loadavg_after"),
                "other_cpu_share": run.get("other_cpu_share"),
                "command": run.get("command"),
                **{k: own[name].get(k) for k in HEADLINE_KEYS},
            }
            for name, run in runs.items()
        },
        "dropped": dropped,
        "cpu_model": r0.get("cpu_model"),
        "cores": r0.get("cores"),
        "when": max(str(run.get("when")) for run in runs.values()),
        "loadavg_before": r0.get("loadavg_before"),
        "other_cpu_share": max(float(run.get("other_cpu_share") or 0) for run in runs.values()),
        "table": [_row(rows, n, ref_sts, max_loss) for rows in by_name.values()],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+", type=Path, help="peers_best.py result files (two or more)")
    p.add_argument("--out", type=Path, default=None, help="default: peers_pooled.json beside the first file")
    a = p.parse_args(argv)
    try:
        out = pool({f.name: json.loads(f.read_text()) for f in a.files})
    except (ValueError, KeyError, OSError) as exc:
        print(f"peers_pool.py: {exc}", file=sys.stderr)
        return 2
    out["command"] = "python benchmarks/peers_pool.py " + " ".join(str(f) for f in a.files)
    path = a.out or a.files[0].parent / "peers_pooled.json"
    path.write_text(json.dumps(out, indent=2, default=str) + "\n")
    print(json.dumps({k: out[k] for k in ("rounds", *HEADLINE_KEYS, "roofline_fraction_fp32", "roofline_fraction_int8", "dropped")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
