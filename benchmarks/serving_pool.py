"""Pool the rounds of several runs of benchmarks/serving.py that were made with the same settings.

    python benchmarks/serving_pool.py benchmarks/results/amd-epyc/serving.json benchmarks/results/amd-epyc/serving_run_c.json

One run's max QPS at a target is the median over its rounds; on this machine rounds spread by
1.5-2x near the 20 ms target, so one run can say 1.67x where the next says 1.25x.  Pooling gives
each (contender, front, transport) the median over every round of every run (each round's figure
is ``serving_stats.max_qps_at`` over that round's points, as in one run), and its saturation the
median of the rounds' highest achieved rates; the headline is serving.py's, over those rows.

Runs whose settings differ (CPU, threads, rates, requests per point, point length, the front and
its event loop, the session config) are refused: their rounds measure different things.  A
contender that failed in some run is pooled over the rounds it has, and its row says how many.
Writes ``benchmarks/results/<cpu-slug>/serving_pooled.json`` (``--out`` to change it), which
scripts/render_results.py renders into docs/load.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
import serving  # noqa: E402

# what two runs must share for their rounds to be pooled (a missing key reads as None: older files
# have no event loop in their front, and ran asyncio's own loop)
SETTINGS = ("cpu_slug", "threads", "rates", "requests_per_point", "max_point_s", "front", "session_config.entries")


def settings_of(run: dict) -> dict:
    out = harness.settings_of(run, SETTINGS)
    out["front"] = {"loop": "asyncio", **(out["front"] or {})}  # before the loop was recorded, the servers ran asyncio's
    return out


def pool(runs: dict[str, dict]) -> dict:
    """``{name: a serving.py result}`` -> pooled rows and headline; ValueError when settings differ."""
    settings = {name: settings_of(r) for name, r in runs.items()}
    harness.refuse_different(settings)
    by_key: dict[tuple[str, str, str], list[tuple[str, dict]]] = {}
    for name, run in runs.items():
        for r in run["rows"]:
            by_key.setdefault((r["contender"], r["front"], r["transport"]), []).append((name, r))
    rows = []
    for (contender, front, transport), got in by_key.items():
        rounds = [x for _, r in got for x in r["rounds"]]
        row = {
            "contender": contender,
            "front": front,
            "transport": transport,
            "peer": contender not in serving.OURS,
            "precision": serving.precision(contender),
            "service_ms_p50": float(np.median([r["service_ms_p50"] for _, r in got])),
            **serving.figures(rounds),  # as one run's rows, over every round of every run
            "runs": [name for name, _ in got],
            "rounds_pooled": len(rounds),
        }
        rows.append(row)
    return {"settings": next(iter(settings.values())), "rows": rows, "headline": serving.headline(rows)}


def summary_of(files: list[Path]) -> dict:
    runs = {f.name: json.loads(f.read_text()) for f in files}
    out = pool(runs)
    conds = {name: r.get("conditions") or {} for name, r in runs.items()}
    c0 = next(iter(conds.values()))
    return {
        "benchmark": "serving_pooled",
        "files": [str(f) for f in files],
        "runs": {
            name: {
                "rounds": r.get("rounds"),
                "seconds": conds[name].get("seconds"),
                "loadavg_end": conds[name].get("loadavg_end"),
                "skipped": r.get("skipped"),
                "headline": {
                    k: {x: v.get(x) for x in ("ours", "ours_qps", "best_peer", "peer_qps", "ratio", "kind")}
                    for k, v in r["headline"].items()
                },
            }
            for name, r in runs.items()
        },
        "conditions": {
            "cpu_model": c0.get("cpu_model"),
            "cores": c0.get("cores"),
            "load_average": [conds[n].get("loadavg_end") for n in runs],
            "versions": c0.get("versions") or {},
        },
        **out,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+", type=Path, help="serving.py result files made with the same settings")
    p.add_argument("--out", type=Path, default=None, help="default: serving_pooled.json beside the first file")
    args = p.parse_args(argv)
    try:
        summary = summary_of(args.files)
    except (ValueError, KeyError, OSError) as exc:
        print(f"serving_pool.py: {exc}", file=sys.stderr)
        return 2
    out = args.out or args.files[0].parent / "serving_pooled.json"
    out.write_text(json.dumps(summary, indent=1) + "\n")
    for k, v in summary["headline"].items():
        if k.startswith("best:"):
            r = v.get("ratio")
            print(
                f"{k}: {v['ours']} {v['ours_qps']:g}/s, {v['best_peer']} {v['peer_qps']:g}/s, {'-' if r is None else f'{r:.2f}x'} ({v['kind']})"
            )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
