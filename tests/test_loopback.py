"""Issue 28, break 23: daemons that bind to every address whatever their config says are kept on
loopback by the ``bind`` shim of :mod:`pipeline.cluster.loopback`."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipeline.cluster import loopback

PROBE = (
    "import socket\n"
    "s = socket.socket(); s.bind(('0.0.0.0', 0)); print(s.getsockname()[0])\n"
    "t = socket.socket(); t.bind(('127.0.0.1', 0)); print(t.getsockname()[0])\n"
    "u = socket.socket(socket.AF_UNIX); u.bind(''); print('unix ok')\n"
    "try:\n    v = socket.socket(socket.AF_INET6); v.bind(('::', 0)); print(v.getsockname()[0])\n"
    "except OSError:\n    print('no ipv6')\n"
)


def _bound(env) -> list[str]:
    return subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True).stdout.split()


@pytest.mark.skipif(loopback.compiler() is None, reason="no C compiler on this machine")
def test_a_wildcard_bind_lands_on_loopback_and_other_binds_are_unchanged(tmp_path):
    import os

    lib, why = loopback.build(tmp_path)
    assert why is None and lib is not None and lib.exists()
    plain = _bound(dict(os.environ))
    assert plain[0] == "0.0.0.0"  # without the shim: every address
    shimmed = _bound(loopback.preload_env(lib, dict(os.environ)))
    assert shimmed[0] == "127.0.0.1" and shimmed[1] == "127.0.0.1" and shimmed[2:4] == ["unix", "ok"]
    assert shimmed[4] in ("::1", "no")
    again, _ = loopback.build(tmp_path)
    assert again == lib  # built once


def test_without_a_compiler_the_shim_says_why_and_changes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(loopback.shutil, "which", lambda name: None)
    lib, why = loopback.build(tmp_path)
    assert lib is None and "no C compiler" in why
    assert loopback.preload_env(None, {"A": "1"}) == {"A": "1"}


def test_the_shim_goes_in_front_of_a_preload_already_set(tmp_path, monkeypatch):
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/other.so")
    env = loopback.preload_env(tmp_path / "shim.so", {})
    assert env["LD_PRELOAD"] == f"{tmp_path / 'shim.so'} /usr/lib/other.so"
