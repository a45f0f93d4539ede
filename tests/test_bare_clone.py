"""A user's clone has nothing beside it: the evaluation data the default run scores on ships with the
project (``pipeline/data/stsb``, with its licence), and no code path reads a folder beside the checkout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, tiny_overrides

from pipeline.data.sts import PINNED


def _tracked_copy(dest: Path) -> Path:
    """The repository's tracked files (and the uncommitted edits to them), as a clone would hold them."""
    files = (
        subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, check=True)
        .stdout.decode()
        .split("\0")
    )
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def test_the_shipped_sts_splits_are_the_pinned_ones_with_their_licence():
    from pipeline.config import default_data_dir
    from pipeline.core.cache import sha256_file

    env = {k: v for k, v in os.environ.items() if k != "PIPELINE_DATA_DIR"}
    folder = Path(
        subprocess.run(
            [sys.executable, "-c", "from pipeline.config import default_data_dir; print(default_data_dir())"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    assert folder == ROOT / "pipeline" / "data", folder  # inside the checkout, not beside it
    for split, (_pairs, digest) in PINNED.items():
        assert sha256_file(folder / "stsb" / f"stsb-en-{split}.csv") == digest
    assert "CC BY-SA" in (folder / "stsb" / "LICENSE").read_text() + (folder / "stsb" / "README.md").read_text()
    assert default_data_dir()  # importable in-process too


def test_no_code_path_names_a_folder_beside_the_checkout():
    grep = subprocess.run(
        [
            "git",
            "grep",
            "-nE",
            r"\.\./shared|parent / \"shared\"|\"shared\" / \"data\"|shared/data",
            "--",
            "pipeline",
            "conf",
            "tests",
            "benchmarks",
            "notebooks",
            "dvc.yaml",
            "scripts",
            "params.yaml",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    hits = [line for line in grep.stdout.splitlines() if not line.startswith("tests/test_bare_clone.py")]
    assert not hits, "\n".join(hits)


def test_a_job_in_a_copy_with_nothing_beside_it_scores_on_the_shipped_data(tiny_bert, tmp_path):
    clone = _tracked_copy(tmp_path / "lonely" / "clone")
    assert not (clone.parent / "shared").exists() and not (clone / "shared").exists()
    work = tmp_path / "work"
    work.mkdir()
    overrides = [o for o in tiny_overrides(tiny_bert, Path("unused"), work) if not o.startswith(("quality.data_dir=", "quality.dataset="))]
    env = {k: v for k, v in os.environ.items() if k not in ("PIPELINE_DATA_DIR", "PYTHONPATH")}
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", *overrides, "bench.contention.enabled=false"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    [record] = [json.loads(p.read_text()) for p in (work / "records").glob("*/record.json")]
    assert record["status"] == "ok", record.get("reason")
    params = record["params"]
    assert params["quality.data_dir"] == str(clone / "pipeline" / "data")  # the clone's own copy, nothing beside it
    # scored on the pinned STS Benchmark test split (1,379 pairs, sha256 checked), not on a user's own data
    assert params["quality.dataset"] == "stsb" and -100.0 <= record["metrics"]["quality.stsb_spearman"] <= 100.0
