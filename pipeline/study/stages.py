"""The DVC stages (``dvc.yaml``): thin entry points over the pipeline, driven by ``params.yaml``.

    python -m pipeline.study.stages export    # the model artifacts of the study's sweep (cached)
    python -m pipeline.study.stages sweep     # benchmark + quality of every job: run records on disk
    python -m pipeline.study.stages decide    # ranking, report, headline metrics, plot data (no MLflow)

``params.yaml`` names the study::

    study:
      sweep: models          # conf/sweep/<name>.yaml
      decision: default      # conf/decision/<name>.yaml
      bench: {batch_size: null, warmup: null, ...}   # null: the sweep config's own value
      overrides: []          # more Hydra overrides for every job, e.g. [provider.threads=2]

Outputs go under ``study/`` (``OUT``): ``exports.json`` (the artifact keys; the artifacts
themselves stay in the export cache, ``.cache/pipeline``), ``runs/`` (one record folder per
job, ``pipeline.tracking.records``), ``decision/`` (the report files of :mod:`pipeline.decision.report`),
``metrics.json`` (the headline, a DVC metric) and ``plots/`` (the latency CDF of every configuration,
the Pareto data; DVC plots).  Every stage writes its outputs from scratch.

The sweep stage logs to MLflow as configured (``MLFLOW_TRACKING_URI`` or the default local
store), like any sweep; no stage reads from MLflow, so the study's results do not depend on it.
When the configured MLflow server cannot be reached, the sweep stage says so and runs the jobs
without it: the records are complete on disk and marked unlogged.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from pipeline import decision as decision_pkg
from pipeline.config import CONF_DIR, ConfigError, compose_config, to_config
from pipeline.core import ownership
from pipeline.core.errors import Exit, PipelineError
from pipeline.core.plots import ecdf
from pipeline.core.vocab import Metric
from pipeline.decision import figures, report
from pipeline.job.run import prepare
from pipeline.job.stages import JobSkipped
from pipeline.model.export import export
from pipeline.sweep import job_list
from pipeline.tracking import records
from pipeline.tracking.track import tracking_problem

ROOT = Path(__file__).resolve().parents[2]
PARAMS = "params.yaml"
OUT = Path("study")
EXPORTS = OUT / "exports.json"
RUNS = OUT / "runs"
STAGE_RUN = ".stage-run"  # in RUNS: the id of the sweep stage's run that wrote it (each record carries it too)
DECISION = OUT / "decision"
METRICS = OUT / "metrics.json"
PLOTS = OUT / "plots"
BENCH_KEYS = ("batch_size", "warmup", "iterations", "min_iterations", "max_seconds")


class StageError(PipelineError, RuntimeError):
    """A study that cannot run as configured (bad parameter, no runs to decide on)."""


# -- parameters -------------------------------------------------------------------------------
def load_params(path: str | Path = PARAMS) -> dict[str, Any]:
    """``study`` from params.yaml, checked: names that exist under conf/, known bench keys."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise StageError(f"{p}: not found (run the stages from the repository root)")
    study = (yaml.safe_load(p.read_text()) or {}).get("study")
    if not isinstance(study, dict):
        raise StageError(f"{p}: no `study` mapping")
    for key, group in (("sweep", "sweep"), ("decision", "decision")):
        name = study.get(key)
        names = sorted(f.stem for f in (CONF_DIR / group).glob("*.yaml"))
        if name not in names:
            raise StageError(f"{p}: study.{key}: got {name!r}, allowed: {', '.join(names)}")
    bench = study.get("bench") or {}
    unknown = sorted(set(bench) - set(BENCH_KEYS))
    if unknown:
        raise StageError(f"{p}: study.bench: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(BENCH_KEYS)}")
    overrides = study.get("overrides") or []
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise StageError(f"{p}: study.overrides: must be a list of Hydra overrides (strings)")
    return {"sweep": study["sweep"], "decision": study["decision"], "bench": bench, "overrides": overrides}


def job_overrides(study: dict[str, Any]) -> list[str]:
    """The Hydra overrides the study puts on every job of its sweep."""
    out = [f"+sweep={study['sweep']}"]
    out += [f"bench.{k}={v}" for k, v in study["bench"].items() if v is not None]
    return out + list(study["overrides"])


def jobs(study: dict[str, Any]) -> list[list[str]]:
    """The override list of every job of the study's sweep, in the sweeper's order."""

    return job_list(compose_config(job_overrides(study), hydra_config=True))


def _fresh(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


# -- export -----------------------------------------------------------------------------------
def export_stage(study: dict[str, Any]) -> dict[str, Any]:
    """Build (or find in the cache) the artifact of every job of the sweep; write ``exports.json``.

    A job that cannot run here (provider or model unavailable) is listed with its reason, as
    the sweep will report it skipped.  A failed export fails the stage, after the others.
    """

    built: dict[str, dict] = {}
    skipped, failed = [], []
    for job in jobs(study):
        cfg = to_config(compose_config(job))
        label = " ".join(o for o in job if not o.startswith("+sweep="))
        try:
            resolved = prepare(cfg)
        except JobSkipped as exc:
            skipped.append({"job": label, "reason": str(exc)})
            continue
        key = json.dumps([cfg.model.name, cfg.model.sha256, cfg.variant.__dict__], sort_keys=True, default=str)
        if key in built:
            built[key]["jobs"] += 1
            continue
        try:
            art = export(resolved, cfg.model, cfg.variant, cfg.cache_dir, cfg.quality)
        except Exception as exc:
            failed.append({"job": label, "reason": f"{type(exc).__name__}: {str(exc)[:300]}"})
            print(f"[export] FAILED {cfg.model.name} {cfg.variant.name}: {exc}", file=sys.stderr, flush=True)
            continue
        print(
            f"[export] {cfg.model.name} {cfg.variant.name}: {art.key} ({'cached' if art.cached else f'built in {art.seconds:.1f} s'})",
            flush=True,
        )
        built[key] = {
            "model": art.model,
            "variant": art.variant,
            "key": art.key,
            "folder": art.folder.name,
            "size_mb": round(art.size_mb, 3),
            "weights_verified": resolved.verified,
            "jobs": 1,
        }
    manifest = {
        "sweep": study["sweep"],
        "artifacts": sorted(built.values(), key=lambda a: (a["model"], a["variant"])),
        "skipped": skipped,
        "failed": failed,
    }
    EXPORTS.parent.mkdir(parents=True, exist_ok=True)
    EXPORTS.write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"[export] {len(built)} artifacts, {len(skipped)} jobs skipped here, {len(failed)} failed -> {EXPORTS}", flush=True)
    if failed:
        raise StageError(f"{len(failed)} export(s) failed: " + "; ".join(f"{f['job']}: {f['reason']}" for f in failed))
    return manifest


# -- sweep ------------------------------------------------------------------------------------
def sweep_stage(study: dict[str, Any]) -> int:
    """Run the sweep (``python -m pipeline +sweep=NAME``) with its records in ``study/runs``.

    ``rerun=true``: DVC decides when the study reruns, so every job is measured again here.
    When the MLflow server cannot be reached the sweep still runs (see pipeline.sweep): the
    records are complete on disk, marked unlogged, and the stage succeeds.
    Returns the exit code (1 when a job failed).
    """

    _fresh(RUNS)
    RUNS.mkdir(parents=True)
    uri = to_config(compose_config(job_overrides(study))).tracking.resolved_uri()
    problem = tracking_problem(uri)
    if problem:
        print(
            f"[sweep] MLflow: {problem}. The jobs run anyway; their records are in {RUNS}, not logged "
            "(python -m pipeline.sync logs them once the server is back).",
            file=sys.stderr,
            flush=True,
        )
    # the sweep's job logs (multirun/) and the report it decides on its parent run (reports/) stay
    # where any sweep puts them, so that the paths it prints exist; the study's own report is
    # the decide stage's (study/decision/)
    here = Path.cwd()
    cmd = [
        sys.executable,
        "-m",
        "pipeline",
        *job_overrides(study),
        f"records_dir={RUNS.resolve()}",
        "rerun=true",
        f"reports_dir={here / 'reports'}",
        f"hydra.sweep.dir={here / 'multirun'}/${{now:%Y-%m-%d}}/${{now:%H-%M-%S}}",
        f"decision={study['decision']}",
    ]  # the parent run's decision uses the study's profile too
    print("[sweep] " + " ".join(cmd[1:]), flush=True)
    run_id = uuid.uuid4().hex
    (RUNS / STAGE_RUN).write_text(run_id)
    # the sweep dies with this stage (DVC kills it: no orphan writes on into the next run's folder),
    # and stamps its records with this run's id (the decide stage reads no other)
    env = {**os.environ, "PIPELINE_STAGE_RUN": run_id, "PIPELINE_STAGE": "sweep"}  # pipeline.sweep.parent.STAGE_ENV
    code = subprocess.run(cmd, cwd=ROOT, env=env, preexec_fn=ownership.dies_with_parent).returncode
    print(f"[sweep] the study's records: {RUNS}/; its report: {DECISION / 'report.md'} (the decide stage)", flush=True)
    # 4: every job ran, some results are only in the records (the stage's real output)
    return 0 if code == Exit.UNSYNCED else code


# -- decide -----------------------------------------------------------------------------------
def _this_runs_records() -> list:
    """The records of ``study/runs``, refused unless every one was written by the sweep stage's
    last run (an orphan of a killed run, or a record copied in, would be counted as a result)."""
    found = list(records.iter_records(RUNS))
    if not found:
        raise StageError(f"no run records in {RUNS}: run the sweep stage first (dvc repro)")
    try:
        run_id = (RUNS / STAGE_RUN).read_text().strip()
    except OSError:
        raise StageError(f"{RUNS} was not written by the sweep stage (no {STAGE_RUN}): run it again (dvc repro -f)") from None
    foreign = [f.name for f, r in found if r.tags.get("stage.run") != run_id]
    if foreign:
        raise StageError(
            f"{len(foreign)} record(s) in {RUNS} were not written by the sweep stage's last run "
            f"(an orphan of a killed run?): {', '.join(sorted(foreign)[:5])}; run it again (dvc repro -f)"
        )
    return found


def decide_stage(study: dict[str, Any]):
    """Rank the records of ``study/runs`` with the study's decision profile; write the report,
    ``metrics.json`` and the plot data.  Reads no MLflow store and logs nothing."""
    import numpy as np
    import pandas as pd

    found = _this_runs_records()
    parents = [f for f, r in found if r.is_parent]
    cfg = decision_pkg.compose_decision(study["decision"]).decision
    inputs = decision_pkg.from_records(found, cfg.samples_artifact, parents[-1] if parents else None, sweep=study["sweep"])
    decision = decision_pkg.decide(inputs, cfg)
    samples = inputs.samples_ms

    for path in (DECISION, METRICS, PLOTS):
        _fresh(path)
    decision.files = [p.name for p in report.write(decision, DECISION)]
    decision.out_dir = DECISION
    headline = {"sweep": study["sweep"], "profile": decision.profile, **decision.headline()}
    METRICS.write_text(json.dumps(headline, indent=2) + "\n")

    # plot data: the latency CDF of every configuration that ran, and quality against p95
    PLOTS.mkdir(parents=True)
    cdf = []
    for label, ms in sorted(samples.items()):
        x, y = ecdf(ms)
        cdf.append(pd.DataFrame({"configuration": label, "latency_ms": x, "fraction": y}))
    cdf_frame = pd.concat(cdf) if cdf else pd.DataFrame(columns=["configuration", "latency_ms", "fraction"])
    cdf_frame.to_csv(PLOTS / "latency_cdf.csv", index=False, float_format="%.6g")
    r = decision.ranking
    pareto = pd.DataFrame(
        {
            "configuration": r.get("label", pd.Series(dtype=str)),
            "rank": r.get("rank", pd.Series(dtype=int)),
            "verdict": r.get("verdict", pd.Series(dtype=str)),
            "pareto": r.get("pareto", pd.Series(dtype=bool)),
            "latency_p95_ms": r.get(Metric.P95_MS, pd.Series(np.nan, index=r.index)),
            "stsb_spearman": r.get(Metric.STSB, pd.Series(np.nan, index=r.index)),
        }
    )
    pareto.to_csv(PLOTS / "pareto.csv", index=False, float_format="%.6g")
    # the same plots as images: `dvc plots show` renders vega plots with scripts from a CDN, so
    # without a network only these are readable
    figures.cdf_figure(decision, PLOTS / "latency_cdf.png", every=True)
    figures.pareto_figure(decision, PLOTS / "pareto.png")
    print(decision.recommendation)
    print(
        f"[decide] {len(decision.ranking)} ranked, {len(decision.excluded)} excluded (profile {decision.profile}); "
        f"report: {DECISION / 'report.md'}, metrics: {METRICS}",
        flush=True,
    )
    return decision


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.study.stages", description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", choices=("export", "sweep", "decide"))
    parser.add_argument("--params", default=PARAMS, help="the parameters file (default: params.yaml)")
    args = parser.parse_args(argv)
    from hydra.errors import HydraException

    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    try:
        study = load_params(args.params)
        if args.stage == "export":
            export_stage(study)
        elif args.stage == "sweep":
            code = sweep_stage(study)
            if code != 0:
                print(f"[sweep] the sweep exited with {code} (a job failed; see its summary above)", file=sys.stderr)
            return code
        else:
            decide_stage(study)
    except (StageError, ConfigError) as exc:
        print(f"stage {args.stage}: {exc}", file=sys.stderr)
        return 2
    except HydraException as exc:  # an override in study.overrides that Hydra refuses
        print(f"stage {args.stage}: params.yaml: {type(exc).__name__}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
