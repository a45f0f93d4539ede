"""Resume: the jobs an earlier run already measured (by config hash), and a killed sweep's parent."""

from __future__ import annotations

from pipeline.core.vocab import Metric, Status, contended_reason
from pipeline.tracking import records


def find_done(client, experiment_id: str, chash: str, machine: str | None = None):
    """The latest FINISHED MLflow run with status=ok and this config hash, timed on this machine
    (fingerprint ``machine``) and not contended, or None: a timing from another machine, or from
    a busy one, is measured again (the export and the quality scores come from the cache)."""
    same_machine = f" and tags.`machine.fingerprint` = '{machine}' and tags.`bench.contended` = 'false'" if machine else ""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.config_hash = '{chash}' and tags.status = '{Status.OK}' and attributes.status = 'FINISHED'{same_machine}",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None


def reusable_timing(tags: dict, machine: str | None) -> bool:
    """A timing may be reused here: taken on this machine (its fingerprint) and not contended."""
    if machine is None:
        return True
    return tags.get("machine.fingerprint") == machine and not contended_reason(tags.get(Metric.CONTENDED))


def find_done_locally(records_dir: str, chash: str, tracking_uri: str, machine: str | None = None):
    """The latest local record with status ok and this config hash that belongs to this store
    (logged to it, or not logged anywhere yet), timed on this machine and not contended, or None."""
    found = [
        r
        for _, r in records.find(records_dir, "config_hash", chash)
        if r.status == Status.OK and r.tracking_uri in (None, tracking_uri) and reusable_timing(r.tags, machine)
    ]
    return found[-1] if found else None


def open_parent(records_dir: str, sweep_key: str):
    """The latest parent record of this sweep that never ended (a killed sweep), or None."""
    found = [(f, r) for f, r in records.find(records_dir, "sweep.key", sweep_key) if r.is_parent and r.status == Status.RUNNING]
    return found[-1] if found else None


def job_records(records_dir: str, parent_record: str, num: int | None = None, since: float = 0.0):
    """The records of a sweep's jobs (of job ``num`` only, when given) created at ``since`` or later."""
    return [
        (f, r)
        for f, r in records.find(records_dir, "sweep.parent_record", parent_record)
        if not r.is_parent and (num is None or r.tags.get("sweep.job") == str(num)) and r.created >= since
    ]
