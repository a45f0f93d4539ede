"""Keep daemons that ignore their bind address on loopback: an ``LD_PRELOAD`` shim for ``bind``.

Slurm 22.05's slurmdbd and one of slurmctld's sockets bind to every address, whatever
``DbdAddr`` and ``CommunicationParameters=NoInAddrAny`` say.  The local cluster is for one
trusted machine, so they must listen on loopback only.  No Slurm setting does that, so this
module builds a small shared library that ``bind()`` goes through.  It turns a bind to the
wildcard address (0.0.0.0, or ::) into a bind to loopback (127.0.0.1, or ::1) and passes every
other bind unchanged.  The library is compiled once with the machine's C compiler into the
cluster's folder.  Without a compiler, :func:`build` says why, and the cluster reports those
daemons as listening on every address. It never says they are on loopback.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

SOURCE = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

typedef int (*bind_fn)(int, const struct sockaddr *, socklen_t);

int bind(int fd, const struct sockaddr *addr, socklen_t len) {
    static bind_fn real = 0;
    if (!real) real = (bind_fn)dlsym(RTLD_NEXT, "bind");
    if (addr && addr->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        struct sockaddr_in a;
        memcpy(&a, addr, sizeof a);
        if (a.sin_addr.s_addr == htonl(INADDR_ANY)) {
            a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            return real(fd, (const struct sockaddr *)&a, sizeof a);
        }
    } else if (addr && addr->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 a;
        memcpy(&a, addr, sizeof a);
        if (!memcmp(&a.sin6_addr, &in6addr_any, sizeof a.sin6_addr)) {
            a.sin6_addr = in6addr_loopback;
            return real(fd, (const struct sockaddr *)&a, sizeof a);
        }
    }
    return real(fd, addr, len);
}
"""


def compiler() -> str | None:
    return next((c for c in (shutil.which("cc"), shutil.which("gcc"), shutil.which("clang")) if c), None)


def build(folder: Path) -> tuple[Path | None, str | None]:
    """The shim's shared library in ``folder`` (built once per source), or (None, why not)."""
    cc = compiler()
    if cc is None:
        return None, "no C compiler (cc, gcc or clang) to build the loopback shim; install one (apt-get install gcc)"
    folder.mkdir(parents=True, exist_ok=True)
    lib = folder / f"bind_loopback-{hashlib.sha256(SOURCE.encode()).hexdigest()[:12]}.so"
    if lib.exists():
        return lib, None
    src = folder / "bind_loopback.c"
    src.write_text(SOURCE)
    tmp = lib.with_suffix(".so.tmp")
    done = subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(tmp), str(src), "-ldl"], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        return None, f"the loopback shim did not compile ({cc}): {(done.stderr or done.stdout).strip()[-500:]}"
    tmp.replace(lib)
    return lib, None


def preload_env(lib: Path | None, env: dict | None = None) -> dict:
    """``env`` with the shim preloaded in front of any ``LD_PRELOAD`` already set, in ``env`` or in
    this process's environment (``lib`` None: unchanged)."""
    env = dict(env or {})
    if lib is not None:
        env["LD_PRELOAD"] = " ".join(p for p in (str(lib), env.get("LD_PRELOAD", os.environ.get("LD_PRELOAD", ""))) if p)
    return env
