"""One machine per decision: timings from two machines are never ranked together.

Every job records the machine that timed it (tags ``machine.kind``, the hardware: CPU model,
cores, architecture, and ``machine.fingerprint``, the host; :func:`pipeline.core.machine.fingerprint`).
When the ok runs of a sweep come from more than one kind of machine (a records folder or tracking
server shared between hosts, a Slurm cluster with mixed nodes), the decision ranks the timings of
one kind, that of the latest ok run, and excludes the others with a reason that names their CPU
(status ``other-machine``); the report lists them.  Identical nodes of a cluster share a kind.
"""

from __future__ import annotations

import pandas as pd

from pipeline.core.vocab import Status

OTHER_MACHINE = "other-machine"


def one_machine(runs: pd.DataFrame) -> tuple[pd.DataFrame, str | None]:
    """(the runs with the other machines' ok runs marked ``other-machine``, the machine ranked)."""
    if runs.empty or "machine" not in runs:
        return runs, None
    ok = runs["status"] == Status.OK
    machines = runs.loc[ok, "machine"].fillna("").astype(str)
    if machines.nunique() <= 1:
        return runs, (machines.iloc[0] or None) if len(machines) else None
    latest = runs[ok].sort_values("start_time", kind="mergesort").iloc[-1]
    ref, ref_cpu = str(latest["machine"] or ""), str(latest.get("cpu_model") or "unknown CPU")
    out = runs.copy()
    for i in out.index[ok & (out["machine"].fillna("").astype(str) != ref)]:
        other = str(out.at[i, "machine"] or "") or "none recorded"
        cpu = str(out.at[i, "cpu_model"] or "unknown CPU") if "cpu_model" in out else "unknown CPU"
        out.at[i, "status"] = OTHER_MACHINE
        out.at[i, "reason"] = (
            f"timed on another machine ({cpu}, fingerprint {other}); this decision ranks the timings of "
            f"one machine only: {ref_cpu}, fingerprint {ref or 'none recorded'}"
        )
    return out, ref or None
