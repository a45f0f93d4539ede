"""The Hydra callback around a multirun (``hydra.callbacks.sweep`` in ``conf/config.yaml``)."""

from __future__ import annotations

import sys
import traceback
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from pipeline.config import has_credentials
from pipeline.core.errors import Exit
from pipeline.core.redaction import has_url_credentials
from pipeline.sweep import parent
from pipeline.sweep.plan import SweepConfigError
from pipeline.sweep.state import current
from pipeline.tracking import track
from pipeline.tracking.sweep_lock import SweepBusy


class Composed:
    """Set once Hydra composed the config (a callback ran): a later exit is not a config error."""

    yes = False


def refuse_credentials(config: DictConfig) -> None:
    """Before Hydra writes its output folder (.hydra/overrides.yaml) or prints launch lines:
    a ``tracking.uri`` given on the command line or in a config file must not hold credentials;
    they would be written and printed as they are.  The environment carries them instead."""
    Composed.yes = True
    track.redact_logging()
    raw = OmegaConf.to_container(config.tracking, resolve=False).get("uri") if "tracking" in config else None
    given = [o for o in (OmegaConf.select(config, "hydra.overrides.task") or []) if has_url_credentials(o)]
    if given or (isinstance(raw, str) and not raw.startswith("${") and has_credentials(raw)):
        field = given[0].split("=", 1)[0].lstrip("+~") if given else "tracking.uri"
        print(
            f"config error: {field}: holds credentials (user:password@); they would be written to Hydra's "
            "output folder and printed. Put them in MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD "
            "(or the whole URI in MLFLOW_TRACKING_URI) instead. Nothing was run.",
            file=sys.stderr,
            flush=True,
        )
        raise SystemExit(Exit.CONFIG)


class SweepCallback(Callback):
    """The parent run around a multirun (see :mod:`pipeline.sweep`).  A callback's exception
    only makes Hydra warn, so the outcomes that must stop the command raise SystemExit."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        refuse_credentials(config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        refuse_credentials(config)
        try:
            parent.start(config)
        except SweepBusy as exc:
            print(str(exc), file=sys.stderr, flush=True)
            raise SystemExit(Exit.BUSY) from None
        except SweepConfigError as exc:
            print(str(exc), file=sys.stderr, flush=True)
            raise SystemExit(Exit.CONFIG) from None  # as a bad single job
        except Exception:  # a sweep without its parent must not run
            traceback.print_exc()
            raise SystemExit(Exit.FAILED) from None

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        st = current()
        if st is None:
            return
        try:
            code = parent.end(st, config)
        except Exception:
            traceback.print_exc()
            raise SystemExit(Exit.FAILED) from None
        if code != Exit.OK:  # the sweep's exit code reaches the command line as Hydra returns
            raise SystemExit(code)
