"""scripts/screenshots.py takes the five pictures of a sweep (the MLflow UI and the report, headless Chromium);
where no browser is installed it says so and exits 3, and this test is skipped with that reason."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import ROOT, tiny_overrides


def _env() -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def test_screenshots_of_a_sweep(tiny_bert, tiny_sts_dir, tmp_path):
    script = [sys.executable, str(ROOT / "scripts" / "screenshots.py")]
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    probe = subprocess.run(
        [*script, "--tracking-uri", uri, "--out", str(tmp_path / "none")], env=_env(), capture_output=True, text=True, timeout=120
    )
    if probe.returncode == 3:
        assert "screenshots skipped: " in probe.stderr
        pytest.skip(probe.stderr.strip().splitlines()[-1])
    sweep = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "-m",
            *tiny_overrides(tiny_bert, tiny_sts_dir, tmp_path),
            "bench.batch_size=1,2",
            "provider=cpu,cuda",
            "bench.iterations=10",
            "bench.max_seconds=1",
        ],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,  # a busy machine: benchmarks wait their turn
    )
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    out = tmp_path / "shots"
    proc = subprocess.run([*script, "--tracking-uri", uri, "--out", str(out)], env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    from PIL import Image

    for name in ("experiment", "parent", "report", "child", "compare"):
        path = out / f"{name}.png"
        assert path.is_file(), proc.stdout
        image = Image.open(path)
        assert image.size == (1600, 1000)  # the page at the size the script asks for
        assert len(set(image.convert("L").getdata())) > 20, f"{name}.png is blank"  # a rendered page, not a white one
