"""``python -m pipeline.cluster``: a real Slurm cluster and a PostgreSQL-backed MLflow server on
this machine, on loopback only, to try (and test) the scale-out path without a data centre.

    sudo python -m pipeline.cluster start --dir /tmp/pipeline-cluster   # prints the exports
    eval "$(python -m pipeline.cluster env --dir /tmp/pipeline-cluster)"
    python -m pipeline +sweep=smoke hydra/launcher=slurm tracking=shared
    sudo python -m pipeline.cluster stop --dir /tmp/pipeline-cluster

Everything lives in ``--dir`` (generated keys and passwords, configs, data, logs) and listens
on free 127.0.0.1 ports; nothing is installed or changed outside it, except that, when run as
root, a system account ``pipeline-db`` is created for PostgreSQL (which refuses to run as root).
It needs the Debian packages ``slurm-wlm slurmdbd munge mariadb-server postgresql`` (``.ci/run``
installs them) and is meant to run as root, like Slurm's own daemons (in a container or a VM).

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
import glob
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

DB_USER = "pipeline-db"  # the system account PostgreSQL runs as when we are root
CLUSTER_NAME = "pipeline"
PARTITION = "debug"
NODE = "pipeline-node"
# the binaries, by Debian package (what .ci/run installs)
NEEDED = {
    "munged": "munge", "slurmctld": "slurmctld", "slurmd": "slurmd", "slurmdbd": "slurmdbd",
    "sbatch": "slurm-client", "sacct": "slurm-client", "sacctmgr": "slurm-client",
    "mariadbd": "mariadb-server", "mariadb-install-db": "mariadb-server", "initdb": "postgresql", "pg_ctl": "postgresql",
}
DAEMONS = ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd", "postgres", "mlflow")


class ClusterError(RuntimeError):
    """A daemon did not start or answer; the message names its log file."""


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    cands = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return cands[-1] if cands else None


def _which(name: str) -> str | None:
    if name in ("initdb", "pg_ctl", "postgres"):
        return _pg_bin(name)
    return shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if os.access(p, os.X_OK)), None)


def missing() -> list[str]:
    """The binaries this cluster needs that are not installed, as 'name (package)'."""
    return [f"{b} ({pkg})" for b, pkg in NEEDED.items() if _which(b) is None]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "unknown"


def versions() -> dict[str, str]:
    """What this cluster runs (README "Scale out" quotes these)."""
    import importlib.metadata as md

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


class LocalCluster:
    """The cluster in ``root``; its ports, password and daemons' pids in ``root/cluster.json``."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self.state_file = self.root / "cluster.json"
        self.state: dict = json.loads(self.state_file.read_text()) if self.state_file.exists() else {}

    # -- paths and addresses ------------------------------------------------------------------
    @property
    def slurm_conf(self) -> Path:
        return self.root / "slurm" / "slurm.conf"

    @property
    def tracking_uri(self) -> str:
        return f"http://127.0.0.1:{self.state['ports']['mlflow']}"

    @property
    def db_uri(self) -> str:
        s = self.state
        return f"postgresql+psycopg2://mlflow:{s['pg_password']}@127.0.0.1:{s['ports']['postgres']}/mlflow"

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

    def _run(self, cmd: list[str], *, user: str | None = None, timeout: float = 120, env: dict | None = None,
             check: bool = True) -> subprocess.CompletedProcess:
        kw = {"user": user} if user and os.geteuid() == 0 else {}
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {}), **self.env_if_ready()}, **kw)
        if check and proc.returncode != 0:
            raise ClusterError(f"{' '.join(cmd[:3])} failed ({proc.returncode}): {(proc.stderr or proc.stdout)[-1500:]}")
        return proc

    def env_if_ready(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.slurm_conf)} if self.slurm_conf.exists() else {}

    # -- start ---------------------------------------------------------------------------------
    def start(self, timeout: float = 180) -> "LocalCluster":
        gone = missing()
        if gone:
            raise ClusterError("not installed: " + ", ".join(gone) + " (apt-get install slurm-wlm slurmdbd munge mariadb-server postgresql)")
        if os.geteuid() != 0:
            raise ClusterError("run as root (in a container or VM): slurmd starts jobs as their user and munged, "
                               "slurmctld and slurmd are set up to run as root here")
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
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env={**os.environ, **(env or {})}, cwd=self.root, **kw)
        logf.close()
        self.state["pids"][name] = proc.pid
        self._save()
        self._procs = getattr(self, "_procs", {})
        self._procs[name] = proc  # reaped by stop_daemon (no zombie left behind in this process)
        return proc.pid

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
    def _start_munged(self, timeout: float) -> None:
        m = self.root / "munge"
        m.chmod(0o711)  # clients reach the socket; the key stays root's (0400)
        key = m / "munge.key"
        if not key.exists():
            key.write_bytes(secrets.token_bytes(1024))
            key.chmod(0o400)
        sock = m / "munge.socket.2"
        self._spawn("munged", [_which("munged"), "-F", "--force", f"--socket={sock}", f"--key-file={key}",
                               f"--pid-file={m / 'munged.pid'}", f"--seed-file={m / 'munged.seed'}",
                               f"--log-file={self.log('munged')}"])

        def ready() -> bool:
            enc = subprocess.run(["munge", "-n", "-S", str(sock)], capture_output=True, timeout=10)
            return enc.returncode == 0 and subprocess.run(["unmunge", "-S", str(sock)], input=enc.stdout,
                                                          capture_output=True, timeout=10).returncode == 0
        self._wait("munged", ready, timeout)

    # MariaDB: Slurm's accounting store (slurmdbd supports no other)
    def _start_mariadbd(self, timeout: float) -> None:
        d = self.root / "mysql"
        data, sock = d / "data", d / "mysqld.sock"
        fresh = not data.exists()
        if fresh:
            self._run([_which("mariadb-install-db"), "--no-defaults", f"--datadir={data}", "--user=root",
                       "--auth-root-authentication-method=socket", "--skip-test-db"], timeout=300)
        self._spawn("mariadbd", [_which("mariadbd"), "--no-defaults", f"--datadir={data}", f"--socket={sock}",
                                 f"--port={self.state['ports']['mariadb']}", "--bind-address=127.0.0.1", "--user=root",
                                 f"--pid-file={d / 'mysqld.pid'}", "--innodb-buffer-pool-size=64M",
                                 "--innodb-lock-wait-timeout=900", "--skip-name-resolve"])
        self._wait("mariadbd", lambda: self._run(["mariadb", "--no-defaults", f"--socket={sock}", "-u", "root", "-e",
                                                  "SELECT 1"], check=False).returncode == 0, timeout)
        if fresh:
            pw = self.state["db_password"]
            self._run(["mariadb", "--no-defaults", f"--socket={sock}", "-u", "root", "-e",
                       f"CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '{pw}'; "
                       "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"])

    def _write_slurm_confs(self) -> None:
        s, host = self.state, socket.gethostname().split(".")[0]
        p = s["ports"]
        sd = self.root / "slurm"
        logs = self.root / "logs"
        self.slurm_conf.write_text(
            "# written by pipeline.cluster: a one-node cluster on loopback\n"
            f"ClusterName={CLUSTER_NAME}\n"
            f"SlurmctldHost={host}(127.0.0.1)\n"
            f"SlurmctldPort={p['slurmctld']}\nSlurmdPort={p['slurmd']}\n"
            "SlurmUser=root\nSlurmdUser=root\n"
            f"AuthType=auth/munge\nAuthInfo=socket={self.root / 'munge' / 'munge.socket.2'}\n"
            "CredType=cred/munge\n"
            f"StateSaveLocation={sd / 'state'}\nSlurmdSpoolDir={sd / 'spool'}\n"
            f"SlurmctldPidFile={sd / 'slurmctld.pid'}\nSlurmdPidFile={sd / 'slurmd.pid'}\n"
            f"SlurmctldLogFile={logs / 'slurmctld.log'}\nSlurmdLogFile={logs / 'slurmd.log'}\n"
            "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n"
            "JobAcctGatherType=jobacct_gather/none\n"
            "AccountingStorageType=accounting_storage/slurmdbd\n"
            f"AccountingStorageHost=127.0.0.1\nAccountingStoragePort={p['slurmdbd']}\n"
            # clients (sacct, sacctmgr, slurmctld) reach slurmdbd with munge at this socket
            f"AccountingStoragePass={self.root / 'munge' / 'munge.socket.2'}\n"
            "JobCompType=jobcomp/none\n"
            "SchedulerType=sched/backfill\nSelectType=select/cons_tres\nSelectTypeParameters=CR_Core\n"
            "MpiDefault=none\nReturnToService=2\n"
            # a stopped slurmd is noticed within a minute; a cancelled job is killed 5 s after SIGTERM
            "SlurmdTimeout=30\nSlurmctldTimeout=30\nKillWait=5\nMinJobAge=600\n"
            "SchedulerParameters=batch_sched_delay=1\n"
            f"NodeName={NODE} NodeHostname={host} NodeAddr=127.0.0.1 CPUs={s['cpus']} State=UNKNOWN\n"
            f"PartitionName={PARTITION} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP OverSubscribe=EXCLUSIVE\n"
        )
        dbd = sd / "slurmdbd.conf"
        dbd.write_text(
            f"DbdHost={host}\nDbdAddr=127.0.0.1\nDbdPort={p['slurmdbd']}\nSlurmUser=root\n"
            f"AuthType=auth/munge\nAuthInfo=socket={self.root / 'munge' / 'munge.socket.2'}\n"
            f"LogFile={logs / 'slurmdbd.log'}\nPidFile={sd / 'slurmdbd.pid'}\n"
            "StorageType=accounting_storage/mysql\n"
            f"StorageHost=127.0.0.1\nStoragePort={p['mariadb']}\nStorageUser=slurm\n"
            f"StoragePass={s['db_password']}\nStorageLoc=slurm_acct_db\n"
        )
        dbd.chmod(0o600)  # slurmdbd refuses a readable config (it holds the password)

    def _start_slurmdbd(self, timeout: float) -> None:
        self._write_slurm_confs()
        env = {"SLURM_CONF": str(self.slurm_conf)}
        self._spawn("slurmdbd", [_which("slurmdbd"), "-D"], env={**env, "SLURMDBD_CONF": str(self.root / "slurm" / "slurmdbd.conf")})

        def ready() -> bool:
            with socket.create_connection(("127.0.0.1", self.state["ports"]["slurmdbd"]), timeout=1):
                pass
            return self._run(["sacctmgr", "-n", "list", "cluster"], check=False, timeout=30).returncode == 0
        self._wait("slurmdbd", ready, timeout)
        listed = self._run(["sacctmgr", "-n", "-P", "list", "cluster", "format=cluster"], timeout=30).stdout.split()
        if CLUSTER_NAME not in listed:
            self._run(["sacctmgr", "-i", "add", "cluster", CLUSTER_NAME], timeout=30)

    def _start_slurmctld(self, timeout: float) -> None:
        self._spawn("slurmctld", [_which("slurmctld"), "-D", "-f", str(self.slurm_conf)])
        self._wait("slurmctld", lambda: self._run(["scontrol", "ping"], check=False, timeout=15).stdout.count("UP") > 0,
                   timeout)

    def _start_slurmd(self, timeout: float) -> None:
        self._spawn("slurmd", [_which("slurmd"), "-D", "-N", NODE, "-f", str(self.slurm_conf)])

        def ready() -> bool:
            st = self._run(["sinfo", "-h", "-n", NODE, "-o", "%T"], check=False, timeout=15).stdout.strip()
            if st.rstrip("*") in ("down", "drained", "draining", "fail"):
                self._run(["scontrol", "update", f"NodeName={NODE}", "State=RESUME"], check=False, timeout=15)
            return st in ("idle", "mixed", "allocated")
        self._wait("slurmd", ready, timeout)

    def node_state(self) -> str:
        return self._run(["sinfo", "-h", "-n", NODE, "-o", "%T"], check=False, timeout=15).stdout.strip()

    # PostgreSQL: not as root (it refuses); a password for loopback TCP, generated here
    def _db_user(self) -> str | None:
        if os.geteuid() != 0:
            return None
        import pwd

        try:
            pwd.getpwnam(DB_USER)
        except KeyError:
            subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin",
                            DB_USER], check=True, capture_output=True)
        return DB_USER

    def _start_postgres(self, timeout: float) -> None:
        user = self._db_user()
        pg = self.root / "pg"
        data = pg / "data"
        if user:
            shutil.chown(pg, user, user)
        pg.chmod(0o700)
        if not data.exists():
            pwfile = pg / "pw"
            pwfile.write_text(self.state["pg_password"] + "\n")
            if user:
                shutil.chown(pwfile, user, user)
            pwfile.chmod(0o600)
            try:
                self._run([_pg_bin("initdb"), "-D", str(data), "-U", "mlflow", f"--pwfile={pwfile}",
                           "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-instructions"],
                          user=user, timeout=300)
            finally:
                pwfile.unlink()
        port = self.state["ports"]["postgres"]
        opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {pg}"
        logf = pg / "postgres.log"
        self._run([_pg_bin("pg_ctl"), "-D", str(data), "-l", str(logf), "-o", opts, "-w", "-t", str(int(timeout)), "start"],
                  user=user, timeout=timeout + 10)
        self.state["pids"]["postgres"] = int((data / "postmaster.pid").read_text().split()[0])
        env = {"PGPASSWORD": self.state["pg_password"]}
        have = self._run(["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "mlflow", "-d", "postgres", "-tA", "-c",
                          "SELECT 1 FROM pg_database WHERE datname = 'mlflow'"], env=env).stdout.strip()
        if have != "1":
            self._run(["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "mlflow", "-d", "postgres", "-c",
                       "CREATE DATABASE mlflow"], env=env)

    def _stop_postgres(self) -> None:
        data = self.root / "pg" / "data"
        if (data / "postmaster.pid").exists():
            self._run([_pg_bin("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], user=self._db_user(), check=False)

    def _start_mlflow(self, timeout: float) -> None:
        port = self.state["ports"]["mlflow"]
        self._spawn("mlflow", [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", self.db_uri,
                               "--artifacts-destination", str(self.artifacts), "--host", "127.0.0.1",
                               "--port", str(port), "--workers", "1"])

        def ready() -> bool:
            with urllib.request.urlopen(f"{self.tracking_uri}/health", timeout=2) as r:
                return r.status == 200
        self._wait("mlflow", ready, max(timeout, 240))  # the first start migrates the schema

    # -- queries -------------------------------------------------------------------------------
    def sql(self, query: str, params: tuple = ()) -> list[tuple]:
        """Rows of a query on the MLflow database in PostgreSQL (what the server stored)."""
        import psycopg2

        s = self.state
        conn = psycopg2.connect(host="127.0.0.1", port=s["ports"]["postgres"], user="mlflow",
                                password=s["pg_password"], dbname="mlflow")
        try:
            with conn.cursor() as cur:
                cur.execute(query, params)
                return cur.fetchall()
        finally:
            conn.close()

    def sacct(self, *job_ids: str) -> list[dict[str, str]]:
        """Slurm's accounting for these jobs (array tasks listed one by one), one dict per job."""
        fields = "JobID,JobIDRaw,JobName,State,ExitCode,Start,End,NodeList"
        cmd = ["sacct", "-n", "-P", "-X", "-o", fields]
        for j in job_ids:
            cmd += ["-j", str(j)]
        out = self._run(cmd, timeout=30).stdout
        keys = fields.split(",")
        return [dict(zip(keys, line.split("|"))) for line in out.splitlines() if line.strip()]

    # -- stop ----------------------------------------------------------------------------------
    def stop_daemon(self, name: str, sig: int = signal.SIGTERM, wait: float = 30) -> None:
        """Stop one daemon (``SIGKILL``: as if it crashed)."""
        if name == "postgres":
            self._stop_postgres()
            self.state["pids"].pop(name, None)
            self._save()
            return
        pid = self.state.get("pids", {}).pop(name, None)
        proc = getattr(self, "_procs", {}).pop(name, None)
        self._save()
        if pid is None:
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
    ap = argparse.ArgumentParser(prog="python -m pipeline.cluster", description=__doc__.split("\n\n")[0])
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
        print(f"# cluster in {root}: slurm partition {PARTITION!r}, MLflow at {cluster.tracking_uri}\n"
              f"# stop it with: python -m pipeline.cluster stop --dir {root}", file=sys.stderr)
        print(_exports(cluster))
        return 0
    if not args.dir or not (Path(args.dir) / "cluster.json").exists():
        print("cluster: --dir must name a cluster folder (one `start` made)", file=sys.stderr)
        return 1
    cluster = LocalCluster(args.dir)
    if args.action == "env":
        print(_exports(cluster))
    else:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
