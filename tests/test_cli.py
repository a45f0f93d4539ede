"""The command line as a Hydra user knows it: the app's own --help, the `pipeline` console
script (pyproject's [project.scripts]) and Hydra's shell completion through it."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

from conftest import ROOT

from pipeline.config import compose_config

# what the console script `pipeline` runs (pip writes this wrapper into the environment's bin/)
CONSOLE = "import sys; sys.argv[0] = 'pipeline'; from pipeline.__main__ import cli; sys.exit(cli())"


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def _pipeline(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    script = Path(sys.executable).parent / "pipeline"  # installed (pip install -e .): the real script
    cmd = [str(script), *args] if script.is_file() else [sys.executable, "-c", CONSOLE, *args]
    return subprocess.run(cmd, cwd=ROOT, env=env or _env(), capture_output=True, text=True, timeout=120)


def test_the_console_script_is_declared():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["pipeline"] == "pipeline.__main__:cli"


def test_help_is_the_apps_own():
    for proc in (
        _pipeline("--help"),
        subprocess.run([sys.executable, "-m", "pipeline", "--help"], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120),
    ):
        assert proc.returncode == 0, proc.stderr[-2000:]
        out = proc.stdout
        assert out.startswith("pipeline: measure text-embedding configurations"), out[:300]
        assert "__main__" not in out and "powered by Hydra" not in out
        assert "pipeline +sweep=smoke" in out and "Exit codes:" in out
        assert "== Configuration groups ==" in out  # the groups and their options
        [sweeps] = [line for line in out.splitlines() if line.startswith("sweep: ")]
        assert {"smoke", "models", "load", "lengths", "traffic", "stability"} <= set(sweeps[len("sweep: ") :].split(", "))
        assert "pipeline --cfg job" in out and len(out.splitlines()) < 80  # short: the full config is one command away
        from pipeline.core.errors import Exit

        assert all(f"{int(e)} " in out.split("Exit codes:")[1] for e in Exit)  # every exit code, 5 included
        assert 'eval "$(pipeline -sc install=bash)"' in out


def test_each_job_is_named_after_the_app():
    assert compose_config([], hydra_config=True).hydra.job.name == "pipeline"  # its log: pipeline.log


def test_tab_completion_through_the_console_script():
    install = _pipeline("-sc", "install=bash")
    assert install.returncode == 0, install.stderr[-2000:]
    assert "complete" in install.stdout and "pipeline" in install.stdout
    # what bash asks once the user typed `pipeline bench.batch` and pressed tab
    query = _pipeline("-sc", "query=bash", env={**_env(), "COMP_LINE": "pipeline bench.batch", "COMP_POINT": "20"})
    assert query.returncode == 0, query.stderr[-2000:]
    assert "bench.batch_size=" in query.stdout.split()
    groups = _pipeline("-sc", "query=bash", env={**_env(), "COMP_LINE": "pipeline pooling=", "COMP_POINT": "17"})
    assert {"pooling=mean", "pooling=cls", "pooling=max", "pooling=last_token"} <= set(groups.stdout.split())


def test_bash_completes_the_console_script(tmp_path):
    """In bash itself: the script `pipeline -sc install=bash` prints, then a tab after `pipeline pool`."""
    import shutil

    if shutil.which("bash") is None:
        import pytest

        pytest.skip("no bash here")
    bindir = tmp_path / "bin"  # the console script as pip writes it, on PATH
    bindir.mkdir()
    script = bindir / "pipeline"
    script.write_text(f"#!{sys.executable}\n{CONSOLE.replace('; ', chr(10))}\n")
    script.chmod(0o755)
    env = {**_env(), "PATH": os.pathsep.join([str(bindir), os.environ.get("PATH", "")])}
    bash = """
    eval "$(pipeline -sc install=bash)"
    COMP_LINE='pipeline pool'; COMP_POINT=${#COMP_LINE}; COMP_WORDS=(pipeline pool); COMP_CWORD=1
    hydra_bash_completion
    printf '%s\\n' "${COMPREPLY[@]}"
    """
    proc = subprocess.run(["bash", "-c", bash], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "pooling=" in proc.stdout.split(), proc.stdout


def test_a_mistyped_key_gets_the_nearest_real_one():
    proc = _pipeline("bench.batchsize=8")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "did you mean bench.batch_size=8?" in proc.stderr


def test_suggestions_name_only_keys_that_do_not_exist():
    from pipeline.config.suggest import suggestions

    keys = ["bench.batch_size", "bench.iterations", "provider.threads", "model", "model.max_length"]
    assert suggestions(["bench.batch_size=8", "provider.threads=2", "+sweep=smoke", "pooling=cls"], keys) == []
    (line,) = suggestions(["bench.batchsize=8", "bench.zzz=1"], keys)
    assert line.startswith("did you mean bench.batch_size=8?")
    (line,) = suggestions(["provider.thread=2"], keys)
    assert "provider.threads=2" in line


def test_the_sweep_end_says_how_to_open_the_runs():
    from pipeline.sweep.console import mlflow_ui_hint

    assert "mlflow ui --backend-store-uri sqlite:////tmp/x/mlflow.db" in mlflow_ui_hint("sqlite:////tmp/x/mlflow.db")
    server = mlflow_ui_hint("http://user:s3cret-token@mlflow.example.org:5000")
    assert "open http://" in server and "mlflow.example.org:5000" in server and "s3cret-token" not in server
