"""``python -m pipeline.cluster.local``: a real Slurm cluster and a PostgreSQL-backed MLflow server on
this machine, on loopback only, to try (and test) the scale-out path without a data centre.

    sudo python -m pipeline.cluster.local start --dir /tmp/pipeline-cluster   # prints the exports
    eval "$(python -m pipeline.cluster.local env --dir /tmp/pipeline-cluster)"
    python -m pipeline +sweep=smoke hydra/launcher=slurm tracking=shared
    sudo python -m pipeline.cluster.local stop --dir /tmp/pipeline-cluster

Everything lives in ``--dir`` (generated keys and passwords, configs, data, logs) and listens
on free 127.0.0.1 ports; nothing is installed or changed outside it, except that, when run as
root, a system account ``pipeline-db`` is created for PostgreSQL (which refuses to run as root).
It needs the Debian packages ``slurm-wlm slurmdbd munge mariadb-server postgresql``, and gcc for
the loopback shim (``.ci/run`` installs them) and is meant to run as root, like Slurm's own daemons (in a container or a VM).

It is for ONE TRUSTED MACHINE: the daemons bind to 127.0.0.1 (slurmd with
``CommunicationParameters=NoInAddrAny``; slurmctld and slurmdbd, which ignore their settings, through
:mod:`pipeline.cluster.loopback`'s bind shim), but the MLflow server answers any local user without
authentication.  The database password reaches the MLflow server through ``PGPASSWORD``, never
its command line; ``stop`` signals a daemon only while its pid, start time and command line are
those ``start`` recorded (after a crash or a reboot the pid may be another process's).

The daemons, in start order:

- ``munged`` with a key generated for this cluster (Slurm's authentication);
- ``mariadbd`` + ``slurmdbd``: Slurm's accounting, which is what ``sacct`` reads and what
  submitit asks for every job's state (without it a cancelled job is never seen to end);
- ``slurmctld`` + ``slurmd``: one node with this machine's CPUs, ``proctrack/linuxproc`` and
  ``task/none`` (no cgroups needed), state and spool under ``--dir``;
- ``postgres`` (initdb in ``--dir``), and ``mlflow server --backend-store-uri postgresql://...
  --artifacts-destination <dir>/artifacts``.

:class:`LocalCluster` is the same thing for the tests (``tests/test_cluster.py``), which also
stop and restart single daemons (``stop_daemon``/``start_daemon``) to inject faults.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipeline.cluster.daemons import PARTITION, ClusterError, SlurmDaemons, TrackingServer, _free_port, _pg_bin, _which
from pipeline.core import ownership

# the binaries, by Debian package (what .ci/run installs)
NEEDED = {
    "munged": "munge",
    "slurmctld": "slurmctld",
    "slurmd": "slurmd",
    "slurmdbd": "slurmdbd",
    "sbatch": "slurm-client",
    "sacct": "slurm-client",
    "sacctmgr": "slurm-client",
    "mariadbd": "mariadb-server",
    "mariadb-install-db": "mariadb-server",
    "initdb": "postgresql",
    "pg_ctl": "postgresql",
}
DAEMONS = ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd", "postgres", "mlflow")


def missing() -> list[str]:
    """The binaries this cluster needs that are not installed, as 'name (package)'."""
    return [f"{b} ({pkg})" for b, pkg in NEEDED.items() if _which(b) is None]


def _version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "unknown"


def versions() -> dict[str, str]:
    """What this cluster runs (docs/scale-out.md quotes these)."""

    out = {
        "slurm": _version([_which("slurmctld") or "slurmctld", "-V"]),
        "munge": _version([_which("munged") or "munged", "-V"]),
        "mariadb": _version([_which("mariadbd") or "mariadbd", "--version"]),
        "postgresql": _version([_pg_bin("postgres") or "postgres", "--version"]),
    }
    for pkg in ("mlflow", "submitit", "hydra-submitit-launcher", "psycopg2-binary"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


class LocalCluster(SlurmDaemons, TrackingServer):
    """The cluster in ``root``; its ports, password and daemons' pids in ``root/cluster.json``."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self.state_file = self.root / "cluster.json"
        try:
            self.state: dict = json.loads(self.state_file.read_text()) if self.state_file.exists() else {}
        except (OSError, ValueError) as exc:
            raise ClusterError(
                f"{self.state_file} cannot be read ({type(exc).__name__}: {exc}): stop its daemons by hand "
                f"(their pids are in {self.root / 'slurm'}/*.pid and {self.root / 'pg' / 'data' / 'postmaster.pid'})"
            ) from None

    # -- paths and addresses ------------------------------------------------------------------
    @property
    def slurm_conf(self) -> Path:
        return self.root / "slurm" / "slurm.conf"

    @property
    def tracking_uri(self) -> str:
        return f"http://127.0.0.1:{self.state['ports']['mlflow']}"

    @property
    def db_uri(self) -> str:
        """The MLflow server's backend store, without its password: that goes through the
        environment (:meth:`db_env`), never a command line every local user sees in ``ps``."""
        return f"postgresql+psycopg2://mlflow@127.0.0.1:{self.state['ports']['postgres']}/mlflow"

    def db_env(self) -> dict[str, str]:
        return {"PGPASSWORD": self.state["pg_password"]}  # libpq reads it when the URI has no password

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    def env(self) -> dict[str, str]:
        """What a shell (or a test's subprocess) needs to use this cluster."""
        return {"SLURM_CONF": str(self.slurm_conf), "MLFLOW_TRACKING_URI": self.tracking_uri}

    def log(self, name: str) -> Path:
        return self.root / "logs" / f"{name}.log"

    def _save(self) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=2))
        tmp.chmod(0o600)
        tmp.replace(self.state_file)

    def _run(
        self, cmd: list[str], *, user: str | None = None, timeout: float = 120, env: dict | None = None, check: bool = True
    ) -> subprocess.CompletedProcess:
        kw = {"user": user} if user and os.geteuid() == 0 else {}
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {}), **self.env_if_ready()}, **kw
        )
        if check and proc.returncode != 0:
            raise ClusterError(f"{' '.join(cmd[:3])} failed ({proc.returncode}): {(proc.stderr or proc.stdout)[-1500:]}")
        return proc

    def env_if_ready(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.slurm_conf)} if self.slurm_conf.exists() else {}

    # -- start ---------------------------------------------------------------------------------
    def start(self, timeout: float = 180) -> "LocalCluster":
        gone = missing()
        if gone:
            raise ClusterError(
                "not installed: " + ", ".join(gone) + " (apt-get install slurm-wlm slurmdbd munge mariadb-server postgresql)"
            )
        if os.geteuid() != 0:
            raise ClusterError(
                "run as root (in a container or VM): slurmd starts jobs as their user and munged, "
                "slurmctld and slurmd are set up to run as root here"
            )
        if self.state.get("pids"):
            raise ClusterError(f"a cluster is already set up in {self.root}; stop it first")
        for sub in ("logs", "munge", "slurm/state", "slurm/spool", "mysql", "pg", "artifacts"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)  # the database account must reach pg/ (only pg/ is its own)
        self.state = {
            "ports": {k: _free_port() for k in ("slurmctld", "slurmd", "slurmdbd", "mariadb", "postgres", "mlflow")},
            "pg_password": secrets.token_hex(16),
            "db_password": secrets.token_hex(16),
            "cpus": os.cpu_count() or 1,
            "pids": {},
        }
        self._save()
        try:
            for name in DAEMONS:
                self.start_daemon(name, timeout=timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def start_daemon(self, name: str, timeout: float = 180) -> None:
        """Start one daemon (the first start also sets it up) and wait until it answers."""
        getattr(self, f"_start_{name}")(timeout)
        self._save()

    def _spawn(self, name: str, cmd: list[str], user: str | None = None, env: dict | None = None) -> int:
        logf = open(self.log(name), "a")
        kw = {"user": user} if user else {}
        proc = subprocess.Popen(
            cmd,
            stdout=logf,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **(env or {})},
            cwd=self.root,
            **kw,
        )
        logf.close()
        self.state["pids"][name] = proc.pid
        self._remember(name, proc.pid)
        self._save()
        self._procs = getattr(self, "_procs", {})
        self._procs[name] = proc  # reaped by stop_daemon (no zombie left behind in this process)
        return proc.pid

    def _remember(self, name: str, pid: int) -> None:
        """Record who ``pid`` is (start time, command line): :meth:`stop_daemon` signals it only
        while it is still that process (after a crash or a reboot the pid may be another's)."""
        try:
            self.state.setdefault("identity", {})[name] = ownership.process_identity(pid)
        except Exception:  # noqa: BLE001  (gone already: _wait reports it)
            self.state.setdefault("identity", {}).pop(name, None)

    def _wait(self, name: str, ready, timeout: float) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            pid = self.state["pids"].get(name)
            proc = getattr(self, "_procs", {}).get(name)
            if proc is not None and proc.poll() is not None:
                raise ClusterError(f"{name} exited ({proc.returncode}); see {self.log(name)}:\n{self._tail(name)}")
            if pid is None and proc is None and name not in ("postgres",):
                raise ClusterError(f"{name} is not running")
            try:
                if ready():
                    return
            except (OSError, subprocess.SubprocessError):
                pass
            time.sleep(0.5)
        raise ClusterError(f"{name} did not answer within {timeout:.0f} s; see {self.log(name)}:\n{self._tail(name)}")

    def _tail(self, name: str) -> str:
        try:
            return self.log(name).read_text()[-2000:]
        except OSError:
            return ""

    # munge: a key of our own, a socket in our folder
    def stop_daemon(self, name: str, sig: int = signal.SIGTERM, wait: float = 30) -> None:
        """Stop one daemon (``SIGKILL``: as if it crashed)."""
        if name == "postgres":
            self._stop_postgres()
            self.state["pids"].pop(name, None)
            self._save()
            return
        pid = self.state.get("pids", {}).pop(name, None)
        identity = self.state.get("identity", {}).pop(name, None)
        proc = getattr(self, "_procs", {}).pop(name, None)
        self._save()
        if pid is None:
            return
        if proc is None and (identity is None or not ownership.same_process(identity)):
            print(
                f"[cluster] {name}: pid {pid} is no longer the {name} this cluster started "
                "(it exited, or the machine restarted): not signalled",
                flush=True,
            )
            return
        try:
            os.killpg(pid, sig)  # each daemon leads its own session (mlflow's workers included)
        except ProcessLookupError:
            return
        deadline = time.time() + wait
        while time.time() < deadline:
            if proc is not None and proc.poll() is not None:
                return
            if proc is None and not _alive(pid):
                return
            time.sleep(0.2)
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if proc is not None:
            proc.wait(10)

    def stop(self) -> None:
        """Stop every daemon, newest first; the folder (logs, data) stays for a look."""
        for name in reversed(DAEMONS):
            if name in self.state.get("pids", {}):
                self.stop_daemon(name)
        if self.state:
            self.state["pids"] = {}
            self.state["identity"] = {}
            self._save()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (not our child) is gone for our purpose
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


def _exports(cluster: LocalCluster) -> str:
    return "\n".join(f"export {k}={v}" for k, v in cluster.env().items())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline.cluster.local", description=__doc__.split("\n\n")[0])
    ap.add_argument("action", choices=("start", "stop", "env", "versions"))
    ap.add_argument("--dir", help="the cluster's folder (start: default a new temporary folder)")
    args = ap.parse_args(argv)
    if args.action == "versions":
        print(json.dumps(versions(), indent=2))
        return 0
    if args.action == "start":
        root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="pipeline-cluster-"))
        try:
            cluster = LocalCluster(root).start()
        except ClusterError as exc:
            print(f"cluster: {exc}", file=sys.stderr)
            return 1
        print(
            f"# cluster in {root}: slurm partition {PARTITION!r}, MLflow at {cluster.tracking_uri}\n"
            f"# stop it with: python -m pipeline.cluster.local stop --dir {root}",
            file=sys.stderr,
        )
        print(_exports(cluster))
        return 0
    if not args.dir or not (Path(args.dir) / "cluster.json").exists():
        print("cluster: --dir must name a cluster folder (one `start` made)", file=sys.stderr)
        return 1
    try:
        cluster = LocalCluster(args.dir)
    except ClusterError as exc:
        print(f"cluster: {exc}", file=sys.stderr)
        return 1
    if args.action == "env":
        print(_exports(cluster))
    else:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
