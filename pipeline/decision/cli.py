"""``python -m pipeline.decide``: decide a sweep again from the command line.

    python -m pipeline.decide                                  # the latest sweep, profile `default`
    python -m pipeline.decide --parent RUN_ID                  # any earlier sweep (its parent run id)
    python -m pipeline.decide --profile latency_first --tracking-uri sqlite:///mlruns/mlflow.db
    python -m pipeline.decide --out reports decision.robustness.bootstrap=2000   # Hydra overrides
"""

from __future__ import annotations

import argparse
import logging
import sys

from .. import track
from ..config import ConfigError
from . import mlflow_io
from .api import decide_sweep
from .profile import compose_decision
from .types import DecideError


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.0%}"


def _latest_parent(uri: str) -> str:
    try:
        return mlflow_io.latest_parent(mlflow_io.client(uri))
    except DecideError:
        raise
    except Exception as exc:  # the store answered, but not with runs (a damaged database, a proxy's page)
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise DecideError(f"the tracking store {track.redact(uri)} could not be searched: {type(exc).__name__}: "
                          f"{track.redact(first)[:300]}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.decide",
        description="Rank the configurations of a sweep, apply the gates, name the one to ship.",
    )
    parser.add_argument("--parent", help="the sweep's parent run id (default: the latest sweep)")
    parser.add_argument("--profile", default="default", help="decision profile: conf/decision/<profile>.yaml")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: the tracking config)")
    parser.add_argument("--out", default="reports", help="output folder (default: reports)")
    parser.add_argument("--no-log", action="store_true", help="do not log the decision on the parent run")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. decision.robustness.bootstrap=2000")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = compose_decision(args.profile, args.overrides)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except Exception as exc:  # Hydra: unknown profile or override
        print(f"config error: {type(exc).__name__}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    uri = args.tracking_uri or cfg.tracking.resolved_uri()
    problem = track.tracking_problem(uri)
    if problem:  # said as it is: not "no run X in this store", not a traceback
        print(f"decide: the tracking store {problem}", file=sys.stderr)
        return 1
    try:
        parent = args.parent or _latest_parent(uri)
        decision = decide_sweep(parent, cfg.decision, uri, out_dir=args.out, log_to_parent=not args.no_log)
    except (DecideError, ConfigError) as exc:
        print(f"decide: {exc}", file=sys.stderr)
        return 1
    print(decision.recommendation)
    print(f"ranked {len(decision.ranking)} configurations ({len(decision.contended)} contended), excluded {len(decision.excluded)}; "
          f"winner stays the winner in {_pct(decision.robustness.winner_stability)} of the weight moves, "
          f"{_pct(decision.robustness.noise_stability)} of the p95 redraws")
    print(f"report: {decision.out_dir / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
