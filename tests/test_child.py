"""The one protocol of the package's child processes (pipeline/core/child.py): a request in, a reply
out, every failure one ChildFailed that says which child, why, and what it last wrote.

Each child is a tiny module written into tmp_path and run with ``python -m`` (tmp_path on PYTHONPATH)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pipeline.core import child
from pipeline.core.child import ChildFailed

ROOT = Path(__file__).resolve().parent.parent

SERVE = """
from pipeline.core import child
if __name__ == "__main__":
    raise SystemExit(child.serve(handle))
"""


def _child(tmp_path: Path, name: str, body: str, serve: bool = True) -> dict:
    """Write module ``name`` (``body``, then the serve line) into tmp_path; returns the env that finds it."""
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(body) + (SERVE if serve else ""))
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}


def _gone(pid: int, within_s: float = 5.0) -> bool:
    """No process ``pid`` (or only its zombie, waiting for a parent that is not ours to reap it)."""
    deadline = time.time() + within_s
    while time.time() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


def test_a_child_replies_with_its_handlers_answer(tmp_path):
    env = _child(
        tmp_path,
        "echo_child",
        """
        import os
        def handle(request):
            return {"echo": request, "cwd": os.getcwd()}
    """,
    )
    (tmp_path / "work").mkdir()
    request = {"texts": ["a", "b"], "n": 3, "nested": {"x": [1.5, None]}}
    reply = child.call("echo_child", request, what="echo", timeout=60, env=env, cwd=tmp_path / "work")
    assert reply == {"echo": request, "cwd": str(tmp_path / "work")}


def test_the_reply_is_the_handlers_whatever_the_child_prints(tmp_path):
    fake = '{"ok": true, "reply": {"forged": 1}}'
    env = _child(
        tmp_path,
        "noisy_child",
        f"""
        import os, sys
        print({fake!r}); print("not json at all {{")  # at import, before serve
        def handle(request):
            print({fake!r}); print("[1, 2, 3]")
            os.write(1, b'{fake}\\n')  # below sys.stdout: the file descriptor itself
            sys.stdout.flush()
            return {{"real": request["n"]}}
    """,
    )
    assert child.call("noisy_child", {"n": 7}, what="noisy", timeout=60, env=env) == {"real": 7}


def test_a_child_that_exits_without_replying_is_a_failure_with_its_exit_code_and_output(tmp_path):
    env = _child(
        tmp_path,
        "exit_child",
        """
        import os, sys
        def handle(request):
            print("the last words of the child", file=sys.stderr, flush=True)
            os._exit(3)
    """,
    )
    with pytest.raises(ChildFailed) as e:
        child.call("exit_child", {}, what="the exiting child", timeout=60, env=env)
    assert e.value.returncode == 3 and "exit 3 without a reply" in str(e.value)
    assert str(e.value).startswith("the exiting child failed")
    assert "the last words of the child" in e.value.tail and "the last words of the child" in str(e.value)


def test_a_child_killed_by_a_signal_is_a_failure_naming_the_signal(tmp_path):
    env = _child(
        tmp_path,
        "killed_child",
        """
        import os, signal, sys
        def handle(request):
            print("about to be killed", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
    """,
    )
    with pytest.raises(ChildFailed) as e:
        child.call("killed_child", {}, what="killed", timeout=60, env=env)
    assert e.value.returncode == -signal.SIGKILL and "killed by SIGKILL" in str(e.value)
    assert "about to be killed" in e.value.tail


def test_a_child_that_hangs_is_killed_with_what_it_started_after_the_timeout(tmp_path):
    env = _child(
        tmp_path,
        "hung_child",
        f"""
        import os, subprocess, time
        from pathlib import Path
        def handle(request):
            grandchild = subprocess.Popen(["sleep", "60"])
            Path({str(tmp_path / "pids")!r}).write_text(f"{{os.getpid()}} {{grandchild.pid}}")
            time.sleep(60)
    """,
    )
    t0 = time.monotonic()
    with pytest.raises(ChildFailed) as e:
        child.call("hung_child", {}, what="hung", timeout=3, env=env)
    assert time.monotonic() - t0 < 20
    assert e.value.timed_out and "no reply within 3 s" in str(e.value)
    pid, grandchild = map(int, (tmp_path / "pids").read_text().split())
    assert _gone(pid) and _gone(grandchild), "the hung child or what it started outlived the timeout"


def test_a_handler_that_raises_is_a_failure_carrying_its_message(tmp_path):
    env = _child(
        tmp_path,
        "raising_child",
        """
        def handle(request):
            raise ValueError(f"no such model {request['model']!r}")
    """,
    )
    with pytest.raises(ChildFailed) as e:
        child.call("raising_child", {"model": "m9"}, what="raising", timeout=60, env=env)
    assert e.value.error == "ValueError: no such model 'm9'" and e.value.returncode == 1
    assert "ValueError: no such model 'm9'" in str(e.value) and "Traceback" in e.value.tail


def test_a_child_that_exits_0_without_a_reply_or_with_a_broken_one_is_a_failure(tmp_path):
    env = _child(tmp_path, "silent_child", 'print(\'{"ok": true, "reply": 1}\')\n', serve=False)
    with pytest.raises(ChildFailed, match="exit 0 without a reply"):
        child.call("silent_child", {}, what="silent", timeout=60, env=env)
    env = _child(
        tmp_path,
        "broken_child",
        """
        import os, sys
        def handle(request):
            open(sys.argv[2], "w").write('{"ok": true, "rep')
            os._exit(0)
    """,
    )
    with pytest.raises(ChildFailed, match="unreadable reply"):
        child.call("broken_child", {}, what="broken", timeout=60, env=env)


def test_a_child_dies_with_its_parent(tmp_path):
    env = _child(
        tmp_path,
        "sleepy_child",
        f"""
        import os, time
        from pathlib import Path
        def handle(request):
            Path({str(tmp_path / "pid")!r}).write_text(str(os.getpid()))
            time.sleep(60)
    """,
    )
    script = "from pipeline.core import child; child.call('sleepy_child', {}, what='sleepy', timeout=120)"
    parent = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        deadline = time.time() + 30
        while not (tmp_path / "pid").is_file() and time.time() < deadline:
            time.sleep(0.05)
        pid = int((tmp_path / "pid").read_text())
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        assert _gone(pid), "the child outlived its killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()


def test_serve_refuses_a_command_line_without_its_two_files(capsys):
    assert child.serve(lambda r: r, argv=["only-one.json"]) == 2
    assert "REQUEST.json REPLY.json" in capsys.readouterr().err


# -- a long-lived child: Session --------------------------------------------------------------------
COUNTER = """
import os, sys
seen = []
print('{"ok": true, "reply": "forged"}')  # at import: stdout is not the session's pipe
def handle(request):
    print('{"ok": true, "reply": "forged"}', flush=True)
    if request.get("raise"):
        raise KeyError(request["raise"])
    if request.get("die"):
        print("dying now", file=sys.stderr, flush=True)
        os._exit(request["die"])
    if request.get("sleep"):
        import time; time.sleep(request["sleep"])
    seen.append(request["n"])
    return {"pid": os.getpid(), "seen": list(seen)}
"""


def test_a_session_answers_many_requests_in_one_process_and_survives_a_handlers_error(tmp_path):
    env = _child(tmp_path, "counter_child", COUNTER)
    with child.Session("counter_child", what="counter", env=env) as s:
        a = s.request({"n": 1}, timeout=60)
        with pytest.raises(ChildFailed) as e:
            s.request({"raise": "no such key"}, timeout=60)
        assert e.value.error == "KeyError: 'no such key'"
        b = s.request({"n": 2, "big": "x" * 300_000}, timeout=60)  # beyond a pipe's buffer
    assert a["pid"] == b["pid"] and b["seen"] == [1, 2]
    assert s.proc.returncode == 0


def test_a_session_whose_child_dies_or_hangs_fails_and_leaves_no_process(tmp_path):
    env = _child(tmp_path, "counter_child", COUNTER)
    s = child.Session("counter_child", what="counter", env=env)
    with pytest.raises(ChildFailed) as e:
        s.request({"die": 4}, timeout=60)
    assert e.value.returncode == 4 and "exit 4 without a reply" in str(e.value) and "dying now" in e.value.tail
    with pytest.raises(ChildFailed, match="closed"):
        s.request({"n": 1})
    s.close()
    s = child.Session("counter_child", what="counter", env=env)
    pid = s.request({"n": 1}, timeout=60)["pid"]
    with pytest.raises(ChildFailed) as e:
        s.request({"sleep": 60, "n": 2}, timeout=2)
    assert e.value.timed_out and _gone(pid)
    s.close()
