"""Report: the files of a decision (tables, figures, markdown, JSON), written from a :class:`Decision`.

The scoring lives in :mod:`pipeline.decision.matrix`; this module only writes what it computed. No
timestamps go into the files, so deciding the same sweep twice writes the same tables.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pandas as pd

from pipeline.decision import appendix, summary
from pipeline.decision.appendix import present, ranking_markdown, ranking_table
from pipeline.decision.figures import cdf_figure, differences_figure, pareto_figure, scores_figure
from pipeline.decision.types import Decision


def write(decision: Decision, folder: Path) -> list[Path]:
    """Write every output of the decision into ``folder``; returns the paths written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = [
        _csv(ranking_table(decision), folder / "ranking.csv"),
        _text(ranking_markdown(decision), folder / "ranking.md"),
        _csv(decision.excluded[present(decision.excluded, ["label", "run_id", "status", "reason"])], folder / "excluded.csv"),
        _csv(decision.robustness.weights, folder / "robustness_weights.csv"),
        _csv(decision.robustness.noise, folder / "robustness_noise.csv"),
        _text(json.dumps(decision.to_dict(), indent=2) + "\n", folder / "decision.json"),
        pareto_figure(decision, folder / "pareto.png"),
        cdf_figure(decision, folder / "latency_cdf.png"),
        scores_figure(decision, folder / "scores.png"),
        differences_figure(decision, folder / "differences.png"),
        _csv(decision.robustness.between, folder / "robustness_between_runs.csv"),
    ]
    md = markdown(decision)
    files.append(_text(md, folder / "report.md"))
    files.append(_text(html(md, folder, decision.sweep), folder / "report.html"))
    return files


def html(md: str, folder: Path, title: str) -> str:
    """The markdown report as one HTML file with its figures embedded (data URIs), so that it reads
    whole in MLflow's artifact viewer, a browser, or a mail."""

    import markdown as md_lib

    def embed(m: re.Match) -> str:
        path = folder / m.group(2)
        if not path.is_file():
            return m.group(0)
        data = base64.b64encode(path.read_bytes()).decode()
        return f"![{m.group(1)}](data:image/png;base64,{data})"

    body = md_lib.markdown(re.sub(r"!\[([^\]]*)\]\(([^)]+\.png)\)", embed, md), extensions=["tables", "fenced_code"])
    style = (
        "body{font-family:sans-serif;max-width:72em;margin:2em auto;padding:0 1em;line-height:1.45}"
        "table{border-collapse:collapse;font-size:90%}td,th{border:1px solid #ccc;padding:2px 6px}"
        "table{display:block;max-width:100%;overflow-x:auto}"  # a wide table scrolls inside the page
        "img{max-width:100%}code{background:#f4f4f4;overflow-wrap:anywhere}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>Decision: {title}</title>"
        f"<style>{style}</style></head><body>{body}</body></html>\n"
    )


def note(decision: Decision, top: int = 5) -> str:
    """The parent run's description (``mlflow.note.content``, rendered as markdown by the UI):
    the verdict, its caveats and the top of the ranking in raw units, as on the report's first page."""
    lines = [summary.verdict_line(decision), ""]
    if decision.caveats:
        lines += [*(f"- {c}" for c in decision.caveats), ""]
    if decision.winner is not None:
        lines += [f"Reproduce: `{decision.winner.command}`", ""]
    if not decision.ranking.empty:
        lines += [summary.top_table(decision, top), ""]
    lines += [
        f"{len(decision.ranking)} ranked, {len(decision.contended)} contended, {len(decision.excluded)} not ranked. "
        "Full report: the `decision/report.html` artifact."
    ]
    return "\n".join(lines)


def _csv(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False, float_format="%.6g")
    return path


def _text(text: str, path: Path) -> Path:
    path.write_text(text)
    return path


def markdown(decision: Decision) -> str:
    """The report: the first page (:mod:`.summary`), then an appendix: the winner against every gate, the full
    ranking, conditions, robustness, figures and method."""
    sections = (summary.first_page, *appendix.SECTIONS)
    return "\n".join(line for section in sections for line in section(decision))
