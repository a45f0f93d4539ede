"""Third-party noise kept out of the terminal and in the job's log file.

Exporting, validating and measuring call torch, transformers, Optimum and sentence-transformers,
which print what a user of this pipeline cannot act on (TracerWarnings, deprecations, the
accelerate notice, tqdm bars).  Inside :func:`to_log_file`, Python warnings go to the
``py.warnings`` logger, which writes to the log files the process has (Hydra's ``<job>.log``)
and not to the console; progress bars are off.  Our own messages are untouched.  A leaf module.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

LIBRARY_LOGGERS = ("transformers", "accelerate", "optimum", "sentence_transformers", "huggingface_hub")
QUIET_ENV = {"TQDM_DISABLE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}


def _file_handlers() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]


@contextmanager
def to_log_file() -> Iterator[None]:
    """Third-party warnings into the log file only (dropped where the process has none), progress
    bars off, for the duration of the block."""
    saved_env = {k: os.environ.get(k) for k in QUIET_ENV}
    os.environ.update(QUIET_ENV)
    # Python warnings, and the libraries' own loggers (transformers' "torch_dtype is deprecated",
    # the accelerate notice): into the log files only
    loggers = [logging.getLogger(name) for name in ("py.warnings", *LIBRARY_LOGGERS)]
    saved = [(lg.handlers[:], lg.propagate, lg.level) for lg in loggers]
    for lg in loggers:
        lg.handlers = _file_handlers() or [logging.NullHandler()]
        lg.propagate = False
    loggers[0].setLevel(logging.WARNING)
    logging.captureWarnings(True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")  # each distinct warning once, to the log file
            yield
    finally:
        logging.captureWarnings(False)
        for lg, (handlers, propagate, level) in zip(loggers, saved):
            lg.handlers, lg.propagate = handlers, propagate
            lg.setLevel(level)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
