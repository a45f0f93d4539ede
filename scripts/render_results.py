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
BLOCK = re.compile(r"(<!-- results:(?P<name>[\w.-]+) -->\n)(?P<body>.*?)(<!-- /results -->)", re.S)
# how each result is made (said where a page has no result file yet)
COMMANDS = {
    "providers": "pipeline +sweep=providers rerun=true",
    "peers_best": "python benchmarks/peers_best.py",
    "serving": "python benchmarks/serving.py --threads 2",
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


def render(name: str, results: Path = RESULTS) -> str:
    files = sorted(results.glob(f"*/{name}.json"))
    if not files:
        how = COMMANDS.get(name, f"the benchmark that writes {name}.json")
        return (f"_No result file committed yet (`benchmarks/results/<cpu>/{name}.json`, from `{how}` on a quiet "
                f"machine): the measured table appears here once one is, by `python scripts/render_results.py`._\n")
    out = []
    for f in files:
        data = json.loads(f.read_text())
        rows = data.get("rows") or []
        head = f"Measured on {_conditions(data.get('conditions') or {})} (`{f.relative_to(results.parent.parent)}`)"
        if data.get("command"):
            head += f", by `{data['command']}`"
        out += [head + ":", "", table(rows) if rows else "_(no rows)_", ""]
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
