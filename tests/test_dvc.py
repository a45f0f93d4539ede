"""`dvc repro` reproduces a study in a fresh copy of the repository (the real smoke study).

A copy of the repository's files (what git tracks, or would) goes into a temporary folder with
a git repository of its own; the export cache is shared with the checkout (PIPELINE_CACHE_DIR)
so the model is exported once, and MLflow logs to a private store.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

from pipeline.config import default_data_dir


def _copy_repo(dest: Path) -> None:
    try:
        listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, check=True)
        files = [f for f in listed.stdout.decode().split("\0") if f]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: the tree minus what git would ignore
        files = [
            str(p.relative_to(ROOT))
            for p in ROOT.rglob("*")
            if p.is_file()
            and not {".git", ".venv", ".cache", "mlruns", "study", "outputs", "multirun", "reports", "__pycache__", ".pytest_cache"}
            & set(p.relative_to(ROOT).parts)
        ]
    for f in files:
        src = ROOT / f
        if src.is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / f)
    for cmd in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.com", "commit", "-qm", "fresh clone"],
    ):
        subprocess.run(cmd, cwd=dest, check=True, capture_output=True)


class Repo:
    def __init__(self, path: Path, tmp: Path):
        self.path = path
        bindir = str(Path(sys.executable).parent)  # stage commands run `python`: this interpreter
        self.env = {
            **os.environ,
            "PATH": os.pathsep.join([bindir, os.environ.get("PATH", "")]),
            "PYTHONPATH": os.pathsep.join([str(path), os.environ.get("PYTHONPATH", "")]),
            "PIPELINE_CACHE_DIR": os.environ.get("PIPELINE_CACHE_DIR") or str(ROOT / ".cache" / "pipeline"),
            "PIPELINE_DATA_DIR": default_data_dir(),  # the STS data beside the checkout, not beside the copy
            "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db",
            "DVC_NO_ANALYTICS": "1",
            "HF_HUB_OFFLINE": "1",
        }

    def dvc(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [sys.executable, "-m", "dvc", *args], cwd=self.path, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        assert proc.returncode == 0, f"dvc {' '.join(args)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc

    def set_params(self, **study) -> None:
        path = self.path / "params.yaml"
        params = yaml.safe_load(path.read_text())
        for key, value in study.items():
            node = params["study"]
            *parents, last = key.split(".")
            for p in parents:
                node = node[p]
            node[last] = value
        path.write_text(yaml.safe_dump(params, sort_keys=False))

    def changed_stages(self) -> set[str]:
        return set(json.loads(self.dvc("status", "--json").stdout or "{}"))


def _ran(proc: subprocess.CompletedProcess) -> set[str]:
    return {s for s in ("export", "sweep", "decide") if f"Running stage '{s}'" in proc.stdout}


@pytest.mark.real_model
def test_dvc_repro_reproduces_the_smoke_study(tmp_path):
    repo_dir = tmp_path / "clone"
    _copy_repo(repo_dir)
    repo = Repo(repo_dir, tmp_path)
    assert (repo_dir / ".dvc" / "config").is_file() and (repo_dir / "dvc.yaml").is_file()
    assert yaml.safe_load((repo_dir / "params.yaml").read_text())["study"]["sweep"] == "models"  # the default study
    repo.set_params(sweep="smoke")

    first = repo.dvc("repro")
    assert _ran(first) == {"export", "sweep", "decide"}, first.stdout[-3000:]
    study = repo_dir / "study"
    exports = json.loads((study / "exports.json").read_text())
    assert [(a["model"], a["variant"]) for a in exports["artifacts"]] == [("all-MiniLM-L6-v2", "fp32")]
    assert len(exports["skipped"]) == 2 or not exports["skipped"]  # CUDA jobs, where onnxruntime lacks it
    runs = sorted((study / "runs").glob("*/record.json"))
    everything = [json.loads(r.read_text()) for r in runs]
    records = [r for r in everything if r["tags"].get("sweep.role") != "parent"]
    assert len(everything) - len(records) == 1  # the sweep's parent is a record too
    assert len(records) == 4  # the smoke sweep's four jobs, each a record
    assert {r["status"] for r in records} <= {"ok", "skipped"} and sum(r["status"] == "ok" for r in records) >= 2
    assert all(r["mlflow_run_id"] for r in records)  # logged to the (private) MLflow store as well
    metrics = json.loads((study / "metrics.json").read_text())
    assert metrics["sweep"] == "smoke" and metrics["profile"] == "default"
    assert metrics["winner"].startswith("all-MiniLM-L6-v2/fp32/cpu/mean/b")
    assert metrics["stsb_spearman"] == pytest.approx(82.03, abs=0.05)  # the real model's published STSb figure
    assert metrics["configurations_ranked"] >= 2
    assert (study / "decision" / "report.md").is_file() and (study / "decision" / "ranking.csv").is_file()

    # nothing changed: everything is up to date
    assert repo.changed_stages() == set()
    again = repo.dvc("repro")
    assert _ran(again) == set() and "up to date" in again.stdout, again.stdout

    # results as DVC shows them
    shown = repo.dvc("metrics", "show").stdout
    assert "study/metrics.json" in shown and metrics["winner"] in shown
    plots = json.loads(repo.dvc("plots", "show", "--json").stdout)["data"]
    cdf, pareto = plots["study/plots/latency_cdf.csv"][0]["content"], plots["study/plots/pareto.csv"][0]["content"]
    assert {v["configuration"] for v in cdf["data"]["values"]} >= {"all-MiniLM-L6-v2/fp32/cpu/mean/b1", "all-MiniLM-L6-v2/fp32/cpu/mean/b8"}
    assert len(pareto["data"]["values"]) == metrics["configurations_ranked"]
    rendered = repo.dvc("plots", "show", "-o", str(tmp_path / "plots")).stdout
    assert (tmp_path / "plots" / "index.html").is_file(), rendered

    # a benchmark setting: the sweep (and what follows) is out of date, the exports are not
    repo.set_params(**{"bench.max_seconds": 1.0})
    assert repo.changed_stages() == {"sweep"}  # decide follows once the sweep's outputs change
    repo.set_params(**{"bench.max_seconds": None})
    assert repo.changed_stages() == set()

    # editing a decision profile outdates only the decide stage; the default profile also picks
    # the leaders the sweep re-times at its end, so editing it outdates the sweep too
    profile = repo_dir / "conf" / "decision" / "latency_first.yaml"
    original = profile.read_text()
    profile.write_text(original + "# edited\n")
    assert repo.changed_stages() == {"decide"}
    profile.write_text(original)
    default = repo_dir / "conf" / "decision" / "default.yaml"
    original = default.read_text()
    default.write_text(original + "# edited\n")
    assert repo.changed_stages() == {"sweep", "decide"}
    default.write_text(original)

    # the decision profile: only the decide stage reruns
    repo.set_params(decision="latency_first")
    assert repo.changed_stages() == {"decide"}
    third = repo.dvc("repro")
    assert _ran(third) == {"decide"}, third.stdout[-3000:]
    assert json.loads((study / "metrics.json").read_text())["profile"] == "latency_first"
    assert repo.changed_stages() == set()


def _stage(name: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.study.stages", name], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_stages_run_without_an_mlflow_server(tiny_bert, tiny_sts_dir, tmp_path):
    """The sweep and decide stages on the tiny model, with MLflow pointed at a server that is down."""
    from conftest import tiny_overrides

    overrides = [
        o for o in tiny_overrides(tiny_bert, tiny_sts_dir, tmp_path) if not o.startswith(("tracking.", "records_dir", "reports_dir"))
    ]
    study = {"sweep": "smoke", "decision": "default", "bench": {"batch_size": 1, "max_seconds": 1.0}, "overrides": overrides}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"study": study}))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{_closed_port()}",
    }

    sweep = _stage("sweep", tmp_path, env)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    assert "cannot be reached" in sweep.stderr and "not logged" in sweep.stderr
    records = [json.loads(p.read_text()) for p in (tmp_path / "study" / "runs").glob("*/record.json")]
    records = [r for r in records if r["tags"].get("sweep.role") != "parent"]
    assert sorted(r["status"] for r in records) == ["ok", "skipped"]  # CPU ran; CUDA skipped where it is absent
    assert all(r["mlflow_run_id"] is None for r in records)  # kept on disk, unlogged
    ok = next(r for r in records if r["status"] == "ok")
    assert ok["params"]["model"] == "tiny-bert" and ok["params"]["bench.batch_size"] == "1"
    assert "latency.p95_ms" in ok["metrics"]

    decide = _stage("decide", tmp_path, env)
    assert decide.returncode == 0, decide.stderr[-3000:]
    assert (sweep.stdout + decide.stdout).count("Reproduce: ") == 1  # the decision in words, once: the decide stage's
    metrics = json.loads((tmp_path / "study" / "metrics.json").read_text())
    assert metrics["configurations_ranked"] == 1 and metrics["configurations_excluded"] == 1
    assert metrics["winner_run_id"] == ok["record_id"]  # no MLflow run: the record names it
    assert metrics["latency_p95_ms"] == pytest.approx(ok["metrics"]["latency.p95_ms"])
    cdf = (tmp_path / "study" / "plots" / "latency_cdf.csv").read_text().splitlines()
    assert cdf[0] == "configuration,latency_ms,fraction" and cdf[-1].endswith(",1")
    # the paths it prints exist once it is done (none under a temporary folder it deleted)
    assert "[sweep] the study's records: study/runs/; its report: study/decision/report.md" in sweep.stdout
    assert "pipeline-dvc-sweep-" not in sweep.stdout + sweep.stderr
    assert list((tmp_path / "multirun").glob("*/*/0/pipeline.log"))  # each job's log, kept

    # `dvc plots show`, offline: the PNGs the decide stage drew are in its page as images
    for png in ("latency_cdf.png", "pareto.png"):
        assert (tmp_path / "study" / "plots" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    shutil.copytree(ROOT / "conf" / "sweep", tmp_path / "conf" / "sweep")  # the sweep stage's params file
    dvc_env = {**env, "DVC_NO_ANALYTICS": "1"}
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=tmp_path, env=dvc_env, check=True)
    shutil.copytree(ROOT / ".dvc" / "plots", tmp_path / ".dvc" / "plots")
    shown = subprocess.run(
        [sys.executable, "-m", "dvc", "plots", "show", "-o", "dvc_plots"],
        cwd=tmp_path,
        env=dvc_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr[-2000:]
    page = (tmp_path / "dvc_plots" / "index.html").read_text()
    for png in ("latency_cdf.png", "pareto.png"):
        assert f"study_plots_{png}" in page or f"study/plots/{png}" in page, page[:2000]
    assert "<img" in page
    spec = json.loads(
        subprocess.run(
            [sys.executable, "-m", "dvc", "plots", "show", "--json"],
            cwd=tmp_path,
            env=dvc_env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
    )["data"]
    pareto = spec["study/plots/pareto.csv"][0]["content"]
    assert pareto["encoding"]["color"]["field"] == "configuration"  # one colour per configuration
    assert pareto["encoding"]["x"]["scale"]["zero"] is False and pareto["encoding"]["y"]["scale"]["zero"] is False


def test_a_bad_study_parameter_is_refused_with_what_is_allowed(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"study": {"sweep": "nosuch", "decision": "default"}}))
    proc = _stage("export", tmp_path, {**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2
    assert "study.sweep: got 'nosuch', allowed:" in proc.stderr and "smoke" in proc.stderr


def test_dvc_exp_show_has_the_sweeps_settings(tmp_path):
    """The study's sweep file is a params file of the sweep stage: what the sweep varies and its
    benchmark settings are columns of `dvc exp show`, and they follow study.sweep."""
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "conf" / "sweep", tmp_path / "conf" / "sweep")
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}

    def run(*cmd: str) -> str:
        proc = subprocess.run(list(cmd), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout

    run("git", "init", "-q")
    run(sys.executable, "-m", "dvc", "init", "-q")
    run("git", "add", "-A")
    run("git", "-c", "user.name=test", "-c", "user.email=test@example.com", "commit", "-qm", "study")
    import csv
    import io

    (workspace, *_) = list(csv.DictReader(io.StringIO(run(sys.executable, "-m", "dvc", "exp", "show", "--no-pager", "--csv"))))
    assert workspace["study.sweep"] == "models"
    assert workspace["hydra.sweeper.params.bench.batch_size"] == "1,32"  # what the models sweep varies
    assert workspace["hydra.sweeper.params.+candidate"].startswith("minilm-fp32,")
    assert workspace["bench.max_seconds"] == "5.0"  # its benchmark settings
    Repo(tmp_path, tmp_path).set_params(sweep="smoke")
    diff = run(sys.executable, "-m", "dvc", "params", "diff", "--md")
    assert "conf/sweep/smoke.yaml" in diff and "hydra.sweeper.params.provider" in diff and "cpu,cuda" in diff


def test_a_fresh_clone_shows_what_repro_would_run_and_exp_show_stays_narrow(tmp_path):
    """`dvc repro --dry --force` lists the three stages in a clone where no stage has run (plain
    `--dry` looks up DVC's run cache, which hashes the missing upstream outputs: treeverse/dvc#9021);
    `dvc exp show` keeps its dependency columns to folders, so the params and metrics stay in view."""
    _copy_repo(tmp_path)
    repo = Repo(tmp_path, tmp_path)
    repo.dvc("init", "-q", "-f") if not (tmp_path / ".dvc" / "config").is_file() else None
    dry = repo.dvc("repro", "--dry", "--force")
    assert _ran(dry) == {"export", "sweep", "decide"}
    assert not (tmp_path / "study" / "exports.json").exists()  # nothing ran
    header = repo.dvc("exp", "show", "--no-pager", "--csv").stdout.splitlines()[0].split(",")
    assert "study.sweep" in header and "hydra.sweeper.params.bench.batch_size" in header
    assert "hydra.mode" not in header  # the sweep file's own plumbing is no column
    assert len(header) <= 35, header
