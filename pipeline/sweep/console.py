"""What a sweep prints: its start, each job's progress and outcome, and the summary table."""

from __future__ import annotations

import sys
import time

from pipeline.core.redaction import redact
from pipeline.core.vocab import Metric, Status
from pipeline.sweep.state import JobOutcome, SweepState


def fmt_s(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def why(exc: BaseException) -> str:
    """An exception in one line (its type and first line), credentials redacted."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return redact(f"{type(exc).__name__}: {first[:200]}")


def started(st: SweepState, experiment: str, offline: str | None, sync_command: str) -> None:
    if offline:
        print(
            f"[sweep {st.name}] {len(st.jobs)} jobs; MLflow ({redact(st.tracking_uri)}) is unreachable ({offline}).\n"
            f"[sweep {st.name}] the sweep runs anyway: every job's results are kept in {st.records_dir}/ "
            f"(sweep record {st.parent_record}); they are logged at the end if MLflow is back, else by\n"
            f"    {sync_command}",
            file=sys.stderr,
            flush=True,
        )
    else:
        print(
            f"[sweep {st.name}] {len(st.jobs)} jobs, {'resuming' if st.resumed else 'parent'} run {st.parent_run_id} "
            f"(experiment {experiment}, {redact(st.tracking_uri)})",
            flush=True,
        )


def _measuring_s(st: SweepState, r: JobOutcome) -> float:
    """A job's seconds without its export (built once, then cached for the jobs after it)."""
    return max(0.0, r.seconds - st.metrics.get(r.num, {}).get("export.seconds", 0.0))


# the overrides whose value decides whether a job can run here at all (a provider this machine
# lacks, a model that needs a network): a job sharing one with a skipped job will be skipped too
SKIP_KEYS = ("provider", "model", "candidate", "variant")


def _likely_skipped(st: SweepState, job: list[str]) -> bool:
    skipped = {o for r in st.records if r.status == Status.SKIPPED for o in st.jobs[r.num] if o.lstrip("+").split("=", 1)[0] in SKIP_KEYS}
    return bool(skipped & set(job))


def eta_s(st: SweepState) -> float | None:
    """Seconds left: the jobs not run yet, at the mean measuring time of those that ran (exports
    and reused jobs left out: the export of the first job would inflate every estimate).  A job
    that shares its provider or model with a job that was skipped is counted as a skip (its mean
    time, about nothing), not as a full job."""
    ran = [_measuring_s(st, r) for r in st.records if r.status in (Status.OK, Status.FAILED)]
    if not ran:
        return None
    done = {r.num for r in st.records}
    left = [job for num, job in enumerate(st.jobs) if num not in done]
    skips = [r.seconds for r in st.records if r.status == Status.SKIPPED]
    n_skip = sum(_likely_skipped(st, job) for job in left)
    return sum(ran) / len(ran) * (len(left) - n_skip) + (sum(skips) / len(skips) if skips else 0.0) * n_skip


def progress(st: SweepState, num: int, label: str) -> None:
    elapsed = time.perf_counter() - st.started
    left = eta_s(st)
    eta = f"~{fmt_s(left)} left" if left is not None else "time left unknown"
    print(f"[sweep {st.name}] job {num + 1}/{len(st.jobs)}: {label} | elapsed {fmt_s(elapsed)}, {eta}", flush=True)


def job_done(st: SweepState, rec: JobOutcome) -> None:
    extra = f" ({rec.reason})" if rec.reason and rec.status != Status.OK else ""
    where = f"run {rec.run_id}" if rec.run_id else f"kept locally, record {rec.record_id} (MLflow unreachable)"
    print(f"[sweep {st.name}]   {rec.status} in {rec.seconds:.1f} s, {where}{extra}", flush=True)


def _metrics(st: SweepState, r: JobOutcome) -> dict[str, float]:
    m = st.metrics.get(r.num, {})
    if not m and r.run_id and r.status in (Status.OK, Status.DONE):
        try:
            m = st.client().get_run(r.run_id).data.metrics
        except Exception:
            m = {}
    return m


def _row(st: SweepState, r: JobOutcome, m: dict[str, float]) -> tuple:
    def f(name: str, fmt: str) -> str:
        return format(m[name], fmt) if name in m else "-"

    status = "done (reused)" if r.status == Status.DONE else str(r.status)
    return (
        f"{r.num + 1}/{len(st.jobs)}",
        r.label,
        status + (" (contended)" if m.get(Metric.CONTENDED) == 1.0 else ""),
        f(Metric.P50_MS, ".2f"),
        f(Metric.P95_MS, ".2f"),
        f(Metric.THROUGHPUT, ".1f"),
        f(Metric.STSB, ".2f"),
        f(Metric.NODE_SHARE, ".2f"),
        fmt_s(r.seconds),
        (r.run_id or "local")[:8],
        _note(r),
    )


def _note(r: JobOutcome) -> str:
    if r.status in (Status.SKIPPED, Status.FAILED):
        return "see below"
    return (r.reason or "")[:100]


def summary(st: SweepState, parent_run_id: str | None) -> None:
    """A table of the sweep's jobs (from the jobs' local records, or MLflow for reused runs)."""
    header = ("job", "config", "status", "p50 ms", "p95 ms", "sent/s", "STS", "node share", "time", "run", "note")
    loaded = [_metrics(st, r) for r in st.records]
    rows = [_row(st, r, m) for r, m in zip(st.records, loaded)]
    if any(Metric.LOAD_MAX_QPS in m for m in loaded):  # a load sweep: what each sustains
        header = header[:6] + ("qps@p95", "p95@100/s") + header[6:]
        rows = [
            row[:6]
            + (
                format(m[Metric.LOAD_MAX_QPS], ".0f") if Metric.LOAD_MAX_QPS in m else "-",
                format(m[Metric.LOAD_P95_AT_100], ".1f") if Metric.LOAD_P95_AT_100 in m else "-",
            )
            + row[6:]
            for row, m in zip(rows, loaded)
        ]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda row: "  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip()  # noqa: E731
    counts = {s: sum(r.status == s for r in st.records) for s in (Status.OK, Status.DONE, Status.SKIPPED, Status.FAILED)}
    out = [
        "",
        f"[sweep {st.name}] summary: parent run {parent_run_id or '(not logged yet)'}, {len(st.records)}/{len(st.jobs)} jobs, "
        f"{counts[Status.OK]} ok, {counts[Status.DONE]} already done, {counts[Status.SKIPPED]} skipped, "
        f"{counts[Status.FAILED]} failed, {fmt_s(time.perf_counter() - st.started)}",
        line(header),
        line(["-" * w for w in widths]),
        *(line(r) for r in rows),
        "",
        "node share: provider.node_share, the share of the graph's nodes that ran on the configured provider",
    ]
    why = [r for r in st.records if r.status in (Status.SKIPPED, Status.FAILED)]
    if why:
        out += ["", "skipped and failed jobs, why:"] + [
            f"  {r.num + 1}/{len(st.jobs)} {r.label}: {r.status}: {r.reason or '-'}" for r in why
        ]
    print("\n".join(out + [""]), flush=True)


def mlflow_ui_hint(tracking_uri: str) -> str:
    """How to look at the sweep's runs: the ``mlflow ui`` command for a local store, the address of a server."""
    uri = redact(tracking_uri)
    if uri.startswith(("http://", "https://")):
        return f"[sweep] the runs: open {uri} in a browser"
    return f"[sweep] the runs: mlflow ui --backend-store-uri {uri}   (then open http://127.0.0.1:5000)"
