"""``python -m pipeline [overrides]``: run one job, or a sweep with ``+sweep=NAME``.

Exit codes: :class:`pipeline.core.errors.Exit` (docs/resilience.md).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from pipeline.config import ConfigError, register_configs, to_config
from pipeline.config.suggest import suggestions
from pipeline.core import logs
from pipeline.core.errors import Exit, PipelineError
from pipeline.core.redaction import redact
from pipeline.core.vocab import Status
from pipeline.job.run import execute
from pipeline.model.sources import ChecksumMismatch
from pipeline.sweep import config_hash, run_job
from pipeline.sweep.callback import Composed
from pipeline.tracking import records, track
from pipeline.tracking.sync import command

log = logging.getLogger("pipeline")

register_configs()
_SINGLE_EXIT = Exit.OK


# an absolute folder: Hydra resolves a relative one against the calling module, which a console
# script (`pipeline`, pyproject's [project.scripts]) turns into a package lookup that fails
@hydra.main(version_base=None, config_path=str(Path(__file__).resolve().parent.parent / "conf"), config_name="config")
def main(dcfg: DictConfig):
    global _SINGLE_EXIT
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    if HydraConfig.get().mode == RunMode.MULTIRUN:  # a job of a sweep: never raises, see sweep.py
        return run_job(dcfg)  # its JobOutcome: what a cluster launcher hands back to the sweep

    track.redact_logging()
    try:
        cfg = to_config(dcfg)
        records.check_writable(cfg.records_dir)
    except (ConfigError, records.RecordError) as exc:
        print(str(exc) if isinstance(exc, ConfigError) else f"config error: {exc}", file=sys.stderr)
        sys.exit(Exit.CONFIG)
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        with logs.to_log_file():  # third-party warnings: into the job's log, not the terminal
            result = execute(cfg, dcfg, out_dir, tags={"config_hash": config_hash(dcfg)})
    except PipelineError as exc:  # a bad model checksum, model.max_length beyond its positions, a full records folder...
        what = "config error: model.sha256: " if isinstance(exc, ChecksumMismatch) else "" if isinstance(exc, ConfigError) else "error: "
        print(f"{what}{exc}", file=sys.stderr)
        sys.exit(exc.exit)  # each error carries the exit code it ends the command with (pipeline.core.errors)
    m = result.metrics
    where = f"run {result.run_id}" if result.run_id else f"record {result.record} (NOT logged to MLflow)"
    if result.status == Status.SKIPPED:
        print(f"skipped: {result.reason} ({where})", file=sys.stderr)
    else:
        print(
            f"{where}: status={result.status} "
            f"p50={m.get('latency.p50_ms', float('nan')):.2f} ms p95={m.get('latency.p95_ms', float('nan')):.2f} ms "
            f"throughput={m.get('throughput.sentences_per_s', float('nan')):.1f}/s "
            f"STS={m.get('quality.stsb_spearman', float('nan')):.2f} parity={m.get('parity.min_cosine', float('nan')):.6f} "
            f"({result.seconds:.1f} s)"
        )
    if result.run_id is None:
        print(
            f"MLflow ({redact(cfg.tracking.resolved_uri())}) did not take this run; its results are kept in "
            f"{result.record}; log them with:\n    {command(cfg.records_dir, cfg.tracking.resolved_uri())}",
            file=sys.stderr,
        )
        _SINGLE_EXIT = Exit.UNSYNCED
    elif result.status == Status.SKIPPED:
        _SINGLE_EXIT = Exit.SKIPPED


def cli() -> int:
    """``pipeline serve ...``: :func:`pipeline.serving.app.main`.  Else run :func:`main` and turn what happened into one exit code (:class:`Exit`).

    A sweep's end raises SystemExit with the sweep's code when it is not 0 (1 when a job failed,
    4 when results are only local; skipped jobs are not failures): see pipeline.sweep."""

    if sys.argv[1:2] == ["serve"]:  # `pipeline serve ...`: the server's own options, not Hydra's
        from pipeline.serving.app import main as serve

        return serve(sys.argv[2:])
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        # Hydra exits 1 for a config it cannot compose (unknown option, key typo, wrong type);
        # a callback runs only once it composed one, so an exit before that is a config error
        if code == 1 and not Composed.yes:
            for line in suggestions(sys.argv[1:]):
                print(line, file=sys.stderr)
            return Exit.CONFIG
        return code
    return _SINGLE_EXIT


if __name__ == "__main__":
    sys.exit(cli())
