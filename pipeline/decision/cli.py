"""``python -m pipeline.decide``: decide a sweep again from the command line.

    python -m pipeline.decide                                  # the latest sweep, profile `default`
    python -m pipeline.decide --parent RUN_ID                  # any earlier sweep (its parent run id)
    python -m pipeline.decide --profile latency_first          # a what-if: reports/whatif/<parent>/latency_first/
    python -m pipeline.decide --profile latency_first --record # make it the sweep's decision of record
    python -m pipeline.decide --out reports decision.robustness.bootstrap=2000   # Hydra overrides

A sweep that has a decision of record (its own, made when it ended) keeps it: deciding it again
is a what-if (see :mod:`pipeline.decision.api`) unless ``--record`` says otherwise.  A sweep with
no decision yet (one synced after its end) gets its decision of record.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys

from pipeline.config import CONF_DIR, ConfigError
from pipeline.core.redaction import redact
from pipeline.decision import mlflow_io
from pipeline.decision.api import decide_sweep
from pipeline.decision.profile import compose_decision
from pipeline.decision.types import DecideError
from pipeline.tracking import track


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.0%}"


def _latest_parent(c, uri: str) -> str:
    try:
        return mlflow_io.latest_parent(c)
    except DecideError:
        raise
    except Exception as exc:  # the store answered, but not with runs (a damaged database, a proxy's page)
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise DecideError(f"the tracking store {redact(uri)} could not be searched: {type(exc).__name__}: {redact(first)[:300]}") from None


def profiles() -> list[str]:
    """The decision profiles: conf/decision/<name>.yaml."""
    return sorted(p.stem for p in (CONF_DIR / "decision").glob("*.yaml"))


def whatif_name(profile: str, overrides: list[str]) -> str:
    """A what-if's folder name: the profile, and a short digest of the overrides when there are any."""
    if not overrides:
        return profile
    return f"{profile}-{hashlib.sha256(' '.join(overrides).encode()).hexdigest()[:8]}"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.decide",
        description="Rank the configurations of a sweep, apply the gates, name the one to ship. A sweep that "
        "already has its decision keeps it: deciding it again writes a what-if beside it, unless --record.",
    )
    parser.add_argument("--parent", help="the sweep's parent run id (default: the latest sweep)")
    parser.add_argument("--profile", default="default", help=f"decision profile: one of {', '.join(profiles())} (conf/decision/)")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: the tracking config)")
    parser.add_argument("--out", default="reports", help="output folder (default: reports)")
    parser.add_argument(
        "--record",
        action="store_true",
        help="replace the sweep's decision of record (its report, its tags and description on the parent run)",
    )
    parser.add_argument("--no-log", action="store_true", help="log nothing on the parent run")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. decision.robustness.bootstrap=2000")
    return parser


def _compose(args):
    if args.profile not in profiles():
        raise ConfigError("--profile", f"no profile {args.profile!r}; choose one of {', '.join(profiles())} (conf/decision/<name>.yaml)")
    return compose_decision(args.profile, args.overrides)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = _compose(args)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except Exception as exc:  # Hydra: an unknown override
        print(f"config error: {type(exc).__name__}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    uri = args.tracking_uri or cfg.tracking.resolved_uri()
    problem = track.tracking_problem(uri)
    if problem:  # said as it is: not "no run X in this store", not a traceback
        print(f"decide: the tracking store {problem}", file=sys.stderr)
        return 1
    try:
        c = mlflow_io.client(uri)
        parent = args.parent or _latest_parent(c, uri)
        record = args.record or not mlflow_io.has_decision(c, parent)
        decision = decide_sweep(
            parent,
            cfg.decision,
            uri,
            out_dir=args.out,
            log_to_parent=not args.no_log,
            record=record,
            whatif=whatif_name(args.profile, args.overrides),
            latest=None,
        )
    except (DecideError, ConfigError) as exc:
        print(f"decide: {exc}", file=sys.stderr)
        return 1
    print(decision.recommendation)
    print(
        f"ranked {len(decision.ranking)} configurations ({len(decision.contended)} contended), excluded {len(decision.excluded)}; "
        f"winner stays the winner in {_pct(decision.robustness.winner_stability)} of the weight moves, "
        f"{_pct(decision.robustness.noise_stability)} of the p95 redraws"
    )
    if record:
        print(f"report (the sweep's decision of record): {decision.out_dir / 'report.md'}")
    else:
        print(f"what-if report: {decision.out_dir / 'report.md'} (the sweep's own decision is unchanged; --record replaces it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
