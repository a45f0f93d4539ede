"""The exit codes of ``python -m pipeline`` and ``python -m pipeline.sync`` (docs/resilience.md),
and :class:`PipelineError`, the base of the package's own errors.

One place for them: a script can act on each.  When several apply, the first in this order
wins: CONFIG, BUSY, FAILED, UNSYNCED, SKIPPED, OK.  Every error the package raises on purpose
derives from :class:`PipelineError` (and from the built-in error it is, e.g. ``ValueError``
for a bad value), and carries the exit code a command ends with when that error ends it.
A leaf module: it imports nothing from the package.
"""

from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    OK = 0  # every job ran (or was already done) and every result is logged
    FAILED = 1  # a job failed or did not run; or `python -m pipeline.sync`: a record could not be read or logged
    CONFIG = 2  # a bad configuration, option, value, model or records folder: nothing ran, nothing logged
    SKIPPED = 3  # a single job that cannot run here (logged with status=skipped)
    UNSYNCED = 4  # every job ran, but some results are only in the local records (`python -m pipeline.sync` logs them)
    BUSY = 5  # the same sweep is running in another process on these records: refused, nothing ran


class PipelineError(Exception):
    """Base of the package's errors: ``except PipelineError`` catches every failure the package
    reports on purpose (and no bug).  ``exit``: the code a command ends with because of it."""

    exit: Exit = Exit.FAILED
