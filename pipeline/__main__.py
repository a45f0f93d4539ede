"""``python -m pipeline [overrides]``: run one job, or a sweep with ``+sweep=NAME``."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from .config import ConfigError, register_configs, to_config

log = logging.getLogger("pipeline")

# exit codes a script can act on
EXIT_CONFIG = 2  # bad configuration or model: nothing was run, no run was logged
EXIT_SKIPPED = 3  # a single job that cannot run here (logged with status=skipped)

register_configs()


@hydra.main(version_base=None, config_path="../conf", config_name="config")
def main(dcfg: DictConfig) -> None:
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    if HydraConfig.get().mode == RunMode.MULTIRUN:  # a job of a sweep: never raises, see sweep.py
        from .sweep import run_job

        run_job(dcfg)
        return
    from .job import execute
    from .sources import ChecksumMismatch
    from .sweep import config_hash

    try:
        cfg = to_config(dcfg)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        result = execute(cfg, dcfg, out_dir, tags={"config_hash": config_hash(dcfg)})
    except ChecksumMismatch as exc:
        print(f"config error: model.sha256: {exc}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    m = result.metrics
    if result.status == "skipped":
        print(f"skipped: {result.reason}", file=sys.stderr)
        sys.exit(EXIT_SKIPPED)
    print(
        f"run {result.run_id}: status={result.status} "
        f"p50={m.get('latency.p50_ms', float('nan')):.2f} ms p95={m.get('latency.p95_ms', float('nan')):.2f} ms "
        f"throughput={m.get('throughput.sentences_per_s', float('nan')):.1f}/s "
        f"STS={m.get('quality.stsb_spearman', float('nan')):.2f} parity={m.get('parity.min_cosine', float('nan')):.6f} "
        f"({result.seconds:.1f} s)"
    )


if __name__ == "__main__":
    main()
    from .sweep import exit_code

    sys.exit(exit_code())  # 1 when a job of a sweep failed (skipped jobs are not failures)
