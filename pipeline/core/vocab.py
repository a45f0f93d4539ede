"""The names the modules and the tests share: run statuses and the metric names every run logs.

One home for the contract that ``docs/design.md`` ("What every run logs") describes, so that a
metric renamed here is renamed everywhere, and a typo is an AttributeError, not a silent miss.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """A job's status (the ``status`` tag of its run and record)."""

    OK = "ok"  # measured
    SKIPPED = "skipped"  # cannot run here (provider missing, no network for a hub model): logged with its reason
    FAILED = "failed"  # raised; its traceback is an artifact
    DONE = "done"  # already measured by an earlier run with the same config hash (reused, not run again)
    RUNNING = "running"  # a record whose job has not finished (or whose process was killed)
    UNFINISHED = "unfinished"  # an MLflow run left RUNNING, half logged: never ranked


# the pooling modes of the embedder (pipeline.embedder.embed) and the config's check
POOLING_MODES = ("mean", "cls", "max", "last_token")

# statuses whose results count (measured now, or reused)
RESULT_STATUSES = (Status.OK, Status.DONE)


class Metric(StrEnum):
    """Metric names read by more than one module (the full list is in docs/design.md)."""

    P50_MS = "latency.p50_ms"
    P95_MS = "latency.p95_ms"
    P99_MS = "latency.p99_ms"
    THROUGHPUT = "throughput.sentences_per_s"
    STSB = "quality.stsb_spearman"
    STSB_DELTA = "quality.stsb_delta_vs_fp32"
    SEPARATION = "quality.separation"
    PARITY = "parity.min_cosine"
    PEAK_RSS_MB = "memory.peak_rss_mb"
    MODEL_SIZE_MB = "model.size_mb"
    NODE_SHARE = "provider.node_share"
    CONTENDED = "bench.contended"
    LOAD_MAX_QPS = "load.max_qps_at_p95_target"
    LOAD_P95_AT_100 = "load.p95_ms_at_100qps"


QUIET = "false"  # the tag bench.contended of a benchmark that had the machine to itself (else: the reason)


def contended_reason(tag: object) -> str:
    """The reason in a ``bench.contended`` tag, or "" for a quiet benchmark (``false``, and runs logged
    before the tag held a reason: ``0``, ``none``, missing)."""
    text = "" if tag is None else str(tag)
    return "" if text.lower() in (QUIET, "0", "none", "") else text
