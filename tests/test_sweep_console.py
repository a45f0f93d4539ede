"""What a sweep prints: an ETA that exports do not inflate, a summary that explains itself."""

from __future__ import annotations

from pipeline.sweep import console
from pipeline.sweep.state import JobOutcome, SweepState


def _state(n_jobs: int = 4) -> SweepState:
    return SweepState("t", "p", "e", "sqlite:///x.db", [[f"a={i}"] for i in range(n_jobs)], ["a"], False)


def test_the_eta_leaves_out_the_first_jobs_export():
    st = _state(4)
    st.records.append(JobOutcome(0, ["a=0"], "a=0", "ok", "r0", seconds=100.0))  # 90 s of it: the export
    st.metrics[0] = {"export.seconds": 90.0}
    st.records.append(JobOutcome(1, ["a=1"], "a=1", "ok", "r1", seconds=10.0))
    st.metrics[1] = {"export.seconds": 0.0}
    assert console.eta_s(st) == 20.0  # two jobs left at 10 s each, not at (100 + 10) / 2


def test_no_eta_before_a_job_ran_and_reused_jobs_do_not_count():
    st = _state(2)
    assert console.eta_s(st) is None
    st.records.append(JobOutcome(0, ["a=0"], "a=0", "done", "r0", seconds=0.0))
    assert console.eta_s(st) is None


def test_the_summary_explains_node_share_and_gives_each_skip_reason_whole(capsys):
    st = _state(2)
    reason = "the execution provider is not in this onnxruntime build: " + "x" * 150
    st.records.append(JobOutcome(0, ["a=0"], "a=0", "ok", "r0", seconds=1.0))
    st.metrics[0] = {"latency.p95_ms": 1.5, "provider.node_share": 1.0}
    st.records.append(JobOutcome(1, ["a=1"], "a=1", "skipped", "r1", reason=reason, seconds=0.5))
    console.summary(st, "p")
    out = capsys.readouterr().out
    assert "node share" in out and "provider.node_share" in out
    assert out.count(reason) == 1  # whole, once, below the table
    assert "2/2 a=1: skipped: " + reason in out


def test_the_eta_counts_jobs_like_a_skipped_one_as_skips():
    jobs = [
        ["provider=cpu", "bench.batch_size=1"],
        ["provider=cuda", "bench.batch_size=1"],
        ["provider=cpu", "bench.batch_size=8"],
        ["provider=cuda", "bench.batch_size=8"],
    ]
    st = SweepState("t", "p", "e", "sqlite:///x.db", jobs, ["provider", "bench.batch_size"], False)
    st.records.append(JobOutcome(0, jobs[0], "cpu b1", "ok", "r0", seconds=10.0))
    st.records.append(JobOutcome(1, jobs[1], "cuda b1", "skipped", "r1", reason="no NVIDIA GPU", seconds=0.5))
    # left: cpu b8 (a full job) and cuda b8 (skipped like cuda b1), not two full jobs
    assert console.eta_s(st) == 10.5
