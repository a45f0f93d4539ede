"""The one protocol of the package's child processes: a request in, a reply out, both JSON files.

    reply = child.call("pipeline.measure.bench", request, timeout=600, what="the benchmark process")  # parent
    if __name__ == "__main__": raise SystemExit(child.serve(handler))                                  # child

The parent (:func:`call`) writes the request into a private folder and runs
``python -m MODULE REQUEST.json REPLY.json`` (any interpreter: a provider's own environment) in a
process group of its own that dies with the parent (Linux: PR_SET_PDEATHSIG); on a timeout, or
when the parent is interrupted, it kills the whole group.  The child (:func:`serve`) reads the
request, runs the handler with ``sys.stdout`` sent to ``sys.stderr`` and writes the reply file
atomically: ``{"ok": true, "reply": ...}``, or ``{"ok": false, "error": "Type: message",
"traceback": ...}`` when the handler raised (it then exits 1).  The reply is read from that file
only, never from stdout: what the child prints (libraries do) goes to a log whose tail the error
carries.  Every failure is one error, :class:`ChildFailed`: which child, why (exit code, signal,
timeout, no reply, unreadable reply, the handler's exception) and the tail of its output.

A long-lived child speaks the same JSON on a pipe of its own (:class:`Session` / :func:`serve_session`).

Stdlib only, plus the package's core leaves: a provider's own environment (numpy, tokenizers,
onnxruntime and nothing else) imports it.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator

from pipeline.core.errors import PipelineError

TEMP_PREFIX = "child-"  # child-<pid of the parent>-<random>, in the system temp folder
TAIL_LINES = 15


class ChildFailed(PipelineError, RuntimeError):
    """A child process gave no reply: ``what`` it was, ``why`` (exit code, signal, timeout, no or an
    unreadable reply, or ``error``: the exception its handler raised) and ``tail``: its last output."""

    def __init__(
        self, what: str, why: str, tail: str = "", *, returncode: int | None = None, error: str | None = None, timed_out: bool = False
    ):
        self.what, self.why, self.tail = what, why, tail
        self.returncode, self.error, self.timed_out = returncode, error, timed_out
        super().__init__(f"{what} failed: {why}" + (f"\n{tail}" if tail else ""))


# -- the parent side -----------------------------------------------------------------------------------
def call(
    module: str,
    request: Any,
    *,
    what: str,
    timeout: float | None,
    python: str | None = None,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    folder: str | Path | None = None,
    tail_lines: int = TAIL_LINES,
) -> Any:
    """Run ``python -m module REQUEST.json REPLY.json`` once and return its handler's reply.

    ``python``: the interpreter (default: this one); ``env``, ``cwd``: the child's (default: ours);
    ``folder``: where the request, the reply and the child's output log go (the caller's folder,
    e.g. one holding files the child reads; default: a private temporary folder, removed after).
    Raises :class:`ChildFailed`; on a timeout the child's process group is killed first."""
    with _folder(folder) as d:
        req, rep, log = d / "request.json", d / "reply.json", d / "child.log"
        req.write_text(json.dumps(request))
        rep.unlink(missing_ok=True)
        with open(log, "wb") as out:
            proc = start([python or sys.executable, "-m", module, str(req), str(rep)], stdout=out, stderr=out, env=env, cwd=cwd)
            rc, timed_out = _wait(proc, timeout)
        tail = _tail(log, tail_lines)
        if timed_out:
            raise ChildFailed(what, f"no reply within {timeout:g} s: killed with its process group", tail, returncode=rc, timed_out=True)
        return _reply(rep, rc, what, tail)


def start(argv: list[str], **popen) -> subprocess.Popen:
    """A child process in a process group of its own that is killed when this process ends
    (Linux: PR_SET_PDEATHSIG; a parent gone before that was set ends it at once)."""
    prctl, parent = _prctl(), os.getpid()

    def preexec() -> None:  # after fork: no imports, no allocation worth the name
        if prctl is not None:
            prctl(1, signal.SIGKILL, 0, 0, 0)  # 1: PR_SET_PDEATHSIG
            if os.getppid() != parent:
                os._exit(1)

    return subprocess.Popen(argv, stdin=popen.pop("stdin", subprocess.DEVNULL), process_group=0, preexec_fn=preexec, **popen)


def kill_group(proc: subprocess.Popen) -> None:
    """Kill ``proc`` and its process group (what it started), while it is not yet waited for (its
    pid, the group's id, cannot be another's then)."""
    if proc.returncode is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            proc.kill()


def _prctl():
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    return ctypes.CDLL(None, use_errno=True).prctl  # resolved here: the forked child must not import


def _wait(proc: subprocess.Popen, timeout: float | None) -> tuple[int, bool]:
    """(exit code, timed out): the child killed with its group on a timeout or an interruption."""
    try:
        return proc.wait(timeout), False
    except subprocess.TimeoutExpired:
        kill_group(proc)
        return proc.wait(), True
    except BaseException:  # KeyboardInterrupt, a signal turned into an exception: the child goes too
        kill_group(proc)
        proc.wait()
        raise


@contextlib.contextmanager
def _folder(folder: str | Path | None) -> Iterator[Path]:
    if folder is not None:
        yield Path(folder)
        return
    try:  # a killed parent's folders: removed once their owner is provably gone (needs psutil: the main environment)
        from pipeline.core import ownership

        ownership.clean_stale(tempfile.gettempdir(), prefix=TEMP_PREFIX)
    except ImportError:
        ownership = None
    with tempfile.TemporaryDirectory(prefix=f"{TEMP_PREFIX}{os.getpid()}-") as tmp:
        if ownership is not None:
            with contextlib.suppress(ImportError):
                ownership.mark(tmp)
        yield Path(tmp)


def _tail(log: Path, lines: int) -> str:
    try:
        with open(log, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 64 * 1024))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def _exit_reason(rc: int) -> str:
    if rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exit {rc}"


def _reply(rep: Path, rc: int, what: str, tail: str) -> Any:
    try:
        envelope = json.loads(rep.read_text()) if rep.is_file() else None
    except (OSError, ValueError) as exc:
        raise ChildFailed(what, f"unreadable reply ({_exit_reason(rc)}): {exc}", tail, returncode=rc) from None
    if envelope is None:
        raise ChildFailed(what, f"{_exit_reason(rc)} without a reply", tail, returncode=rc)
    if not isinstance(envelope, dict) or "ok" not in envelope:
        raise ChildFailed(what, f"unreadable reply ({_exit_reason(rc)}): not the protocol's envelope", tail, returncode=rc)
    if not envelope["ok"]:
        error = str(envelope.get("error"))
        raise ChildFailed(
            what, f"{error} ({_exit_reason(rc)})", tail or str(envelope.get("traceback", "")).strip(), returncode=rc, error=error
        )
    if rc != 0:  # replied, then died (a crash at exit): not trusted
        raise ChildFailed(what, f"{_exit_reason(rc)} after its reply", tail, returncode=rc)
    return envelope.get("reply")


# -- the child side ------------------------------------------------------------------------------------
def serve(handler: Callable[[Any], Any], argv: list[str] | None = None, *, default: Callable | None = None) -> int:
    """Answer the one request of ``python -m MODULE REQUEST.json REPLY.json``; returns the exit code
    (0: replied; 1: the handler raised, the error replied; 2: no request to read).  ``default``:
    :func:`json.dumps`'s, for values JSON has no type for."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if len(argv) == 3 and argv[0] == "--session":  # started by Session: requests and replies on a pipe pair
        return serve_session(handler, int(argv[1]), int(argv[2]), default=default)
    if len(argv) != 2:
        print("usage: python -m MODULE REQUEST.json REPLY.json (pipeline.core.child)", file=sys.stderr)
        return 2
    req, rep = Path(argv[0]), Path(argv[1])
    try:
        request = json.loads(req.read_text())
        with contextlib.redirect_stdout(sys.stderr):
            reply = handler(request)
        text = json.dumps({"ok": True, "reply": reply}, default=default)
    except Exception as exc:  # noqa: BLE001 - said to the parent, which raises ChildFailed with it
        _write(rep, _error(exc))
        return 1
    finally:
        sys.stderr.flush()
    _write(rep, text)
    return 0


def _error(exc: Exception) -> str:
    """The error envelope of a handler's exception (its traceback printed on stderr too)."""
    traceback.print_exc()
    return json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()})


def _write(path: Path, text: str) -> None:
    """Atomically (a temporary file, then a rename): the parent reads the whole reply or none.
    Not :func:`pipeline.core.cache.write_atomic`: that needs psutil, which a provider's environment lacks."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# -- a long-lived child: the same envelopes, one JSON line each, on a pipe pair of its own --------------
def serve_session(handler: Callable[[Any], Any], req_fd: int, rep_fd: int, *, default: Callable | None = None) -> int:
    """Answer requests (one JSON line each on ``req_fd``) until the parent closes it: one envelope
    line each on ``rep_fd``.  A handler's exception is that request's error reply; the session goes on."""
    with open(req_fd, "rb") as rin, open(rep_fd, "wb", buffering=0) as rout, contextlib.redirect_stdout(sys.stderr):
        for line in rin:
            try:
                text = json.dumps({"ok": True, "reply": handler(json.loads(line))}, default=default)
            except Exception as exc:  # noqa: BLE001 - said to the parent, which raises ChildFailed with it
                text = _error(exc)
            sys.stderr.flush()
            rout.write(text.encode() + b"\n")
    return 0


class Session:
    """A long-lived ``python -m MODULE --session REQ_FD REP_FD`` whose module ends with :func:`serve`
    (the same module answers :func:`call` too): :meth:`request` sends one request and returns its
    reply, one JSON line each way on a pipe pair of its own (never stdout); :meth:`close` ends it
    (end of file on its requests), killing its process group when it does not go.  Started as
    :func:`call` starts a child (own process group, dies with this process).  Every failure is a
    :class:`ChildFailed`; after a timeout or the child's death the session is closed."""

    def __init__(
        self,
        module: str,
        *,
        what: str,
        python: str | None = None,
        env: dict[str, str] | None = None,
        cwd: str | Path | None = None,
        tail_lines: int = TAIL_LINES,
    ):
        self.what, self._lines, self._buf = what, tail_lines, b""
        self._dir = tempfile.TemporaryDirectory(prefix=f"{TEMP_PREFIX}{os.getpid()}-")
        self._log = Path(self._dir.name) / "child.log"
        req_r, self._req_w = os.pipe()
        self._rep_r, rep_w = os.pipe()
        try:
            with open(self._log, "wb") as out:
                self.proc = start(
                    [python or sys.executable, "-m", module, "--session", str(req_r), str(rep_w)],
                    stdout=out,
                    stderr=out,
                    env=env,
                    cwd=cwd,
                    pass_fds=(req_r, rep_w),
                )
        except BaseException:
            os.close(self._req_w)
            os.close(self._rep_r)
            self._dir.cleanup()
            raise
        finally:
            os.close(req_r)
            os.close(rep_w)
        os.set_blocking(self._req_w, False)

    def request(self, request: Any, timeout: float | None = None) -> Any:
        """The reply to ``request``; ``timeout``: seconds for sending it and reading the reply."""
        if self.proc.returncode is not None:
            raise ChildFailed(self.what, "the session is closed", returncode=self.proc.returncode)
        deadline = None if timeout is None else time.monotonic() + timeout
        data = (json.dumps(request) + "\n").encode()
        try:
            while data:
                self._ready(self._req_w, deadline, write=True, timeout=timeout)
                data = data[os.write(self._req_w, data) :]
            while b"\n" not in self._buf:
                self._ready(self._rep_r, deadline, timeout=timeout)
                chunk = os.read(self._rep_r, 1 << 16)
                if not chunk:
                    raise EOFError
                self._buf += chunk
        except (EOFError, BrokenPipeError):
            rc = self._end(kill=False)
            raise ChildFailed(self.what, f"{_exit_reason(rc)} without a reply", self._tail(), returncode=rc) from None
        line, self._buf = self._buf.split(b"\n", 1)
        try:
            envelope = json.loads(line)
            ok, reply = envelope["ok"], envelope.get("reply")
        except (ValueError, KeyError, TypeError) as exc:
            rc = self._end(kill=True)
            raise ChildFailed(self.what, f"unreadable reply: {exc}", self._tail(), returncode=rc) from None
        if not ok:
            error = str(envelope.get("error"))
            raise ChildFailed(self.what, error, str(envelope.get("traceback", "")).strip(), error=error)
        return reply

    def _ready(self, fd: int, deadline: float | None, *, timeout: float | None, write: bool = False) -> None:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready = select.select([], [fd], [], left)[1] if write else select.select([fd], [], [], left)[0]
        if not ready:
            rc = self._end(kill=True)
            raise ChildFailed(
                self.what, f"no reply within {timeout:g} s: killed with its process group", self._tail(), returncode=rc, timed_out=True
            )

    def _tail(self) -> str:
        return _tail(self._log, self._lines)

    def _end(self, kill: bool, timeout: float = 10) -> int:
        """Close the pipes (the child sees the end of its requests) and wait for it: killed with its
        group first when ``kill``, or after ``timeout`` s."""
        if kill:
            kill_group(self.proc)
        for fd in (self._req_w, self._rep_r):
            if fd >= 0:
                os.close(fd)
        self._req_w = self._rep_r = -1
        rc, _ = _wait(self.proc, timeout)
        return rc

    def close(self, timeout: float = 10) -> int:
        """End the session: the child sees the end of its requests; its exit code."""
        rc = self.proc.returncode if self.proc.returncode is not None else self._end(kill=False, timeout=timeout)
        self._dir.cleanup()
        return rc

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
