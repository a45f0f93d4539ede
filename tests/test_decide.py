"""The decision matrix on synthetic sweeps: fake child runs with made-up metrics (test data, not results)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from pipeline.config import ConfigError
from pipeline.decision import DecideError, as_decision_config, compose_decision, decide_sweep
from pipeline.decision.cli import main

FAST = ["robustness.bootstrap=200", "robustness.noise_draws=20"]


def profile(name: str = "default", *overrides: str):
    """The `decision` group as Hydra composes it, with a small bootstrap to keep the tests fast."""
    return compose_decision(name, [f"decision.{o}" for o in (*FAST, *overrides)]).decision


def good_metrics(p95: float, **kw) -> dict[str, float]:
    m = {
        "latency.p50_ms": p95 * 0.8,
        "latency.p95_ms": p95,
        "throughput.sentences_per_s": 300.0,
        "quality.stsb_spearman": 80.0,
        "quality.sim_high": 0.8,
        "quality.sim_low": 0.2,
        "quality.separation": 0.6,
        "quality.l2_norm_max_dev": 1e-6,
        "parity.min_cosine": 0.9999,
        "model.size_mb": 90.0,
        "memory.peak_rss_mb": 400.0,
    }
    m.update(kw)
    return m


class Store:
    """A private sqlite MLflow store with one experiment; builds fake sweeps in it."""

    def __init__(self, tmp: Path, template_db: Path):
        self.tmp = tmp
        shutil.copyfile(template_db, tmp / "mlflow.db")  # an empty, migrated store: no schema setup per test
        self.uri = f"sqlite:///{tmp}/mlflow.db"
        self.client = MlflowClient(self.uri)
        self.exp = self.client.create_experiment("decide-test", artifact_location=(tmp / "artifacts").as_uri())
        self.n = 0

    def sweep(self, configs: list[dict], name: str = "test-sweep") -> str:
        parent = self.client.create_run(self.exp, run_name=name, tags={"sweep": name})
        pid = parent.info.run_id
        for c in configs:
            self.child(pid, **c)
        self.client.set_terminated(pid)
        return pid

    def child(
        self,
        parent_id: str,
        pooling: str = "mean",
        batch_size: int = 1,
        metrics: dict | None = None,
        status: str | None = "ok",
        reason: str = "",
        samples_ms: np.ndarray | None = None,
        variant: str = "fp32",
        finished: bool = True,
    ) -> str:
        self.n += 1
        tags = {"mlflow.parentRunId": parent_id}
        if status is not None:
            tags["status"] = status
        if reason:
            tags["reason"] = reason
        run = self.client.create_run(self.exp, run_name=f"child-{self.n}", tags=tags)
        rid = run.info.run_id
        params = {
            "model": "tiny",
            "variant": variant,
            "provider": "cpu",
            "pooling": pooling,
            "batch_size": batch_size,
            "max_length": 64,
            "threads": 0,
        }
        self.client.log_batch(
            rid,
            metrics=[Metric(k, float(v), 0, 0) for k, v in (metrics or {}).items()],
            params=[Param(k, str(v)) for k, v in params.items()],
        )
        if samples_ms is not None:
            f = self.tmp / f"samples-{self.n}" / "latency_samples_ns.csv"
            f.parent.mkdir()
            pd.DataFrame({"latency_ns": (np.asarray(samples_ms) * 1e6).astype(np.int64)}).to_csv(f, index=False)
            self.client.log_artifact(rid, str(f))
        if finished:
            self.client.set_terminated(rid, "FAILED" if status == "failed" else "FINISHED")
        return rid


@pytest.fixture(scope="session")
def template_db(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("mlflow-template")
    MlflowClient(f"sqlite:///{folder}/mlflow.db").search_experiments()  # creates the schema
    return folder / "mlflow.db"


@pytest.fixture
def store(tmp_path, template_db) -> Store:
    return Store(tmp_path, template_db)


def samples(center_ms: float, n: int = 300, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return center_ms + rng.gamma(2.0, 0.5, size=n)


def with_samples(s: np.ndarray, **kw) -> dict:
    """A config whose latency metrics come from its samples."""
    p95 = float(np.percentile(s, 95))
    return {"metrics": good_metrics(p95, **{"latency.p50_ms": float(np.percentile(s, 50)), **kw}), "samples_ms": s}


# ---------------------------------------------------------------------------------------------


def test_hard_gate_failure_excludes_the_best_scoring_configuration(store, tmp_path):
    pid = store.sweep(
        [
            # the fastest and best on every criterion, but its ONNX output does not match the reference
            {
                "pooling": "cls",
                "metrics": good_metrics(
                    5.0, **{"parity.min_cosine": 0.5, "quality.stsb_spearman": 90.0, "throughput.sentences_per_s": 900.0}
                ),
            },
            {"pooling": "mean", "metrics": good_metrics(12.0)},
            # no parity metric at all
            {"pooling": "max", "metrics": {k: v for k, v in good_metrics(4.0).items() if k != "parity.min_cosine"}},
        ]
    )
    d = decide_sweep(pid, profile(), store.uri, out_dir=tmp_path / "reports")
    r = d.ranking.set_index("label")
    assert d.winner is not None and d.winner.label == "tiny/fp32/cpu/mean/b1"
    assert d.verdict == "go"
    broken = r.loc["tiny/fp32/cpu/cls/b1"]
    assert not broken["eligible"] and broken["verdict"] == "no-go"
    assert broken["gate.parity.min_cosine >= 0.99"] == "fail"
    assert "parity.min_cosine >= 0.99: got 0.5" in broken["why"]
    missing = r.loc["tiny/fp32/cpu/max/b1"]
    assert not missing["eligible"]
    assert "parity.min_cosine >= 0.99: metric missing" in missing["why"]
    # the gate-failed ones rank below every configuration that passes
    assert list(d.ranking["eligible"]) == [True, False, False]
    # fixed scales: the winner's total is its own values on the profile's scales, whoever else ran
    expected = (
        0.30 * (30 - 12) / 29
        + 0.20 * np.log(300 / 100) / np.log(30)
        + 0.30 * (80 - 60) / 30
        + 0.10 * np.log(90 / 1000) / np.log(10 / 1000)
        + 0.10 * np.log(400 / 2000) / np.log(50 / 2000)
    )
    assert d.ranking.loc[0, "total_pct"] == pytest.approx(100 * expected)
    assert not d.ranking.filter(like="score.").isna().any().any()


def test_moving_a_weight_changes_the_ranking_the_way_it_should(store, tmp_path):
    fast = {"pooling": "cls", "metrics": good_metrics(10.0, **{"quality.stsb_spearman": 70.0})}
    accurate = {"pooling": "mean", "metrics": good_metrics(19.0, **{"quality.stsb_spearman": 85.0})}
    middle = {"pooling": "max", "metrics": good_metrics(16.0, **{"quality.stsb_spearman": 78.0})}
    pid = store.sweep([fast, accurate, middle])
    out = tmp_path / "reports"

    def winner(cfg):
        return decide_sweep(pid, cfg, store.uri, out_dir=out, log_to_parent=False).winner.label

    cfg = profile()
    lat = next(c for c in cfg.criteria if c.metric == "latency.p95_ms")
    sts = next(c for c in cfg.criteria if c.metric == "quality.stsb_spearman")
    lat.weight, sts.weight = 0.6, 0.1
    assert winner(cfg) == "tiny/fp32/cpu/cls/b1"
    lat.weight, sts.weight = 0.1, 0.6
    assert winner(cfg) == "tiny/fp32/cpu/mean/b1"
    # the second profile moves the weights towards latency: the fast configuration wins there
    assert winner(profile("latency_first")) == "tiny/fp32/cpu/cls/b1"


def test_weight_robustness_reports_a_near_tie_as_fragile(store, tmp_path):
    # latency and quality weigh the same (0.3 each) and the two configurations trade them exactly
    # on the default profile's fixed scales (p95: 1 to 30 ms, STS: 60 to 90), the slower one a hair ahead
    sts_for_equal = 75.0 + 30 * (19.0 - 10.0) / 29 + 0.01
    pid = store.sweep(
        [
            {"pooling": "cls", "metrics": good_metrics(10.0, **{"quality.stsb_spearman": 75.0})},
            {"pooling": "mean", "metrics": good_metrics(19.0, **{"quality.stsb_spearman": sts_for_equal})},
        ]
    )
    d = decide_sweep(pid, profile(), store.uri, out_dir=tmp_path / "reports", log_to_parent=False)
    w = d.robustness.weights.set_index(["criterion", "change"])
    assert w.loc[("latency.p95_ms", "+20%"), "winner"] == "tiny/fp32/cpu/cls/b1"
    assert w.loc[("quality.stsb_spearman", "+20%"), "winner"] == "tiny/fp32/cpu/mean/b1"
    assert len(w) == 2 * len(d.config.criteria)
    assert 0 < d.robustness.winner_stability < 1


@pytest.mark.parametrize("p95, verdict", [(15.0, "go"), (25.0, "close"), (35.0, "no-go")])
def test_verdict_follows_target_and_acceptable_levels(store, tmp_path, p95, verdict):
    pid = store.sweep([{"metrics": good_metrics(p95)}])
    d = decide_sweep(pid, profile(), store.uri, out_dir=tmp_path / "reports")
    assert d.winner is not None  # it passes the hard gates: it is the best there is, whatever the verdict
    assert d.verdict == verdict
    assert d.recommendation.startswith(verdict.upper())
    gate = d.ranking.loc[0, "gate.latency.p95_ms <= 20"]
    assert gate == {"go": "target", "close": "acceptable", "no-go": "fail"}[verdict]
    if verdict != "go":
        assert any("latency.p95_ms" in m for m in d.winner.misses)
    assert "python -m pipeline model=tiny variant=fp32 provider=cpu pooling=mean bench.batch_size=1" in d.recommendation


def test_a_configuration_at_target_outranks_a_higher_scoring_one_at_acceptable(store, tmp_path):
    # throughput 90/s misses the 100/s target (acceptable = target: no-go), though it scores higher
    pid = store.sweep(
        [
            {"pooling": "cls", "metrics": good_metrics(8.0, **{"throughput.sentences_per_s": 90.0, "quality.stsb_spearman": 85.0})},
            {"pooling": "mean", "metrics": good_metrics(14.0)},
        ]
    )
    d = decide_sweep(pid, profile(), store.uri, out_dir=tmp_path / "r1", log_to_parent=False)
    assert d.winner.label == "tiny/fp32/cpu/mean/b1" and d.verdict == "go"
    assert d.ranking.loc[1, "total_pct"] > d.ranking.loc[0, "total_pct"]
    d2 = decide_sweep(pid, profile("default", "prefer_verdict=false"), store.uri, out_dir=tmp_path / "r2", log_to_parent=False)
    assert d2.winner.label == "tiny/fp32/cpu/cls/b1" and d2.verdict == "no-go"


def test_skipped_and_failed_runs_are_listed_not_ranked(store, tmp_path):
    pid = store.sweep(
        [
            {"pooling": "mean", "metrics": good_metrics(12.0)},
            {"pooling": "cls", "metrics": good_metrics(14.0)},
            {"variant": "fp16", "status": "skipped", "reason": "execution provider CUDAExecutionProvider is not in this onnxruntime build"},
            {"variant": "int8", "status": "failed", "reason": "RuntimeError: quantization broke", "metrics": good_metrics(1.0)},
            {"variant": "o4", "status": None},  # still running / crashed before tagging
        ]
    )
    d = decide_sweep(pid, profile(), store.uri, out_dir=tmp_path / "reports")
    assert len(d.ranking) == 2
    assert set(d.ranking["variant"]) == {"fp32"}
    ex = d.excluded.set_index("variant")
    assert ex.loc["fp16", "status"] == "skipped" and "CUDAExecutionProvider" in ex.loc["fp16", "reason"]
    assert ex.loc["int8", "status"] == "failed" and "quantization broke" in ex.loc["int8", "reason"]
    assert ex.loc["o4", "status"] == "unfinished"
    report = (tmp_path / "reports" / pid / "report.md").read_text()
    assert "CUDAExecutionProvider is not in this onnxruntime build" in report
    assert "quantization broke" in report
    assert len(pd.read_csv(tmp_path / "reports" / pid / "excluded.csv")) == 3


def test_outputs_are_written_and_logged_on_the_parent(store, tmp_path):
    a, b, c = samples(9.0, seed=1), samples(13.0, seed=2), samples(17.0, seed=3)
    pid = store.sweep(
        [
            {"pooling": "mean", **with_samples(a)},
            {"pooling": "cls", **with_samples(b, **{"quality.stsb_spearman": 82.0})},
            {"pooling": "max", **with_samples(c, **{"quality.stsb_spearman": 83.0})},
            {"pooling": "last_token", "status": "skipped", "reason": "not for this model"},
        ]
    )
    out = tmp_path / "reports"
    d = decide_sweep(pid, profile(), store.uri, out_dir=out)
    folder = out / pid
    names = {
        "ranking.csv",
        "ranking.md",
        "report.md",
        "report.html",
        "decision.json",
        "excluded.csv",
        "robustness_weights.csv",
        "robustness_noise.csv",
        "robustness_between_runs.csv",
        "pareto.png",
        "latency_cdf.png",
        "scores.png",
        "differences.png",
    }
    assert names <= {p.name for p in folder.iterdir()}
    assert names <= {p.name for p in (out / "latest").iterdir()}
    for png in ("pareto.png", "latency_cdf.png", "scores.png"):
        assert (folder / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ranking = pd.read_csv(folder / "ranking.csv")
    assert list(ranking["label"]) == list(d.ranking["label"])
    assert {"total_pct", "score.latency.p95_ms", "gate.parity.min_cosine >= 0.99", "why", "verdict"} <= set(ranking.columns)
    report = (folder / "report.md").read_text()
    assert d.winner.label in report and d.winner.command in report
    assert "![Pareto front](pareto.png)" in report
    headline = json.loads((out / "metrics.json").read_text())
    assert headline["winner"] == d.winner.label
    assert headline["verdict"] == d.verdict
    assert headline["latency_p95_ms"] == pytest.approx(float(np.percentile(d.samples_ms[d.winner.label], 95)), rel=1e-6)
    assert headline["score_pct"] == pytest.approx(d.winner.score_pct)

    client = MlflowClient(store.uri)
    parent = client.get_run(pid)
    assert {f"decision/{n}" for n in names} <= {a.path for a in client.list_artifacts(pid, "decision")}
    assert parent.data.tags["decision.winner"] == d.winner.label
    assert parent.data.tags["decision.verdict"] == d.verdict
    assert parent.data.tags["decision.winner_run_id"] == d.winner.run_id
    winner_run = client.get_run(d.winner.run_id)
    for key in ("latency.p95_ms", "throughput.sentences_per_s", "quality.stsb_spearman"):
        assert parent.data.metrics[f"best.{key}"] == pytest.approx(winner_run.data.metrics[key])
    assert parent.data.metrics["best.score_pct"] == pytest.approx(d.winner.score_pct)
    # every ranked job's run carries its rank and verdict
    for _, row in d.ranking.iterrows():
        child_tags = client.get_run(row["run_id"]).data.tags
        assert child_tags["decision.rank"] == str(row["rank"]) and child_tags["decision.verdict"] == row["verdict"]
        assert child_tags["decision.of"] == "3" and child_tags["decision.parent"] == pid
    # the run's description in the UI: the recommendation and the top of the ranking
    note = parent.data.tags["mlflow.note.content"]
    assert note.startswith("**GO**: " + d.recommendation.split(" Reproduce: ")[0].removeprefix("GO: "))
    assert d.winner.command in note and "| configuration" in note
    # the HTML report carries its figures inside (MLflow's artifact viewer shows no relative images)
    page = (folder / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 4 and "<table>" in page and "pareto.png)" not in page


def test_noise_check_separates_real_differences_from_measurement_noise(store, tmp_path):
    base = samples(10.0, seed=7)
    pid = store.sweep(
        [
            {"pooling": "mean", **with_samples(base)},
            # the same distribution (to a microsecond) and the same quality: the difference is noise
            {"pooling": "cls", **with_samples(base + 0.001)},
            # clearly slower
            {"pooling": "max", **with_samples(base + 5.0, **{"quality.stsb_spearman": 79.5})},
        ]
    )
    d = decide_sweep(pid, profile(), store.uri, out_dir=tmp_path / "reports", log_to_parent=False)
    noise = d.robustness.noise.set_index("label")
    assert d.winner.label == "tiny/fp32/cpu/mean/b1"
    assert not noise.loc["tiny/fp32/cpu/cls/b1", "distinguishable"]
    assert noise.loc["tiny/fp32/cpu/max/b1", "distinguishable"]
    lo, hi = noise.loc["tiny/fp32/cpu/max/b1", ["diff_ci_low_ms", "diff_ci_high_ms"]]
    assert lo < 5.0 < hi
    for _, row in noise.iterrows():
        assert row["ci_low_ms"] <= row["p95_ms"] <= row["ci_high_ms"]
    # the near-twin makes the winner fragile under redraws of p95; it is not always the winner
    assert d.robustness.noise_draws == 20
    assert 0 < d.robustness.noise_stability < 1


def test_deciding_twice_reproduces_the_ranking(store, tmp_path):
    pid = store.sweep(
        [
            {"pooling": p, **with_samples(samples(8.0 + i, seed=i), **{"quality.stsb_spearman": 75.0 + 2 * i})}
            for i, p in enumerate(["mean", "cls", "max", "last_token"])
        ]
    )
    out = tmp_path / "reports"
    first = decide_sweep(pid, profile(), store.uri, out_dir=out)
    files1 = {n: (out / pid / n).read_bytes() for n in ("ranking.csv", "decision.json", "robustness_noise.csv", "report.md")}
    second = decide_sweep(pid, profile(), store.uri, out_dir=out)
    files2 = {n: (out / pid / n).read_bytes() for n in files1}
    assert list(first.ranking["run_id"]) == list(second.ranking["run_id"])
    assert files1 == files2


def test_a_sweep_where_nothing_passes_is_a_no_go_without_winner(store, tmp_path):
    pid = store.sweep([{"metrics": good_metrics(10.0, **{"quality.l2_norm_max_dev": 0.2})}, {"status": "skipped", "reason": "no provider"}])
    d = decide_sweep(pid, profile(), store.uri, out_dir=tmp_path / "reports")
    assert d.winner is None and d.verdict == "no-go"
    assert "none of the 1 configurations passes the hard gates" in d.recommendation
    assert MlflowClient(store.uri).get_run(pid).data.tags["decision.winner"] == "none"
    assert json.loads((tmp_path / "reports" / "metrics.json").read_text())["winner"] is None


def test_a_sweep_where_every_run_was_skipped_still_reports(store, tmp_path):
    pid = store.sweep(
        [
            {"status": "skipped", "reason": "CoreML is not in this onnxruntime build"},
            {"pooling": "cls", "status": "failed", "reason": "RuntimeError: out of memory"},
        ]
    )
    d = decide_sweep(pid, profile(), store.uri, out_dir=tmp_path / "reports")
    assert d.ranking.empty and d.winner is None and d.verdict == "no-go"
    assert len(d.excluded) == 2
    folder = tmp_path / "reports" / pid
    assert {"report.md", "ranking.csv", "pareto.png", "latency_cdf.png", "scores.png"} <= {p.name for p in folder.iterdir()}
    assert "CoreML is not in this onnxruntime build" in (folder / "report.md").read_text()


def test_command_line_decides_the_latest_sweep(store, tmp_path, capsys):
    store.sweep([{"metrics": good_metrics(25.0)}], name="older")
    newer = store.sweep([{"metrics": good_metrics(12.0)}, {"pooling": "cls", "metrics": good_metrics(14.0)}], name="newer")
    out = tmp_path / "reports"
    rc = main(["--tracking-uri", store.uri, "--out", str(out), "--profile", "latency_first", *(f"decision.{o}" for o in FAST)])
    assert rc == 0
    assert (out / newer / "report.md").is_file()
    printed = capsys.readouterr().out
    assert printed.startswith("GO: ship tiny/fp32/cpu/mean/b1")
    assert MlflowClient(store.uri).get_run(newer).data.tags["decision.profile"] == "latency_first"
    assert main(["--tracking-uri", store.uri, "--out", str(out), "--parent", "0" * 32]) == 1


def test_a_store_without_sweeps_and_a_run_without_children_are_refused(store, tmp_path):
    with pytest.raises(DecideError, match="no sweep"):
        from pipeline.decision import latest_parent
        from pipeline.decision.mlflow_io import client as _client

        latest_parent(_client(store.uri))
    lone = store.client.create_run(store.exp).info.run_id
    with pytest.raises(DecideError, match="no child runs"):
        decide_sweep(lone, profile(), store.uri, out_dir=tmp_path / "reports")


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"criteria": [{"metric": "latency.p95_ms", "direction": "down"}]}, "direction"),
        ({"criteria": [{"metric": "latency.p95_ms", "weight": -1}]}, "weight"),
        ({"criteria": [{"metric": "latency.p95_ms", "normalize": "levels", "best": 10}]}, "best"),
        ({"graded_gates": [{"metric": "latency.p95_ms", "op": "<=", "target": 20, "acceptable": 10}]}, "acceptable"),
        ({"hard_gates": [{"metric": "parity.min_cosine", "op": "=>", "value": 0.9}]}, "op"),
        ({"criteria": [{"metric": "a", "weight": 0}]}, "criteria"),
    ],
)
def test_bad_decision_config_is_refused_with_the_field(bad, field):
    with pytest.raises(ConfigError, match=field):
        as_decision_config(bad)


def test_levels_normalization_uses_the_fixed_scale(store, tmp_path):
    pid = store.sweep([{"pooling": "mean", "metrics": good_metrics(15.0)}, {"pooling": "cls", "metrics": good_metrics(25.0)}])
    cfg = as_decision_config(
        {
            "criteria": [{"metric": "latency.p95_ms", "direction": "min", "normalize": "levels", "best": 10, "worst": 30}],
            "robustness": {"bootstrap": 0},
        }
    )
    d = decide_sweep(pid, cfg, store.uri, out_dir=tmp_path / "reports", log_to_parent=False)
    scores = d.ranking.set_index("label")["score.latency.p95_ms"]
    assert scores["tiny/fp32/cpu/mean/b1"] == pytest.approx(0.75)
    assert scores["tiny/fp32/cpu/cls/b1"] == pytest.approx(0.25)


def test_quantized_variants_are_gated_on_quality_loss_not_parity():
    """The default profile: exact exports must reach parity; quantized ones must keep STS."""
    from pipeline.decision import evaluate

    cfg = profile()
    rows = [
        {"run_id": "a", "label": "fp32", "variant": "fp32", **good_metrics(10.0), "quality.stsb_delta_vs_fp32": 0.0},
        {
            "run_id": "b",
            "label": "int8-ok",
            "variant": "int8_dynamic",
            **good_metrics(5.0, **{"parity.min_cosine": 0.85}),
            "quality.stsb_delta_vs_fp32": -0.1,
        },
        {
            "run_id": "c",
            "label": "int8-lossy",
            "variant": "int8_static",
            **good_metrics(4.0, **{"parity.min_cosine": 0.6}),
            "quality.stsb_delta_vs_fp32": -5.6,
        },
        {
            "run_id": "d",
            "label": "broken-fp32",
            "variant": "fp32",
            **good_metrics(3.0, **{"parity.min_cosine": 0.5}),
            "quality.stsb_delta_vs_fp32": 0.0,
        },
        {"run_id": "e", "label": "imported", "variant": "fp32", **good_metrics(6.0)},  # no delta: passes that gate
    ]
    ranked = evaluate(pd.DataFrame(rows), cfg).set_index("label")
    assert bool(ranked.loc["int8-ok", "eligible"]) and bool(ranked.loc["fp32", "eligible"]) and bool(ranked.loc["imported", "eligible"])
    assert not ranked.loc["int8-lossy", "eligible"] and "stsb_delta_vs_fp32" in ranked.loc["int8-lossy", "why"]
    assert not ranked.loc["broken-fp32", "eligible"] and "parity.min_cosine" in ranked.loc["broken-fp32", "why"]


def test_a_half_logged_running_run_is_never_ranked_and_the_sweep_is_said_incomplete(store, tmp_path):
    """A kill during artifact upload leaves a RUNNING run that already has status=ok and good
    metrics: it used to win a 1-of-4 sweep without a word."""
    pid = store.sweep(
        [
            {"pooling": "mean", "metrics": good_metrics(15.0)},
            {"pooling": "cls", "metrics": good_metrics(3.0, **{"quality.stsb_spearman": 88.0}), "finished": False},
        ]
    )
    d = decide_sweep(pid, profile(), store.uri, out_dir=tmp_path / "reports", log_to_parent=False)
    assert d.winner.label == "tiny/fp32/cpu/mean/b1"
    ex = d.excluded.set_index("pooling")
    assert ex.loc["cls", "status"] == "unfinished" and "never finished" in ex.loc["cls", "reason"]
    assert "The sweep is incomplete (1 run(s) never finished)" in d.recommendation


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_what_if_leaves_the_decision_of_record_alone(store, tmp_path, capsys):
    pid = store.sweep(
        [{"metrics": good_metrics(12.0)}, {"pooling": "cls", "metrics": good_metrics(19.0, **{"throughput.sentences_per_s": 2500.0})}],
        name="recorded",
    )
    out = tmp_path / "reports"
    decide_sweep(pid, profile(), store.uri, out_dir=out)  # the sweep's own decision, at its end
    client = MlflowClient(store.uri)
    tags_before = client.get_run(pid).data.tags
    files_before = _snapshot(out / pid), _snapshot(out / "latest"), (out / "metrics.json").read_bytes()
    overrides = [f"decision.{o}" for o in FAST]
    assert main(["--tracking-uri", store.uri, "--out", str(out), "--profile", "latency_first", *overrides]) == 0
    printed = capsys.readouterr().out
    assert "what-if report:" in printed and "unchanged" in printed
    tags_after = client.get_run(pid).data.tags
    for key in ("decision.profile", "decision.verdict", "decision.winner", "decision.recommendation", "mlflow.note.content"):
        assert tags_after[key] == tags_before[key], key
    assert (_snapshot(out / pid), _snapshot(out / "latest"), (out / "metrics.json").read_bytes()) == files_before
    whatifs = list((out / "whatif" / pid).iterdir())
    assert len(whatifs) == 1 and whatifs[0].name.startswith("latency_first") and (whatifs[0] / "report.md").is_file()
    assert json.loads((whatifs[0] / "decision.json").read_text())["profile"] == "latency_first"
    logged = {a.path for a in client.list_artifacts(pid, "whatif")}
    assert logged == {f"whatif/{whatifs[0].name}"}
    # --record makes it the decision of record; latest follows, since it showed this sweep
    assert main(["--tracking-uri", store.uri, "--out", str(out), "--profile", "latency_first", "--record", *overrides]) == 0
    assert client.get_run(pid).data.tags["decision.profile"] == "latency_first"
    assert json.loads((out / pid / "decision.json").read_text())["profile"] == "latency_first"
    assert json.loads((out / "latest" / "decision.json").read_text())["profile"] == "latency_first"


def test_recording_an_older_sweep_does_not_move_latest(store, tmp_path):
    older = store.sweep([{"metrics": good_metrics(12.0)}], name="older")
    newer = store.sweep([{"metrics": good_metrics(14.0)}], name="newer")
    out = tmp_path / "reports"
    decide_sweep(older, profile(), store.uri, out_dir=out)
    decide_sweep(newer, profile(), store.uri, out_dir=out)  # a sweep's end moves latest
    assert main(["--tracking-uri", store.uri, "--out", str(out), "--parent", older, "--record", *(f"decision.{o}" for o in FAST)]) == 0
    assert json.loads((out / "latest" / "decision.json").read_text())["parent_run_id"] == newer
    assert json.loads((out / older / "decision.json").read_text())["parent_run_id"] == older


def test_an_unknown_profile_lists_the_profiles(capsys):
    assert main(["--profile", "latency_frist"]) == 2
    err = capsys.readouterr().err
    assert "latency_frist" in err and "default" in err and "latency_first" in err and "Exception" not in err
