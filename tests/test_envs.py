"""Environments made per package set (pipeline/runtime/envs.py), with packages installable offline."""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

from pipeline.runtime import envs


def make_wheel(folder: Path, name: str = "tinypkg", version: str = "0.1") -> Path:
    """A minimal pure-python wheel, so that pip can install it with no index."""
    folder.mkdir(parents=True, exist_ok=True)
    whl = folder / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"VERSION = '{version}'\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{p},,\n" for p in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(whl, "w") as z:
        for p, text in files.items():
            z.writestr(p, text)
        z.writestr(f"{info}/RECORD", record)
    return whl


def test_an_environment_is_made_once_with_its_packages_and_reused(tmp_path):
    wheels = tmp_path / "wheels"
    make_wheel(wheels)
    args = ["--no-index", "--find-links", str(wheels)]
    env = envs.ensure(["tinypkg==0.1"], tmp_path / "envs", name="tiny", pip_args=args)
    assert env.ok, env.reason
    assert env.versions.get("tinypkg") == "0.1"
    assert env.size_mb > 0 and env.created_s > 0
    out = subprocess.run([str(env.python), "-c", "import tinypkg; print(tinypkg.VERSION)"], capture_output=True, text=True)
    assert out.stdout.strip() == "0.1"
    # the main environment does not see it
    assert subprocess.run(["python", "-c", "import tinypkg"], capture_output=True).returncode != 0
    again = envs.ensure(["tinypkg==0.1"], tmp_path / "envs", name="tiny", pip_args=args)
    assert again.python == env.python and again.created_s == 0  # reused, not rebuilt


def test_a_package_that_cannot_be_installed_gives_no_python_and_pips_reason(tmp_path):
    env = envs.ensure(["no-such-package-xyz==9.9"], tmp_path / "envs", name="missing", pip_args=["--no-index"])
    assert not env.ok and env.python is None
    assert "no-such-package-xyz" in env.reason and "failed" in env.reason
    # no marker: the next call tries again instead of trusting a broken environment
    assert envs.read(env.path) is None


def test_an_environment_without_its_marker_is_rebuilt(tmp_path):
    wheels = tmp_path / "wheels"
    make_wheel(wheels)
    args = ["--no-index", "--find-links", str(wheels)]
    env = envs.ensure(["tinypkg"], tmp_path / "envs", name="tiny", pip_args=args)
    (env.path / envs.MARKER).unlink()  # as if creation had been killed half way
    again = envs.ensure(["tinypkg"], tmp_path / "envs", name="tiny", pip_args=args)
    assert again.ok and again.created_s > 0


def test_an_inheriting_environment_sees_ours_after_its_own(tmp_path):
    wheels = tmp_path / "wheels"
    make_wheel(wheels)
    env = envs.ensure(["tinypkg"], tmp_path / "envs", name="inh", pip_args=["--no-index", "--find-links", str(wheels)], inherit=True)
    assert env.ok, env.reason
    code = "import tinypkg, filelock, sys; print(tinypkg.__file__.startswith(sys.prefix))"
    out = subprocess.run([str(env.python), "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "True", out.stderr  # its own package, and ours (filelock) beside it
    assert env.path != envs.ensure(["tinypkg"], tmp_path / "envs", name="inh", pip_args=["--no-index", "--find-links", str(wheels)]).path
