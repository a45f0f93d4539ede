"""The README is short and product-shaped; every measured table in the docs comes from a committed result file."""

from __future__ import annotations

import json
import re

from conftest import ROOT, render_results

# pages other changes add (their links are kept; their content is theirs)
ELSEWHERE = {"docs/measuring.md", "docs/resilience.md", "docs/serving.md"}


def test_the_readme_is_short_keeps_its_two_commands_and_links_pages_that_exist():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    assert '.venv/bin/pip install -e ".[dev,onnx-imports]"' in readme and "python -m pipeline +sweep=models" in readme
    assert ".venv/bin/python -m pytest" in readme
    assert not re.search(r"\bissue \d+|#\d{2,}\b|20\d\d-\d\d-\d\d", readme)  # no lab-notebook dates, no issue numbers
    for target in re.findall(r"\]\(((?:docs/)[^)#]+)", readme):
        assert target in ELSEWHERE or (ROOT / target).is_file(), target
    assert re.search(r"!\[[^\]]*\]\((docs/img/[^)]+\.png)\)", readme)
    picture = re.search(r"!\[[^\]]*\]\((docs/img/[^)]+\.png)\)", readme).group(1)
    assert (ROOT / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_committed_pages_are_what_the_result_filesrender_results():
    mod = render_results()
    for page in mod.pages():
        text = page.read_text()
        assert mod.rendered(text) == text, f"{page.name}: run python scripts/render_results.py"


def test_a_result_file_renders_as_a_table_with_its_cpu_and_conditions(tmp_path):
    mod = render_results()
    folder = tmp_path / "benchmarks" / "results" / "amd-epyc-9b14-2c"
    folder.mkdir(parents=True)
    (folder / "serving.json").write_text(
        json.dumps(
            {
                "command": "python benchmarks/serving.py --threads 2",
                "conditions": {
                    "cpu_model": "AMD EPYC 9B14",
                    "cores": 2,
                    "when": "2026-12-06",
                    "load_average": 0.4,
                    "versions": {"onnxruntime": "1.32.0"},
                },
                "rows": [{"server": "ours, int8", "max QPS within p95 20 ms": 566.0}, {"server": "peer", "max QPS within p95 20 ms": None}],
            }
        )
    )
    page = "intro\n<!-- results:serving -->\nstale typed table\n<!-- /results -->\nafter\n"
    out = mod.rendered(page, tmp_path / "benchmarks" / "results")
    assert "stale typed table" not in out and out.startswith("intro\n") and out.endswith("<!-- /results -->\nafter\n")
    assert "AMD EPYC 9B14" in out and "2 cores" in out and "load average 0.4" in out and "onnxruntime 1.32.0" in out
    assert "| ours, int8 | 566 |" in out and "| peer | - |" in out
    assert "amd-epyc-9b14-2c/serving.json" in out
    # without a result file the block names the command, and holds no figure
    empty = mod.rendered(page, tmp_path / "nowhere")
    assert "No result file committed yet" in empty and "stale typed table" not in empty


def test_every_relative_link_in_the_readme_and_docs_resolves():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    elsewhere = {(ROOT / p).resolve() for p in ELSEWHERE}
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)", page.read_text()):
            if target.startswith(("http://", "https://", "data:")):
                continue
            path = (page.parent / target).resolve()
            assert path.exists() or path in elsewhere, f"{page.name}: {target}"


def test_each_benchmarks_own_result_renders_through_its_view(tmp_path):
    """peers_best, serving and stability write their own JSON; the page shows a readable table of it."""
    mod = render_results()
    folder = tmp_path / "benchmarks" / "results" / "amd-epyc"
    folder.mkdir(parents=True)
    (folder / "peers_best.json").write_text(
        json.dumps(
            {
                "cpu_model": "AMD EPYC",
                "cores": 2,
                "loadavg_before": [0.3, 0.2, 0.1],
                "other_cpu_share": 0.012,
                "best_single_p50_ratio_vs_best_peer": 0.8,
                "as_shipped.best_single_p50_ratio_vs_best_peer": 0.7,
                "table": [
                    {
                        "contender": "ours-int8",
                        "precision": "int8",
                        "single_p50_ms": 1.234,
                        "single_p95_ms": 2.0,
                        "corpus_sentences_per_s": 1500.4,
                        "corpus_sentences_per_s_as_shipped": 1400.0,
                        "stsb_spearman": 81.9,
                        "qualifies": True,
                    }
                ],
            }
        )
    )
    (folder / "stability.json").write_text(
        json.dumps(
            {
                "quiet": {
                    "jobs_ok": [12, 12],
                    "false_alarms": [[], ["fp32 b8"]],
                    "winners": ["a", "a"],
                    "same_winner": True,
                    "p50_max_rel_diff": 0.031,
                    "p95_max_rel_diff": 0.08,
                },
                "kinds": {"pinned": {"jobs_ok": 12, "contended": 12, "contended_share": 1.0}},
                "go_from_contended": False,
                "ok": False,
                "failures": ["quiet run 2: 1 false alarm"],
                "environment": {"machine": {"cpu_model": "AMD EPYC", "cores": 2}},
            }
        )
    )
    page = "<!-- results:peers_best -->\n<!-- /results -->\n<!-- results:stability -->\n<!-- /results -->\n"
    out = mod.rendered(page, tmp_path / "benchmarks" / "results")
    assert "| ours-int8 | int8 | 1.23 | 2 | 1500 | 1400 | 81.9 | yes |" in out
    assert "`best_single_p50_ratio_vs_best_peer` 0.80" in out and "as shipped: `best_single_p50_ratio_vs_best_peer` 0.70" in out
    assert "| quiet 2 | 12 | fp32 b8 | a |" in out and "| pinned | 12 | 12 (100%) |" in out
    assert "Verdict: fail: quiet run 2: 1 false alarm" in out and "p50 within 3.1%" in out


def test_the_serving_view_shows_each_rows_class_and_the_headline_by_group_and_transport(tmp_path):
    mod = render_results()
    folder = tmp_path / "benchmarks" / "results" / "amd-epyc"
    folder.mkdir(parents=True)
    cell = lambda q, **k: {"qps": q, **k}  # noqa: E731
    row = {"front": "batched", "transport": "http", "service_ms_p50": 1.05, "saturation_qps": 473.2}
    entry = {"ours": "ours-int8/batched", "ours_qps": 350.0, "best_peer": "optimum-ort-int8/batched", "peer_qps": 150.0}
    (folder / "serving.json").write_text(
        json.dumps(
            {
                "conditions": {"cpu_model": "AMD EPYC", "cores": 2, "loadavg_end": [0.5, 0.4, 0.3]},
                "rows": [
                    {
                        **row,
                        "contender": "ours-int8",
                        "precision": "int8",
                        "max_qps_p95_20ms": cell(350.0),
                        "max_qps_p95_30ms": cell(400.0),
                    },
                    {**row, "contender": "st-onnx", "precision": "fp32", "max_qps_p95_20ms": cell(0.0), "max_qps_p95_30ms": cell(5.0)},
                ],
                "headline": {
                    "best:http@20ms": {**entry, "ratio": 350 / 150, "kind": "exact"},
                    "best:http@30ms": {**entry, "ratio": 2.0, "kind": "at_least"},
                    "int8:process@20ms": {**entry, "ratio": None, "kind": "unknown"},
                },
            }
        )
    )
    out = mod.rendered("<!-- results:serving -->\n<!-- /results -->\n", tmp_path / "benchmarks" / "results")
    assert (
        "| ours-int8 | batched | int8 | HTTP | 1.05 | 350 | 400 | 473 |" in out
        and "| st-onnx | batched | fp32 | HTTP | 1.05 | 0 | 5 | 473 |" in out
    )
    assert (
        "Headline, `best, HTTP`: 20ms: ours-int8/batched 350/s against optimum-ort-int8/batched 150/s, 2.33x; "
        "30ms: ours-int8/batched 350/s against optimum-ort-int8/batched 150/s, at least 2.00x"
    ) in out
    assert "Headline, `int8, in process`: 20ms: " in out and "no ratio" in out
