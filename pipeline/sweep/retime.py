"""Re-time the leading configurations of a sweep, in alternation, to measure the noise between runs.

One benchmark per configuration cannot say whether a 5% gap between two of them is real: a slow
spell of the machine lasts longer than one run, and a bootstrap of the run's own calls cannot
see it.  At a sweep's end the leaders (the top of a first ranking of the sweep's records) are
timed again, ``rounds`` times, each round in a rotated order (A B C, B C A, C A B), with the
benchmark the job used (its ``bench_spec.json``).  The decision takes each leader's median over
its sweep run and the quiet rounds, and treats differences inside their range as ties
(:func:`pipeline.decision.noise.between_runs`).  Contended rounds are kept in the file, marked,
and left out.

The result is ``retime.json`` in the sweep's parent record (logged with it to MLflow).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from pipeline.config import BenchConfig, ContentionConfig, QualityConfig, RetimeConfig
from pipeline.core.vocab import Metric
from pipeline.data.sts import load_sts
from pipeline.decision import decide, from_records
from pipeline.decision.inputs import RETIME_FILE as FILE
from pipeline.decision.matrix import leaders as ranked_leaders
from pipeline.measure import bench
from pipeline.model import validate
from pipeline.tracking import records


def _sentences(spec: dict) -> list[str]:
    if spec.get("texts"):  # a workload's own texts (pipeline/measure/workload.py), as the job timed them
        return list(spec["texts"])
    q = spec.get("quality")
    if not q:
        return list(validate.PARITY_SENTENCES) * 8
    return load_sts(QualityConfig(**q)).unique_sentences


def _bench_config(spec: dict, settings: RetimeConfig) -> BenchConfig:
    raw = dict(spec["bench"])
    contention = ContentionConfig(**{**raw.pop("contention", {}), "retries": 0})  # a contended round is left out, not retried
    cfg = BenchConfig(**{**raw, "contention": contention})
    cfg.max_seconds = settings.max_seconds
    return cfg


def contended_contenders(found: list[tuple[Path, records.RunRecord]], decision_cfg, top_k: int) -> list[tuple[str, str, Path]]:
    """The contended configurations that could change the decision: those that, ranked as if
    they had been measured quietly, reach the top ``top_k`` (passing the hard gates, with a
    ``bench_spec.json``).  Returns (record id, why it was contended, folder)."""
    inputs = from_records(found, decision_cfg.samples_artifact)
    runs = inputs.runs
    if runs.empty or not (runs["contended"].astype(str) != "").any():
        return []
    why = dict(zip(runs["record_id"], runs["contended"].astype(str)))
    folders = {r.record_id: f for f, r in found}
    out = []
    for _, row in ranked_leaders(runs.assign(contended=""), decision_cfg, top_k).iterrows():  # as if every one were quiet
        folder = folders.get(row["record_id"])
        if why.get(row["record_id"]) and folder is not None and (folder / "bench_spec.json").is_file():
            out.append((row["record_id"], why[row["record_id"]], folder))
    return out


def leaders(found: list[tuple[Path, records.RunRecord]], decision_cfg, top_k: int) -> list[tuple[str, Path]]:
    """The top ``top_k`` configurations of a first ranking of these records that can be timed
    again: quiet (not contended), passing the hard gates, with a ``bench_spec.json``."""

    inputs = from_records(found, decision_cfg.samples_artifact)
    ranked = decide(inputs, decision_cfg).ranking
    folders = {r.record_id: f for f, r in found}
    out = []
    for _, row in ranked.iterrows():
        if not row["eligible"] or str(row.get("contended") or ""):
            continue
        folder = folders.get(row["record_id"])
        if folder is not None and (folder / "bench_spec.json").is_file():
            out.append((row["record_id"], folder))
        if len(out) == top_k:
            break
    return out


def _runtime(spec: dict):
    """The provider's own environment a job was timed in (bench_spec.json ``runtime``), or None:
    a re-timing runs where the first timing ran."""
    rt = spec.get("runtime")
    if not rt:
        return None
    from pipeline.runtime.providers import Runtime

    return Runtime(rt["python"], rt["env"], tuple(rt.get("packages") or ()))


def retime(targets: list[tuple[str, Path]], settings: RetimeConfig, cache_dir: str | Path, progress=print) -> dict:
    """Time each target again ``settings.rounds`` times, in rotated order; returns the payload of
    ``retime.json``: the settings and one entry per benchmark (record id, round, metrics, contended)."""
    specs = {rid: json.loads((folder / "bench_spec.json").read_text()) for rid, folder in targets}
    sentences = {rid: _sentences(spec) for rid, spec in specs.items()}
    rows = []
    n = len(targets)
    for r in range(settings.rounds):
        order = targets[r % n :] + targets[: r % n] if n else []
        for rid, _ in order:
            spec = specs[rid]
            progress(
                f"[retime] round {r + 1}/{settings.rounds}: {Path(spec['embedder']['model_dir']).name} "
                f"batch {spec['bench']['batch_size']} ({rid[:8]})"
            )
            b = bench.run(
                spec["embedder"],
                sentences[rid],
                _bench_config(spec, settings),
                cache_dir=cache_dir,
                precision=spec.get("precision", "fp32"),
                runtime=_runtime(spec),
            )
            m = b.metrics()
            rows.append(
                {
                    "record_id": rid,
                    "round": r,
                    "contended": b.contended,
                    "metrics": {k: m[k] for k in (Metric.P50_MS, Metric.P95_MS, Metric.P99_MS, Metric.THROUGHPUT) if k in m},
                    "conditions": b.conditions.metrics() if b.conditions is not None else {},
                }
            )
    return {"settings": asdict(settings), "rounds": rows}


def retime_sweep(
    parent_folder: Path, found: list[tuple[Path, records.RunRecord]], decision_cfg, cache_dir: str | Path, progress=print
) -> dict | None:
    """Re-time the leaders of a sweep's records; writes ``retime.json`` into its parent record.

    None when there is nothing to compare (fewer than two leaders, or re-timing switched off)."""
    settings = decision_cfg.retime
    if settings.rounds <= 0:
        return None
    targets = leaders(found, decision_cfg, settings.top_k) if settings.top_k >= 2 else []
    # contended jobs that could reach the top group: measured again, in the same alternation
    flagged = contended_contenders(found, decision_cfg, max(settings.top_k, 1))
    if len(targets) < 2 and not flagged:
        return None
    what = f"the {len(targets)} leading configurations" + (f" and {len(flagged)} contended in the sweep" if flagged else "")
    targets += [(rid, folder) for rid, _, folder in flagged]
    progress(f"[retime] {what}, {settings.rounds} rounds in alternation ({settings.max_seconds:g} s each): the noise between runs")
    payload = retime(targets, settings, cache_dir, progress)
    payload["contended_retimed"] = [{"record_id": rid, "contended": why} for rid, why, _ in flagged]
    (Path(parent_folder) / FILE).write_text(json.dumps(payload, indent=2))
    _say_what_changed(payload, flagged, progress)
    return payload


def _say_what_changed(payload: dict, flagged: list, progress) -> None:
    """One line per contended job re-timed: quiet now (its quiet p95), or still contended (kept out)."""
    for rid, why, _ in flagged:
        mine = [r for r in payload["rounds"] if r["record_id"] == rid]
        quiet = [r["metrics"].get(Metric.P95_MS) for r in mine if not r["contended"]]
        if quiet:
            progress(
                f"[retime] {rid[:8]} was contended ({why}); quiet in {len(quiet)} of {len(mine)} rounds: ranked with "
                f"its quiet figures (p95 {min(quiet):.3g}-{max(quiet):.3g} ms)"
            )
        else:
            progress(f"[retime] {rid[:8]} was contended ({why}) and stayed contended in all {len(mine)} rounds: not comparable")
