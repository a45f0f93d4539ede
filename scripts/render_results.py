"""Write the measured tables of the README and docs/ from the committed result files.

    python scripts/render_results.py           # rewrites every marked block in README.md and docs/*.md
    python scripts/render_results.py --check   # exit 1 when a committed page differs from what it renders

A page marks where a result goes:

    <!-- results:NAME -->
    (whatever is here is replaced)
    <!-- /results -->

and the block is rendered from ``benchmarks/results/<cpu-slug>/NAME.json``: one table per CPU
that has the file, headed by the CPU, the date, the load average and the versions it was measured
with.  A result file is a JSON object with ``rows`` (a list of objects with the same keys: the
table) and ``conditions`` (``cpu_model``, ``when``, ``load_average``, ``versions``, ...), as the
benchmarks write it; ``command`` says how it was made.  Without a result file the block says which
command makes one: no figure is ever typed into a page by hand.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "benchmarks"))
from peerstats import COSINE_FLOORS  # noqa: E402  (the rule that says whether a peers_best row counts)

BLOCK = re.compile(r"(<!-- results:(?P<name>[\w.-]+) -->\n)(?P<body>.*?)(<!-- /results -->)", re.S)
# how each result is made (said where a page has no result file yet)
COMMANDS = {
    "providers": "pipeline +sweep=providers rerun=true",
    "peers_best": "python benchmarks/peers_best.py",
    "serving": "python benchmarks/serving.py --threads 2",
    "stability": "python benchmarks/stability.py",
    "serving_session": "python benchmarks/serving_session.py",
    "serving_pooled": "python benchmarks/serving_pool.py FILE FILE...",
    "peers_pooled": "python benchmarks/peers_pool.py FILE FILE...",
    "graph_variants": "python benchmarks/graph_variants.py",
    "peers_best_passages": "python benchmarks/peers_best.py --workload passages",
    "sweep_lengths": "python -m pipeline +sweep=lengths, then python scripts/sweep_results.py",
    "sweep_traffic": "python -m pipeline +sweep=traffic, then python scripts/sweep_results.py",
}


def pages(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def _cell(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    return str(v).replace("|", "\\|").replace("\n", " ")


def table(rows: list[dict]) -> str:
    cols = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def _conditions(c: dict) -> str:
    parts = [str(c.get("cpu_model") or "unknown CPU")]
    if c.get("cores"):
        parts.append(f"{c['cores']} cores")
    if c.get("when"):
        parts.append(str(c["when"]))
    if c.get("load_average") is not None:
        parts.append(f"load average {c['load_average']}")
    versions = c.get("versions") or {}
    if versions:
        parts.append(", ".join(f"{k} {v}" for k, v in sorted(versions.items())))
    return "; ".join(parts)


def _num(v, digits: int = 2):
    return None if v is None else round(float(v), digits)


def _qps(cell) -> str | None:
    """A max-QPS cell of serving.py: ``{"qps": ..., "lower_bound": ...}`` or a number."""
    if isinstance(cell, dict):
        if cell.get("qps") is None:
            return None
        return f"{cell['qps']:.0f}" + ("+" if cell.get("lower_bound") or cell.get("limited_by_rates") else "")
    return None if cell is None else f"{float(cell):.0f}"


def _why_not(row: dict) -> str:
    """Why a peers_best contender does not count: below its class's cosine floor, or its STS loss."""
    floor, cos = COSINE_FLOORS.get(row.get("precision")), row.get("min_cosine_vs_ours_fp32")
    if floor is not None and cos is not None and cos < floor:
        return f"no (min cosine {cos:.3f} < {floor})"
    return "no (STS loss)"


def view_peers_best(data: dict) -> tuple[list[dict], dict, list[str]]:
    rows = [
        {
            "contender": r["contender"],
            "class": r["precision"],
            "single p50 ms": _num(r["single_p50_ms"]),
            "single p95 ms": _num(r["single_p95_ms"]),
            "corpus sent/s, same batches": _num(r.get("corpus_sentences_per_s"), 0),
            "corpus sent/s, as shipped": _num(r.get("corpus_sentences_per_s_as_shipped"), 0),
            "STS": _num(r["stsb_spearman"]),
            "counts": "yes" if r["qualifies"] else _why_not(r),
        }
        for r in data.get("table", [])
    ]
    cond = {
        "cpu_model": data.get("cpu_model"),
        "cores": data.get("cores"),
        "when": data.get("when"),
        "load_average": data.get("loadavg_before"),
        "versions": data.get("versions") or {},
    }
    keys = [k for k in data if k.endswith("_ratio_vs_best_peer") and not k.startswith("as_shipped.")]
    notes = [
        "Headline (same batches for all; a single-call ratio below 1 and a throughput ratio above 1 favour ours): "
        + ", ".join(f"`{k}` {data[k]:.2f}" for k in keys if data[k] is not None)
        + "; as shipped: "
        + ", ".join(f"`{k}` {data['as_shipped.' + k]:.2f}" for k in keys if data.get("as_shipped." + k) is not None)
        + f". Other processes took {100 * (data.get('other_cpu_share') or 0):.1f}% of the CPU over the timed rounds."
    ]
    return rows, cond, notes


def view_serving(data: dict) -> tuple[list[dict], dict, list[str]]:
    rows = []
    for r in data.get("rows", []):
        row = {
            "contender": r["contender"],
            "front": r["front"],
            "class": r.get("precision"),
            "transport": "in process" if r["transport"] == "tcp" else "HTTP",
            "service ms (p50)": _num(r["service_ms_p50"]),
        }
        for key in sorted(k for k in r if k.startswith("max_qps_p95_")):
            row[f"max QPS, p95 <= {key[len('max_qps_p95_') :]}"] = _qps(r[key])
        row["saturation QPS"] = _num(r["saturation_qps"], 0)
        rows.append(row)
    cond = dict(data.get("conditions") or {})
    cond["load_average"] = cond.get("load_average", cond.get("loadavg_end"))
    lines: dict[str, list[str]] = {}
    for k, v in (data.get("headline") or {}).items():
        group, _, at = k.rpartition(":")  # "<group>:<transport>@<target>ms" (older files: no group)
        transport, _, target = at.partition("@")
        r = v.get("ratio")
        ratio = "no ratio" if r is None else {"at_least": "at least ", "at_most": "at most "}.get(v.get("kind"), "") + f"{r:.2f}x"
        lines.setdefault(f"{group or 'fp32'}, {'in process' if transport == 'process' else 'HTTP'}", []).append(
            f"{target}: {v.get('ours')} {_qps(v.get('ours_qps'))}/s against {v.get('best_peer')} {_qps(v.get('peer_qps'))}/s, {ratio}"
        )
    notes = [f"Headline, `{g}`: " + "; ".join(x) for g, x in lines.items()]
    return rows, cond, notes


def view_stability(data: dict) -> tuple[list[dict], dict, list[str]]:
    q = data["quiet"]
    rows = [
        {"run": f"quiet {i + 1}", "ok jobs": n, "jobs flagged": ", ".join(fa) or "none", "winner": w}
        for i, (n, fa, w) in enumerate(zip(q["jobs_ok"], q["false_alarms"], q["winners"]))
    ]
    rows += [
        {"run": name, "ok jobs": k.get("jobs_ok"), "jobs flagged": f"{k.get('contended')} ({100 * k.get('contended_share', 0):.0f}%)"}
        for name, k in data.get("kinds", {}).items()
    ]
    env = data.get("environment") or {}
    machine = env.get("machine") or {}
    checks = (data.get("runs") or {}).get("checks") or []
    cond = {
        "cpu_model": machine.get("cpu_model"),
        "cores": machine.get("cores"),
        "when": env.get("when"),
        "load_average": [round(c["load"], 2) for c in checks if c.get("load") is not None] or None,
        "versions": {k: v for k, v in (env.get("versions") or {}).items() if v},
    }
    notes = [
        f"Quiet runs: the same winner: {q.get('same_winner')}; p50 within {100 * (q.get('p50_max_rel_diff') or 0):.1f}% and "
        f"p95 within {100 * (q.get('p95_max_rel_diff') or 0):.1f}% for every ok job. A GO from a configuration that stayed "
        f"contended: {data.get('go_from_contended')}. Verdict: {'pass' if data.get('ok') else 'fail: ' + '; '.join(data.get('failures') or [])}."
    ]
    return rows, cond, notes


def view_sweep(data: dict) -> tuple[list[dict], dict, list[str]]:
    """A sweep filed by scripts/sweep_results.py: its rows as they are, and its decision."""
    cond = dict(data.get("conditions") or {})
    d = data.get("decision") or {}
    notes = []
    if cond.get("other_cpu_share"):
        notes.append(
            f"Other processes' CPU share per job: {cond['other_cpu_share'][0]:.3f} to {cond['other_cpu_share'][1]:.3f}; "
            f"jobs measured contended: {cond.get('jobs_contended', 0)}."
        )
    if d.get("recommendation"):
        notes.append(f"Decision (profile `{d.get('profile')}`): {d['recommendation']}")
    parts = d.get("parts") or {}
    if parts.get("best_per_part"):
        notes.append(
            "Best per part: "
            + "; ".join(f"{k}: {v}" for k, v in parts["best_per_part"].items())
            + (f". {parts['recommendation']}" if parts.get("recommendation") else "")
        )
    return data.get("rows") or [], cond, notes


# how each result file becomes a table: a benchmark's rows hold more than a page can show
def view_serving_session(data: dict) -> tuple[list[dict], dict, list[str]]:
    base = data.get("base")
    rows = []
    for r in data.get("rows", []):
        row = {"session config": r["config"], "entries": r["entries"]}
        targets = [k[len("max_qps_p95_") :] for k in sorted(k for k in r if k.startswith("max_qps_p95_"))]
        for t in targets:
            row[f"max QPS, p95 <= {t}"] = _qps(r[f"max_qps_p95_{t}"])
        for t in targets:
            v = r.get(f"vs_{base}_{t}") or {}
            kind = {"at_least": ">= ", "at_most": "<= "}.get(v.get("kind"), "")
            row[f"vs {base}, {t}"] = None if v.get("ratio") is None else f"{kind}{v['ratio']:.2f}x"
        row["server CPU ms/request"] = _num(r.get("server_cpu_ms_per_request"))
        low = min(r["p95_ms_by_rate"], key=float) if r.get("p95_ms_by_rate") else None
        row["p95 ms at the lowest rate"] = None if low is None else f"{r['p95_ms_by_rate'][low]:.1f} ({low}/s)"
        rows.append(row)
    notes = [
        f"{data.get('variant')} over HTTP behind the batched front (max_batch {data['front']['max_batch']}, no wait), "
        f"{data.get('rounds')} rounds, rates {', '.join(f'{x:g}' for x in data.get('rates', []))}/s; "
        "a `+` marks a target met at the highest rate tried in some round."
    ]
    return rows, dict(data.get("conditions") or {}), notes


def view_serving_pooled(data: dict) -> tuple[list[dict], dict, list[str]]:
    """benchmarks/serving_pool.py's file: serving.py's table over the pooled rounds, and each run's own headline."""
    rows, cond, notes = view_serving(data)
    for row, r in zip(rows, data.get("rows", [])):
        row["rounds pooled"] = r.get("rounds_pooled")
    runs = []
    for name, run in (data.get("runs") or {}).items():
        cells = []
        for transport, label in (("http", "HTTP"), ("process", "in process")):
            ratios = [(run.get("headline") or {}).get(f"best:{transport}@{t:g}ms", {}).get("ratio") for t in (20, 30, 50)]
            cells.append(f"{label} " + "/".join("-" if x is None else f"{x:.2f}" for x in ratios))
        runs.append(f"`{name}` ({run.get('rounds')} rounds: {', '.join(cells)})")
    notes = [
        "Pooled over the rounds of " + "; ".join(runs) + " (each run's own `best` ratios at 20/30/50 ms). "
        "A max QPS here is the median over every round of those runs."
    ] + notes
    return rows, cond, notes


def view_peers_pooled(data: dict) -> tuple[list[dict], dict, list[str]]:
    """benchmarks/peers_pool.py's file: peers_best.py's table over the pooled rounds, and each run's own ratios."""
    rows, cond, notes = view_peers_best(data)
    for row, r in zip(rows, data.get("table", [])):
        row["rounds pooled"] = r.get("rounds_pooled")
    cond["load_average"] = [run.get("loadavg_before") for run in (data.get("runs") or {}).values()]
    runs = []
    for name, run in (data.get("runs") or {}).items():
        cells = [
            f"{label} "
            + "/".join(
                "-" if run.get(f"{k}_{what}_ratio_vs_best_peer") is None else f"{run[f'{k}_{what}_ratio_vs_best_peer']:.2f}"
                for k in ("best", "fp32", "int8", "bf16")
            )
            for label, what in (("single", "single_p50"), ("corpus", "corpus_throughput"))
        ]
        runs.append(f"`{name}` ({run.get('rounds')} rounds, {run.get('when')}: {', '.join(cells)})")
    notes = [
        "Pooled over the rounds of " + "; ".join(runs) + " (each run's own ratios, best/fp32/int8/bf16). "
        "A figure here is the median over every round of those runs; a ratio, the median of the per-round ratios."
    ] + notes
    notes += [f"Not pooled: {c} ({why})." for c, why in (data.get("dropped") or {}).items()]
    return rows, cond, notes


def view_graph_variants(data: dict) -> tuple[list[dict], dict, list[str]]:
    """benchmarks/graph_variants.py's file: each candidate graph against its group's base."""
    rows = []
    for group in data.get("groups", {}):
        g = data.get(group) or {}
        for name, single in (g.get("single_p50_ms") or {}).items():
            corpus = g["corpus_sentences_per_s"][name]
            rows.append(
                {
                    "graph": name,
                    "against": g["base"],
                    "single p50 ms": _num(single["median"]),
                    "single p50 ratio": _num(single["ratio_to_base"]),
                    "corpus sent/s": _num(corpus["median"], 0),
                    "corpus ratio": _num(corpus["ratio_to_base"]),
                    "max cosine distance to it": f"{g['max_cosine_distance_to_base'][name]:.1e}",
                }
            )
    c = data.get("conditions") or {}
    cond = {
        "cpu_model": data.get("cpu_model"),
        "when": data.get("date"),
        "load_average": c.get("loadavg_end"),
        "versions": data.get("versions") or {},
    }
    notes = [
        f"{data.get('rounds')} rounds, {data.get('threads')} threads; a single-call ratio below 1 and a corpus ratio above 1 favour the candidate. "
        f"Other processes took {100 * (c.get('other_cpu_share') or 0):.1f}% of the CPU."
    ]
    notes += [f"Not built: {k} ({v})." for k, v in (data.get("skipped") or {}).items()]
    return rows, cond, notes


VIEWS = {
    "graph_variants": view_graph_variants,
    "peers_best": view_peers_best,
    "peers_pooled": view_peers_pooled,
    "peers_best_passages": view_peers_best,
    "serving": view_serving,
    "stability": view_stability,
    "serving_session": view_serving_session,
    "serving_pooled": view_serving_pooled,
}
VIEW_KEYS = {
    "graph_variants": "groups",
    "peers_best": "table",
    "peers_pooled": "table",
    "peers_best_passages": "table",
    "serving": "headline",
    "stability": "quiet",
    "serving_session": "configs",
    "serving_pooled": "headline",
}


def render(name: str, results: Path = RESULTS) -> str:
    files = sorted(results.glob(f"*/{name}.json"))
    if not files:
        how = COMMANDS.get(name, f"the benchmark that writes {name}.json")
        return (
            f"_No result file committed yet (`benchmarks/results/<cpu>/{name}.json`, from `{how}` on a quiet "
            f"machine): the measured table appears here once one is, by `python scripts/render_results.py`._\n"
        )
    out = []
    for f in files:
        data = json.loads(f.read_text())
        if name in VIEWS and VIEW_KEYS[name] in data:  # the benchmark's own format (else: rows + conditions as they are)
            rows, cond, notes = VIEWS[name](data)
        elif name.startswith("sweep_") and "rows" in data:
            rows, cond, notes = view_sweep(data)
        else:
            rows, cond, notes = data.get("rows") or [], data.get("conditions") or {}, []
        head = f"Measured on {_conditions(cond)} (`{f.relative_to(results.parent.parent)}`)"
        if data.get("command"):
            head += f", by `{data['command']}`"
        out += [head + ":", "", table(rows) if rows else "_(no rows)_", ""]
        out += [n + "\n" for n in notes]
    return "\n".join(out)


def rendered(text: str, results: Path = RESULTS) -> str:
    return BLOCK.sub(lambda m: m.group(1) + render(m.group("name"), results) + m.group(4), text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 when a page is out of date")
    args = parser.parse_args(argv)
    stale = []
    for page in pages():
        text = page.read_text()
        new = rendered(text)
        if new != text:
            stale.append(page.relative_to(ROOT))
            if not args.check:
                page.write_text(new)
    if args.check and stale:
        print("out of date (run python scripts/render_results.py): " + ", ".join(map(str, stale)), file=sys.stderr)
        return 1
    print(("rewrote: " if stale else "up to date: ") + ", ".join(map(str, stale or [p.relative_to(ROOT) for p in pages()])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
