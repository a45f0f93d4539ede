"""The serving benchmark's logic (benchmarks/serving_stats.py) on hand-made inputs."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, render_results

sys.path.insert(0, str(ROOT / "benchmarks"))
import serving_stats as ss  # noqa: E402


def _pts(*pairs, lost=0):
    return [{"offered_qps": r, "achieved_qps": r, "p95_ms": p, "requests": 1000, "lost": lost} for r, p in pairs]


def test_max_qps_is_the_last_rate_met_before_the_first_miss():
    pts = _pts((5, 3), (50, 8), (100, 19), (200, 25), (400, 18))  # 400 met again: noise after a miss does not count
    r = ss.max_qps_at(pts, 20)
    assert r["qps"] == 100 and r["first_miss"] == 200 and not r["below_lowest"] and not r["limited_by_rates"]
    assert ss.max_qps_at(pts, 30)["qps"] == 400 and ss.max_qps_at(pts, 30)["limited_by_rates"]
    low = ss.max_qps_at(pts, 2)
    assert low["qps"] == 0 and low["below_lowest"] and low["lowest"] == 5


def test_a_point_with_lost_requests_misses_whatever_its_p95():
    assert ss.max_qps_at(_pts((5, 3), (50, 4)) + _pts((100, 5), lost=3), 20)["qps"] == 50


def test_best_peer_is_the_highest_and_ties_go_to_capacity():
    rows = {"a": {"qps": 100, "saturation_qps": 300}, "b": {"qps": 100, "saturation_qps": 500}, "c": {"qps": 50, "saturation_qps": 900}}
    assert ss.best_peer(rows) == "b"
    assert ss.best_peer({}) is None


def _fig(qps, below=False, limited=False, lowest=5.0):
    return {"qps": qps, "below_lowest": below, "limited_by_rates": limited, "lowest": lowest}


def test_ratio_exact_and_its_bounds():
    assert ss.ratio(_fig(300), _fig(100)) == {"ratio": 3.0, "kind": "exact", "why": ""}
    r = ss.ratio(_fig(300), _fig(0, below=True))  # the peer missed even 5/s: its figure is below 5
    assert r["kind"] == "at_least" and r["ratio"] == 60.0
    assert ss.ratio(_fig(400, limited=True), _fig(100))["kind"] == "at_least"
    assert ss.ratio(_fig(100), _fig(400, limited=True))["kind"] == "at_most"
    assert ss.ratio(_fig(0, below=True), _fig(0, below=True))["ratio"] is None
    assert ss.ratio(_fig(0, below=True), _fig(50)) == {"ratio": 0.1, "kind": "at_most", "why": "ours missed the target at 5/s"}
    assert ss.ratio(_fig(400, limited=True), _fig(400, limited=True))["kind"] == "unknown"


def test_median_over_rounds():
    rounds = [
        ss.max_qps_at(_pts((5, 3), (50, 8), (100, 30)), 20),
        ss.max_qps_at(_pts((5, 3), (50, 30)), 20),
        ss.max_qps_at(_pts((5, 3), (50, 8), (100, 9)), 20),
    ]
    m = ss.median_over_rounds(rounds)
    assert m["qps"] == 50 and m["rounds"] == [50, 5, 100] and m["limited_by_rates"] and not m["below_lowest"]


def test_pollaczek_khinchine_mean_wait():
    # M/D/1, S = 10 ms, lam = 50/s: rho 0.5, Wq = lam S^2 / (2 (1 - rho)) = 50 * 1e-4 / 1 = 5 ms
    assert ss.mg1_wait_mean_s(50, [0.01] * 10) == pytest.approx(0.005)
    assert ss.mg1_wait_mean_s(100, [0.01]) == float("inf")


def test_mg1_p95_is_exact_for_m_m_1_and_grows_with_load():
    # M/M/1: the response time is exponential with rate mu - lam: p95 = ln(20) / (mu - lam)
    rng = np.random.default_rng(0)
    s_ms = rng.exponential(10.0, 200_000)  # mu = 100/s
    lam = 50.0
    assert ss.mg1_p95_ms(lam, s_ms) == pytest.approx(1e3 * np.log(20) / (100 - lam), rel=0.03)
    light, heavy = ss.mg1_p95_ms(5, [4.0] * 50), ss.mg1_p95_ms(200, [4.0] * 50)
    assert light == pytest.approx(4.0, abs=0.05) and heavy > 2 * light  # idle: the service time; loaded: queueing
    assert ss.mg1_p95_ms(300, [4.0]) == float("inf")


def test_cpu_slug():
    from peerstats import cpu_slug

    assert cpu_slug("Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz") == "intel-r-xeon-r-platinum-8481c-cpu-2-70ghz"


def _round(points, service_ms, closed_ms=(5.0,)):
    return {
        "service_ms": service_ms,
        "info": {},
        "transports": {t: {"closed_loop_ms": list(closed_ms), "points": points, "conditions": {}} for t in ("tcp", "http")},
    }


def test_a_contender_that_failed_every_round_has_no_row_and_the_others_keep_theirs():
    """A series that raised in each round (infinity's server that never got ready) left an empty list
    behind, and the summary's rows crashed at the end of a 40-minute run, losing every figure."""
    import serving

    pts = _pts((5, 3), (100, 8))
    rows = serving.rows_of({("ours-fp32", "batched"): [_round(pts, [3.0] * 10)] * 2, ("infinity-optimum", "batched"): []})
    assert {(r["contender"], r["transport"]) for r in rows} == {("ours-fp32", "tcp"), ("ours-fp32", "http")}


def test_contenders_left_out_by_skip_are_named_in_the_result_and_a_misspelt_name_is_refused(monkeypatch, tmp_path):
    import harness
    import serving

    args = serving.parse(["--skip", "infinity-optimum,infinity-server"])
    skipped: dict = {}

    def stop(*a, **k):
        raise RuntimeError("no model needed past this point")

    monkeypatch.setattr(harness, "load_artifact", stop)
    with pytest.raises(RuntimeError, match="no model needed"):
        serving.contenders(args, tmp_path, tmp_path, {}, skipped)
    assert skipped == {"infinity-optimum": "left out by --skip", "infinity-server": "left out by --skip"}
    with pytest.raises(SystemExit):
        serving.parse(["--skip", "infinity"])  # not a contender's name: nothing would have been left out


def test_rows_and_the_headline_compare_our_best_front_with_the_best_peer():
    import serving

    fast = _pts((5, 3), (100, 8), (200, 15), (400, 40))  # 20 ms: 200/s, 50 ms: 400/s (limited by rates)
    slow = _pts((5, 4), (100, 25), (200, 60))
    for p in fast + slow:
        p["achieved_qps"] = p["offered_qps"]
    rows = [serving.row("ours-fp32", "per-request", t, [_round(slow, [3.0] * 10)] * 2) for t in ("tcp", "http")]
    rows += [serving.row("ours-fp32", "batched", t, [_round(fast, [3.0] * 10)] * 2) for t in ("tcp", "http")]
    rows += [serving.row("st-onnx", "batched", t, [_round(slow, [4.0] * 10)] * 2) for t in ("tcp", "http")]
    rows += [
        serving.row(
            "infinity-server",
            "own",
            "http",
            [{"service_ms": None, "info": {}, "transports": {"http": {"closed_loop_ms": [6.0], "points": _pts((5, 30)), "conditions": {}}}}]
            * 2,
        )
    ]
    r = rows[2]
    assert r["max_qps_p95_20ms"]["qps"] == 200 and r["max_qps_p95_50ms"]["limited_by_rates"]
    assert [m["offered_qps"] for m in r["mg1"]] == [5, 100, 200, 400] and r["mg1"][0]["mg1_p95_ms"] == pytest.approx(3.0, abs=0.05)
    assert rows[-1]["service_from"].startswith("closed-loop") and rows[-1]["max_qps_p95_20ms"]["below_lowest"]
    h = serving.headline(rows)
    assert h["fp32:http@20ms"]["ours"] == "ours-fp32/batched" and h["fp32:http@20ms"]["best_peer"] == "st-onnx/batched"
    assert h["fp32:http@20ms"]["ratio"] == pytest.approx(200 / 5) and h["fp32:http@20ms"]["kind"] == "exact"  # st-onnx met only 5/s
    assert h["fp32:process@50ms"]["kind"] == "at_least"  # ours met 50 ms at the highest rate tried
    # no int8 row: no int8 group; "best" (every class) is the fp32 comparison here
    assert set(h) == {f"{g}:{t}@{x:g}ms" for g in ("best", "fp32") for t in ("process", "http") for x in ss.TARGETS_MS}
    assert all(h[f"best:{k}"] == h[f"fp32:{k}"] for k in ("http@20ms", "process@30ms"))


def test_the_headline_compares_within_each_precision_class_and_across_them():
    """A fast int8 peer beats our fp32 in the cross-class group and stands against our int8 only;
    the fp32 class keeps its own comparison, which the int8 peer does not enter."""
    import serving

    def rate_row(name, knee_p95):  # p95 at 5, 100, 200, 400, 800/s
        pts = _pts(*zip((5, 100, 200, 400, 800), knee_p95))
        for p in pts:
            p["achieved_qps"] = p["offered_qps"]
        return serving.row(name, "batched", "http", [_round(pts, [2.0] * 10)] * 2)

    rows = [
        rate_row("ours-fp32", (4, 10, 18, 60, 90)),  # 20 ms: 200/s
        rate_row("ours-int8", (2, 5, 8, 12, 60)),  # 20 ms: 400/s
        rate_row("st-onnx", (5, 15, 40, 90, 99)),  # 20 ms: 100/s
        rate_row("optimum-ort-int8", (3, 8, 15, 45, 90)),  # 20 ms: 200/s
    ]
    assert [r["precision"] for r in rows] == ["fp32", "int8", "fp32", "int8"]
    h = serving.headline(rows)
    assert (h["best:http@20ms"]["ours"], h["best:http@20ms"]["best_peer"]) == ("ours-int8/batched", "optimum-ort-int8/batched")
    assert h["best:http@20ms"]["ratio"] == pytest.approx(2.0)
    assert (h["fp32:http@20ms"]["ours"], h["fp32:http@20ms"]["best_peer"]) == ("ours-fp32/batched", "st-onnx/batched")
    assert h["fp32:http@20ms"]["ratio"] == pytest.approx(2.0)
    assert h["int8:http@20ms"]["best_peer"] == "optimum-ort-int8/batched" and h["int8:http@20ms"]["ratio"] == pytest.approx(2.0)
    assert not any(k.endswith(("process@20ms", "process@30ms", "process@50ms")) for k in h)  # no in-process rows


def test_one_generator_drives_a_server_process_over_tcp_and_http(tiny_bert, tmp_path):
    import serving

    from pipeline.config import ModelConfig, VariantConfig
    from pipeline.model.export import export
    from pipeline.model.sources import resolve

    cfg = ModelConfig(name="tiny-bert", source="local", path=str(tiny_bert), max_length=64, sha256=None)
    art = export(resolve(cfg), cfg, VariantConfig(), tmp_path / "cache")
    sentences = tmp_path / "sentences.json"
    sentences.write_text(json.dumps([f"the dog number {i} runs" for i in range(50)]))
    spec = {"kind": "ours", "folder": str(art.folder), "onnx_file": art.onnx_path.name, "threads": 1, "max_length": 64, "service_calls": 20}
    srv = serving.Server("tiny-batched", Path(sys.executable), spec, {"max_batch": 8, "max_wait_ms": 2}, tmp_path, sentences).start(300)
    gen = serving.Generator(sentences)
    try:
        assert len(srv.service["service_ms"]) == 20 and srv.service["dim"] == 32
        assert srv.service["info"]["event_loop"] == "uvloop"  # the loop pipeline serve's uvicorn.run picks (a dependency)
        for transport, port in (("tcp", srv.tcp_port), ("http", srv.http_port)):
            gen.ask({"op": "target", "transport": transport, "port": port, "path": "/v1/embeddings", "model": "tiny"})
            assert len(gen.ask({"op": "closed", "requests": 5})["ms"]) == 5
            p = gen.ask({"op": "point", "rate": 40, "requests": 40, "seed": 1, "timeout_s": 30})
            assert p["ok"] == 40 and p["lost"] == p["failed"] == 0 and len(p["latencies_ms"]) == 40, (transport, p)
            assert 0 < p["p50_ms"] <= p["p95_ms"] <= p["p99_ms"]
    finally:
        gen.close()
        srv.stop()


def test_every_server_runs_on_the_event_loop_asked_for_and_by_default_on_pipeline_serve_s(monkeypatch):
    import serving
    import uvloop
    from _serving_server import loop_factory

    # a peer's environment may hold an older uvicorn (infinity-emb's: 0.32, no Config.get_loop_factory)
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    with pytest.raises(ValueError, match="unknown event loop"):
        loop_factory("trio")
    for name, kind in (("auto", uvloop.Loop), ("uvloop", uvloop.Loop), ("asyncio", asyncio.BaseEventLoop)):
        loop = loop_factory(name)()
        try:
            assert isinstance(loop, kind), (name, type(loop))
            assert name == "asyncio" or not type(loop).__module__.startswith("asyncio")
        finally:
            loop.close()
    cands = {
        "a": (Path(sys.executable), {"kind": "ours"}),
        "b": (Path(sys.executable), {"own_server": "infinity", "folder": "f", "pooling": "mean"}),
    }
    for argv, want in (([], "auto"), (["--loop", "asyncio"], "asyncio")):
        series = serving.series_of(cands, serving.parse(argv))
        ours = [s for s in series if s["spec"] is not None]
        assert {s["front"] for s in ours} == {"per-request", "batched"}
        assert all(s["front_settings"]["loop"] == want for s in ours)


def test_the_int8_peers_run_the_file_ours_ships_or_their_own_recipe_and_a_failed_int8_export_is_named(monkeypatch, tmp_path):
    import harness
    import serving

    class Art:
        def __init__(self, name):
            self.folder = tmp_path / name
            self.onnx_path = self.folder / f"{name}.onnx"

    class Cfg:
        class model:
            max_length = 128

    arts = {"fp32": Art("fp32"), "int8_dynamic": Art("int8")}

    def load(variant):
        if variant not in arts:
            raise RuntimeError(f"no {variant}")
        return Cfg, object(), arts[variant]

    monkeypatch.setattr(harness, "load_artifact", load)
    monkeypatch.setattr(harness, "st_onnx_folder", lambda *a: tmp_path / "st")
    got = serving.contenders(serving.parse(["--only", "ours-int8,optimum-ort-int8,st-onnx-qint8"]), tmp_path, tmp_path, {}, {})
    assert set(got) == {"ours-int8", "optimum-ort-int8", "st-onnx-qint8"}
    ours, opt = got["ours-int8"][1], got["optimum-ort-int8"][1]
    assert (opt["folder"], opt["onnx_file"]) == (ours["folder"], ours["onnx_file"]) == (str(arts["int8_dynamic"].folder), "int8.onnx")
    assert got["st-onnx-qint8"][1]["file_name"] == "onnx/model_qint8_avx512_vnni.onnx"
    skipped: dict = {}
    got = serving.contenders(
        serving.parse(["--only", "ours-int8,optimum-ort-int8", "--int8-variant", "int8_x"]), tmp_path, tmp_path, {}, skipped
    )
    assert got == {} and set(skipped) == {"ours-int8", "optimum-ort-int8"} and "int8_x" in skipped["optimum-ort-int8"]


def test_infinity_servers_are_made_only_when_asked_for_each_on_its_own_folder(monkeypatch, tmp_path):
    """--only infinity-server once also started infinity-optimum (the two shared one folder entry)."""
    import harness
    import serving

    class Art:
        def __init__(self, name):
            self.folder, self.onnx_path = tmp_path / name, tmp_path / name / "model.onnx"

    class Cfg:
        class model:
            max_length = 128

    class Env:
        ok, reason, python, path = True, "", tmp_path / "env" / "bin" / "python", tmp_path / "env"

    monkeypatch.setattr(harness, "load_artifact", lambda v: (Cfg, object(), Art(v)))
    monkeypatch.setattr(harness, "st_onnx_folder", lambda *a: tmp_path / "st")
    monkeypatch.setattr(harness, "infinity_o2_folder", lambda *a: tmp_path / "infinity-onnx")
    monkeypatch.setattr(harness, "infinity_onnx_folder", lambda resolved, graph, root, name: tmp_path / name)
    monkeypatch.setattr(harness, "peer_env", lambda *a: Env)
    monkeypatch.setattr(harness, "infinity_pooling", lambda cfg: "mean")
    got = serving.contenders(serving.parse(["--only", "infinity-server"]), tmp_path, tmp_path, {}, {})
    assert list(got) == ["infinity-server"] and got["infinity-server"][1]["folder"] == str(tmp_path / "infinity-onnx")
    got = serving.contenders(serving.parse(["--only", "infinity-server-int8,infinity-optimum"]), tmp_path, tmp_path, {}, {})
    assert set(got) == {"infinity-server-int8", "infinity-optimum"}
    assert got["infinity-server-int8"][1] == {"own_server": "infinity", "folder": str(tmp_path / "infinity-onnx-int8"), "pooling": "mean"}
    assert got["infinity-optimum"][1]["hf_hub_cache"] == str(tmp_path / "infinity-onnx.hub")
    series = serving.series_of(got, serving.parse(["--fronts", "batched"]))
    own = [s for s in series if s["contender"] == "infinity-server-int8"]
    assert len(own) == 1 and own[0]["spec"] is None and own[0]["transports"] == ["http"]
    assert own[0]["front_settings"]["folder"] == str(tmp_path / "infinity-onnx-int8")


def test_every_onnx_runtime_contender_gets_the_same_session_config(monkeypatch, tmp_path):
    """Ours runs with pipeline serve's session entries; a peer on the same ONNX Runtime must get them too."""
    from types import SimpleNamespace as NS

    import harness
    import serving

    from pipeline.serving.app import SESSION_CONFIG

    art = NS(folder=tmp_path, onnx_path=tmp_path / "model.onnx")
    monkeypatch.setattr(harness, "load_artifact", lambda v: (NS(model=NS(max_length=64)), NS(folder=tmp_path), art))
    monkeypatch.setattr(harness, "st_onnx_folder", lambda *a: tmp_path)
    only = ["--only", "ours-fp32,ours-int8,optimum-ort,optimum-ort-int8,st-onnx,st-onnx-qint8"]
    cands = serving.contenders(serving.parse(only), tmp_path, tmp_path, {}, {})
    assert len(cands) == 6 and all(spec["session_config"] == SESSION_CONFIG for _, spec in cands.values())
    cands = serving.contenders(serving.parse([*only, "--session-config", "none"]), tmp_path, tmp_path, {}, {})
    assert all(spec["session_config"] == {} for _, spec in cands.values())
    args = serving.parse([*only, "--session-config", "session.intra_op.allow_spinning=0,session.force_spinning_stop=0"])
    assert args.session_config == {"session.intra_op.allow_spinning": "0", "session.force_spinning_stop": "0"}
    with pytest.raises(SystemExit):
        serving.parse(["--session-config", "no-equals"])


def test_the_session_config_benchmark_compares_each_config_with_onnx_runtime_s_defaults(tmp_path):
    import serving_session as sess

    assert sess.order(["a", "b", "c"], 1) == ["a", "b", "c"] and sess.order(["a", "b", "c"], 2) == ["c", "b", "a"]
    spin = _pts((100, 8), (200, 12), (300, 25), (400, 60))  # 20 ms: 200/s; 30 ms: 300/s; 50 ms: 300/s
    stop = _pts((100, 9), (200, 11), (300, 15), (400, 18))  # every target met at the highest rate
    rows = sess.summarize(
        {
            "ort-default": [{"points": spin, "cpu_ms_per_request": 8.0}, {"points": spin, "cpu_ms_per_request": 6.0}],
            "force_spinning_stop": [{"points": stop, "cpu_ms_per_request": 4.0}, {"points": stop, "cpu_ms_per_request": None}],
        }
    )
    base, new = rows
    assert base["max_qps_p95_20ms"]["qps"] == 200 and base["vs_ort-default_20ms"]["ratio"] == 1.0
    assert new["max_qps_p95_20ms"]["qps"] == 400 and new["vs_ort-default_20ms"] == {
        **new["vs_ort-default_20ms"],
        "ratio": 2.0,
        "kind": "at_least",
    }
    assert new["vs_ort-default_30ms"]["ratio"] == pytest.approx(400 / 300)
    assert base["server_cpu_ms_per_request"] == 7.0 and new["server_cpu_ms_per_request"] == 4.0  # a round without it is left out
    assert new["p95_ms_by_rate"] == {"100": 9.0, "200": 11.0, "300": 15.0, "400": 18.0}
    assert new["entries"] == "session.force_spinning_stop=1" and base["entries"] == "(none)"
    mod = render_results()
    folder = tmp_path / "results" / "amd-epyc"
    folder.mkdir(parents=True)
    data = {
        "base": "ort-default",
        "configs": sess.CONFIGS,
        "rows": rows,
        "variant": "int8_dynamic",
        "front": {"max_batch": 16},
        "rounds": 2,
    }
    (folder / "serving_session.json").write_text(json.dumps({**data, "rates": [100, 400], "conditions": {"cpu_model": "AMD EPYC"}}))
    out = mod.rendered("<!-- results:serving_session -->\n<!-- /results -->\n", tmp_path / "results")
    assert (
        "| force_spinning_stop | session.force_spinning_stop=1 | 400+ | 400+ | 400+ | >= 2.00x | >= 1.33x | >= 1.33x | 4 | 9.0 (100/s) |"
        in out
    )
    assert "| ort-default | (none) | 200 | 300 | 300 | 1.00x | 1.00x | 1.00x | 7 | 8.0 (100/s) |" in out and "AMD EPYC" in out


def test_infinity_s_own_server_is_started_by_an_absolute_path_from_a_relative_cache(monkeypatch, tmp_path):
    """PIPELINE_CACHE_DIR=.cache/pipeline (docs/serving.md's command) made the environment's path
    relative; infinity's server starts in its model folder, where that path does not exist, and
    every round of both its rows failed with FileNotFoundError."""
    import serving

    seen = {}

    def start(cmd, **kw):
        seen.update(cmd=cmd, cwd=kw.get("cwd"))
        raise RuntimeError("not started in a test")

    monkeypatch.setattr(serving.child, "start", start)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model").mkdir()
    front = {"folder": str(tmp_path / "model"), "pooling": "mean", "max_batch": 16, "served": "infinity-server"}
    srv = serving.Server("inf", Path(".cache/pipeline/envs/x/bin/python"), None, front, tmp_path, tmp_path / "s.json")
    with pytest.raises(RuntimeError, match="not started"):
        srv.start()
    exe = Path(seen["cmd"][0])
    assert seen["cwd"] == str(tmp_path / "model") and exe.is_absolute() and exe == tmp_path / ".cache/pipeline/envs/x/bin/infinity_emb"


def _run(rows: dict[str, list[list[tuple[float, float]]]], loop: str | None = "auto") -> dict:
    """A serving.py result: ``{contender: [round points as (rate, p95)...]}`` over HTTP, batched."""
    front = {"max_batch": 16, "max_wait_ms": 0.0, **({"loop": loop} if loop else {})}
    return {
        "cpu_slug": "amd-epyc",
        "threads": 2,
        "rates": [100, 200, 300, 400],
        "requests_per_point": 1000,
        "max_point_s": 7,
        "front": front,
        "session_config": {"entries": {"session.force_spinning_stop": "1"}},
        "rounds": 2,
        "headline": {},
        "conditions": {"cpu_model": "AMD EPYC", "cores": 2, "loadavg_end": [1.0, 1.0, 1.0], "versions": {}},
        "rows": [
            {
                "contender": c,
                "front": "batched",
                "transport": "http",
                "service_ms_p50": 1.5,
                "rounds": [{"points": _pts(*pts)} for pts in rounds],
            }
            for c, rounds in rows.items()
        ],
    }


def test_pooled_runs_take_the_median_over_every_round_of_every_run_and_refuse_runs_measured_differently(tmp_path):
    import serving_pool

    a = _run(
        {
            "ours-int8": [[(100, 9), (200, 12), (300, 25)], [(100, 9), (200, 12), (300, 15), (400, 60)]],
            "optimum-ort-int8": [[(100, 10), (200, 30)], [(100, 12), (200, 45)]],
        }
    )
    b = _run(
        {
            "ours-int8": [[(100, 21), (200, 12)], [(100, 9), (200, 12), (300, 19), (400, 45)]],
            "optimum-ort-int8": [[(100, 10), (200, 19), (300, 80)], [(100, 12), (200, 45)]],
            "st-onnx-qint8": [[(100, 11), (200, 18), (300, 90)], [(100, 11), (200, 18), (300, 90)]],
        }
    )
    out = serving_pool.pool({"a.json": a, "b.json": b})
    rows = {r["contender"]: r for r in out["rows"]}
    # ours at 20 ms: rounds 200, 300 | 0, 300 -> median 250; at 50 ms: 300, 300 | 200, 400 -> 300
    assert rows["ours-int8"]["max_qps_p95_20ms"]["rounds"] == [200.0, 300.0, 0.0, 300.0]
    assert rows["ours-int8"]["max_qps_p95_20ms"]["qps"] == 250.0 and rows["ours-int8"]["max_qps_p95_50ms"]["qps"] == 300.0
    assert rows["optimum-ort-int8"]["max_qps_p95_20ms"]["qps"] == 100.0 and rows["optimum-ort-int8"]["rounds_pooled"] == 4
    # a contender of one run only is pooled over its own rounds, and says so
    assert rows["st-onnx-qint8"]["runs"] == ["b.json"] and rows["st-onnx-qint8"]["rounds_pooled"] == 2
    # the best peer at 20 ms is st-onnx-qint8 (200/s over its two rounds): 250 / 200
    h = out["headline"]["best:http@20ms"]
    assert h["best_peer"] == "st-onnx-qint8/batched" and h["ratio"] == pytest.approx(1.25) and h["kind"] == "exact"
    for other, what in (
        (_run({"ours-int8": [[(100, 9)]]}, loop=None), "front"),  # an older file: asyncio's loop
        ({**a, "max_point_s": 4}, "max_point_s"),
        ({**a, "session_config": {"entries": {}}}, "session_config.entries"),
    ):
        with pytest.raises(ValueError, match=what):
            serving_pool.pool({"a.json": a, "old.json": other})
    with pytest.raises(ValueError, match="at least two"):
        serving_pool.pool({"a.json": a})
    # written, and rendered with each run's own headline beside the pooled table
    for name, run in (("serving.json", a), ("serving_run_c.json", b)):
        (tmp_path / name).write_text(json.dumps(run))
    assert serving_pool.main([str(tmp_path / "serving.json"), str(tmp_path / "serving_run_c.json")]) == 0
    pooled = json.loads((tmp_path / "serving_pooled.json").read_text())
    assert pooled["headline"]["best:http@20ms"]["ratio"] == pytest.approx(1.25)
    assert pooled["conditions"]["load_average"] == [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
    render = render_results()
    rows, _, notes = render.view_serving_pooled(pooled)
    assert {r["contender"]: r["rounds pooled"] for r in rows} == {"ours-int8": 4, "optimum-ort-int8": 4, "st-onnx-qint8": 2}
    assert "`serving.json` (2 rounds" in notes[0] and "`serving_run_c.json`" in notes[0]
    assert any("1.25x" in n for n in notes)
