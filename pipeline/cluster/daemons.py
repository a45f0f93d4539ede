"""The daemons of :class:`pipeline.cluster.local.LocalCluster`, by service: Slurm (munged, mariadbd,
slurmdbd, slurmctld, slurmd) and the tracking server (PostgreSQL and ``mlflow server``).

Mixins: they use the cluster's paths, ``_spawn``/``_wait``/``_run`` and its saved state.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import urllib.request

from pipeline.cluster import loopback
from pipeline.core.errors import PipelineError

CLUSTER_NAME = "pipeline"
PARTITION = "debug"
NODE = "pipeline-node"
DB_USER = "pipeline-db"  # the system account PostgreSQL runs as when we are root


# initdb: passwords for local and TCP logins alike, UTF-8, no advice printed
INITDB_OPTIONS = ("--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-instructions")


class ClusterError(PipelineError, RuntimeError):
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SlurmDaemons:
    """munged, Slurm's accounting (mariadbd + slurmdbd), slurmctld and one slurmd."""

    def _on_loopback(self, env: dict | None = None) -> dict:
        """``env`` for a Slurm daemon, with :mod:`pipeline.cluster.loopback`'s shim preloaded (built once):
        slurmdbd and one slurmctld socket bind to every address whatever their config says.
        Without the shim, the cluster's state names the daemons that listen on every address, and why."""
        if not hasattr(self, "_shim"):
            self._shim, why = loopback.build(self.root / "lib")
            self.state["wide_open"] = {"daemons": ["slurmctld", "slurmdbd"], "why": why} if why else None
            if why:
                print(f"[cluster] warning: slurmctld and slurmdbd will listen on every address: {why}", file=sys.stderr)
        return loopback.preload_env(self._shim, env)

    def _start_munged(self, timeout: float) -> None:
        m = self.root / "munge"
        m.chmod(0o711)  # clients reach the socket; the key stays root's (0400)
        key = m / "munge.key"
        if not key.exists():
            key.write_bytes(secrets.token_bytes(1024))
            key.chmod(0o400)
        sock = m / "munge.socket.2"
        self._spawn(
            "munged",
            [
                _which("munged"),
                "-F",
                "--force",
                f"--socket={sock}",
                f"--key-file={key}",
                f"--pid-file={m / 'munged.pid'}",
                f"--seed-file={m / 'munged.seed'}",
                f"--log-file={self.log('munged')}",
            ],
        )

        def ready() -> bool:
            enc = subprocess.run(["munge", "-n", "-S", str(sock)], capture_output=True, timeout=10)
            return (
                enc.returncode == 0
                and subprocess.run(["unmunge", "-S", str(sock)], input=enc.stdout, capture_output=True, timeout=10).returncode == 0
            )

        self._wait("munged", ready, timeout)

    # MariaDB: Slurm's accounting store (slurmdbd supports no other)
    def _start_mariadbd(self, timeout: float) -> None:
        d = self.root / "mysql"
        data, sock = d / "data", d / "mysqld.sock"
        fresh = not data.exists()
        if fresh:
            self._run(
                [
                    _which("mariadb-install-db"),
                    "--no-defaults",
                    f"--datadir={data}",
                    "--user=root",
                    "--auth-root-authentication-method=socket",
                    "--skip-test-db",
                ],
                timeout=300,
            )
        self._spawn(
            "mariadbd",
            [
                _which("mariadbd"),
                "--no-defaults",
                f"--datadir={data}",
                f"--socket={sock}",
                f"--port={self.state['ports']['mariadb']}",
                "--bind-address=127.0.0.1",
                "--user=root",
                f"--pid-file={d / 'mysqld.pid'}",
                "--innodb-buffer-pool-size=64M",
                "--innodb-lock-wait-timeout=900",
                "--skip-name-resolve",
            ],
        )
        self._wait(
            "mariadbd",
            lambda: (
                self._run(["mariadb", "--no-defaults", f"--socket={sock}", "-u", "root", "-e", "SELECT 1"], check=False).returncode == 0
            ),
            timeout,
        )
        if fresh:
            pw = self.state["db_password"]
            self._run(
                [
                    "mariadb",
                    "--no-defaults",
                    f"--socket={sock}",
                    "-u",
                    "root",
                    "-e",
                    f"CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '{pw}'; GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';",
                ]
            )

    def _write_slurm_confs(self) -> None:
        s, host = self.state, socket.gethostname().split(".")[0]
        p = s["ports"]
        sd = self.root / "slurm"
        logs = self.root / "logs"
        self.slurm_conf.write_text(
            "# written by pipeline.cluster.local: a one-node cluster on loopback\n"
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
            # slurmctld and slurmd bind to their addresses below (127.0.0.1), not to every interface
            "CommunicationParameters=NoInAddrAny\n"
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
        self._spawn(
            "slurmdbd",
            [_which("slurmdbd"), "-D"],
            env=self._on_loopback({**env, "SLURMDBD_CONF": str(self.root / "slurm" / "slurmdbd.conf")}),
        )

        def ready() -> bool:
            with socket.create_connection(("127.0.0.1", self.state["ports"]["slurmdbd"]), timeout=1):
                pass
            return self._run(["sacctmgr", "-n", "list", "cluster"], check=False, timeout=30).returncode == 0

        self._wait("slurmdbd", ready, timeout)
        listed = self._run(["sacctmgr", "-n", "-P", "list", "cluster", "format=cluster"], timeout=30).stdout.split()
        if CLUSTER_NAME not in listed:
            self._run(["sacctmgr", "-i", "add", "cluster", CLUSTER_NAME], timeout=30)

    def _start_slurmctld(self, timeout: float) -> None:
        self._spawn("slurmctld", [_which("slurmctld"), "-D", "-f", str(self.slurm_conf)], env=self._on_loopback())
        self._wait("slurmctld", lambda: self._run(["scontrol", "ping"], check=False, timeout=15).stdout.count("UP") > 0, timeout)

    def _start_slurmd(self, timeout: float) -> None:
        # slurmd binds to NodeAddr by NoInAddrAny; no shim for it, as its jobs would inherit it
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


class TrackingServer:
    """PostgreSQL (initdb in the cluster's folder) and an ``mlflow server`` on it."""

    def _db_user(self) -> str | None:
        if os.geteuid() != 0:
            return None

        try:
            pwd.getpwnam(DB_USER)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", DB_USER],
                check=True,
                capture_output=True,
            )
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
                initdb = [_pg_bin("initdb"), "-D", str(data), "-U", "mlflow", f"--pwfile={pwfile}"]
                self._run([*initdb, *INITDB_OPTIONS], user=user, timeout=300)
            finally:
                pwfile.unlink()
        port = self.state["ports"]["postgres"]
        opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {pg}"
        logf = pg / "postgres.log"
        self._run(
            [_pg_bin("pg_ctl"), "-D", str(data), "-l", str(logf), "-o", opts, "-w", "-t", str(int(timeout)), "start"],
            user=user,
            timeout=timeout + 10,
        )
        self.state["pids"]["postgres"] = int((data / "postmaster.pid").read_text().split()[0])
        env = {"PGPASSWORD": self.state["pg_password"]}
        psql = ["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "mlflow", "-d", "postgres"]
        have = self._run([*psql, "-tA", "-c", "SELECT 1 FROM pg_database WHERE datname = 'mlflow'"], env=env).stdout.strip()
        if have != "1":
            self._run([*psql, "-c", "CREATE DATABASE mlflow"], env=env)

    def _stop_postgres(self) -> None:
        data = self.root / "pg" / "data"
        if (data / "postmaster.pid").exists():
            self._run([_pg_bin("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], user=self._db_user(), check=False)

    def _start_mlflow(self, timeout: float) -> None:
        port = self.state["ports"]["mlflow"]
        self._spawn(
            "mlflow",
            [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                "--backend-store-uri",
                self.db_uri,
                "--artifacts-destination",
                str(self.artifacts),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
            ],
            env=self.db_env(),
        )

        def ready() -> bool:
            with urllib.request.urlopen(f"{self.tracking_uri}/health", timeout=2) as r:
                return r.status == 200

        self._wait("mlflow", ready, max(timeout, 240))  # the first start migrates the schema

    # -- queries -------------------------------------------------------------------------------
    def sql(self, query: str, params: tuple = ()) -> list[tuple]:
        """Rows of a query on the MLflow database in PostgreSQL (what the server stored)."""
        import psycopg2

        s = self.state
        conn = psycopg2.connect(host="127.0.0.1", port=s["ports"]["postgres"], user="mlflow", password=s["pg_password"], dbname="mlflow")
        try:
            with conn.cursor() as cur:
                cur.execute(query, params)
                return cur.fetchall()
        finally:
            conn.close()
