"""Serving under load, fairly: each contender a server in its own process, one load generator.

    python benchmarks/serving.py --quick                  # minutes: shows it works, figures not kept
    python benchmarks/serving.py                          # the full run (see docs/serving.md)

Every contender serves the same all-MiniLM-L6-v2 at the same intra-op thread count, in its own
process (and its own environment where its packages cannot share ours, through pipeline.runtime.envs),
behind the same fronts: ``per-request`` (the micro-batching front with max_batch 1: one call per
request) and ``batched`` (max_batch / max_wait_ms as given, the same for all).  Each server
process (benchmarks/_serving_server.py) answers over HTTP (pipeline.serving.app: FastAPI + uvicorn,
OpenAI's /v1/embeddings) and over a bare TCP protocol into the same front (the process-level
variant).  One load generator process (benchmarks/_serving_load.py) drives them all: open-loop
Poisson arrivals, latency from each request's scheduled arrival, ``--requests`` per point, rates
ascending from 5/s until the p95 passes the largest target or the server saturates, ``--rounds``
rounds (the contenders' order reversed every other round).  infinity-emb's own HTTP server
(``infinity_emb v2``, its optimum engine) is driven over HTTP with its own batching.

Contenders, by precision class.  fp32: ours-fp32, st-onnx and st-openvino (sentence-transformers'
ONNX and OpenVINO backends on our fp32 export), optimum-ort (Optimum's ORTModelForFeatureExtraction
on it), infinity-optimum (infinity-emb's optimum engine behind our fronts), infinity-server (its own
server).  int8: ours-int8 (the variant the decision ships, int8_dynamic), optimum-ort-int8 (Optimum
on the same int8 file), st-onnx-qint8 (sentence-transformers' own qint8 export), st-openvino-int8
(its static int8 OpenVINO export, calibrated on STS dev sentences) and infinity-server-int8
(infinity-emb's own server on the same int8 file as ours).  One that cannot run here is
listed with its reason.

Every contender that runs on ONNX Runtime through an API that takes session options (ours,
optimum-ort*, st-onnx*) gets the same session config entries, ``--session-config``, by default
the ones ``pipeline serve`` gives its session (pipeline.serving.app.SESSION_CONFIG): a serving
setting any ONNX Runtime user can make, so none of ours alone.  infinity-emb's engines and
OpenVINO take none through their APIs and run as shipped.

Per contender, front and transport: the single-call service time (measured in its process), the
p95 measured at each rate beside the p95 an M/G/1 queue predicts from that service time
(benchmarks/serving_stats.py), max QPS within p95 20, 30 and 50 ms (median over rounds); per
group, transport and target, our best over the best peer: ``best:`` across the classes,
``fp32:`` and ``int8:`` within one.  The machine lock (pipeline.core.machine_lock) is held
throughout; the results (rows, per-round points with their latency percentiles, conditions, CPU
model, load average, versions) go to benchmarks/results/<cpu-slug>/serving.json.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import harness  # noqa: E402  (benchmarks/harness.py: what the benchmark scripts share)
import serving_stats as ss  # noqa: E402
from peerstats import cpu_slug, results_path  # noqa: E402

from pipeline.core import child  # noqa: E402

RATES = (5, 10, 20, 40, 60, 80, 100, 130, 160, 200, 250, 320, 400, 500, 640, 800, 1000, 1300, 1600, 2000)
PEERS = (
    "st-onnx",
    "st-openvino",
    "optimum-ort",
    "infinity-optimum",
    "infinity-server",
    "optimum-ort-int8",
    "st-onnx-qint8",
    "st-openvino-int8",
    "infinity-server-int8",
)
OURS = ("ours-fp32", "ours-int8")
# each contender's precision class (the rest: fp32); every int8 path here is within 1 STS point of
# fp32 in benchmarks/peers_best.py (its rows ours-int8_dynamic, optimum-ort-int8-O2, st-onnx-qint8,
# st-openvino-int8-static)
INT8 = ("ours-int8", "optimum-ort-int8", "st-onnx-qint8", "st-openvino-int8", "infinity-server-int8")
# the builders of _peer_worker.py whose ONNX Runtime session takes config entries
ORT_SESSION_KINDS = ("ours", "optimum", "st-onnx")


def precision(contender: str) -> str:
    return "int8" if contender in INT8 else "fp32"


VERSIONS = ("onnxruntime", "numpy", "tokenizers", "fastapi", "uvicorn", "sentence-transformers", "optimum", "torch")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout_s: float, log: Path) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited ({proc.returncode}): {log.read_text()[-600:] if log.exists() else ''}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer 200 within {timeout_s:.0f} s")


class Server:
    """One contender's server process: ours or a peer behind our front, or infinity's own.  A
    server, not a request/reply child: started by ``pipeline.core.child.start`` (its own process
    group, which dies with us), ready when it answers over HTTP, stopped by SIGTERM (its group
    killed if it does not end, or when it never became ready)."""

    def __init__(self, name: str, python: Path, spec: dict | None, front: dict | None, work: Path, sentences: Path):
        self.name, self.spec, self.front, self.work, self.sentences = name, spec, front, work, sentences
        self.python = Path(python).absolute()  # infinity's server starts in its model folder: a relative path would not resolve there
        self.proc: subprocess.Popen | None = None
        self.service: dict = {}

    def start(self, timeout_s: float = 900) -> "Server":
        self.http_port, self.tcp_port = free_port(), free_port()
        log = self.work / f"{self.name}.log"
        env, cwd = harness.child_env(), None
        if self.spec is None:  # infinity's own server, started in its model folder and given it as "." (an absolute
            # --model-id becomes an absolute ONNX file name, which Optimum 2 refuses), its optimized graph in its own cache
            cwd, env["HF_HUB_CACHE"] = self.front["folder"], str(harness.infinity_hub(Path(self.front["folder"])))
            cmd = [
                str(self.python.parent / "infinity_emb"),
                "v2",
                "--model-id",
                ".",
                "--engine",
                "optimum",
                "--pooling-method",
                self.front["pooling"],
                "--device",
                "cpu",
                "--batch-size",
                str(self.front["max_batch"]),
                "--port",
                str(self.http_port),
                "--host",
                "127.0.0.1",
                "--served-model-name",
                self.front["served"],
            ]
            ready = f"http://127.0.0.1:{self.http_port}/health"
        else:
            out = self.work / f"{self.name}.service.json"
            spec = {
                **self.spec,
                "root": str(ROOT),
                "name": self.name,
                "front": self.front,
                "http_port": self.http_port,
                "tcp_port": self.tcp_port,
                "sentences": str(self.sentences),
                "service_out": str(out),
            }
            (self.work / f"{self.name}.spec.json").write_text(json.dumps(spec))
            cmd = [str(self.python), str(ROOT / "benchmarks" / "_serving_server.py"), str(self.work / f"{self.name}.spec.json")]
            ready = f"http://127.0.0.1:{self.http_port}/ready"
        with open(log, "w") as logf:
            self.proc = child.start(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        try:
            wait_http(ready, self.proc, timeout_s, log)
        except BaseException:
            self.kill()
            raise
        if self.spec is not None:
            self.service = json.loads(out.read_text())
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None:
            child.kill_group(self.proc)
            self.proc.wait()
        self.proc = None


class Generator:
    """The load generator process (benchmarks/_serving_load.py: a pipeline.core.child Session)."""

    def __init__(self, sentences: Path):
        self.session = harness.worker("_serving_load", "the load generator")
        self.proc = self.session.proc
        try:
            self.ask({"op": "texts", "file": str(sentences)})
        except BaseException:
            self.session.close()
            raise

    def ask(self, msg: dict) -> dict:
        return self.session.request(msg)

    def close(self) -> None:
        self.session.close(30)


# -- the contenders -------------------------------------------------------------------------------
def contenders(args, env_root: Path, peers_root: Path, env_report: dict, skipped: dict) -> dict[str, tuple[Path, dict | None]]:
    """name -> (python, builder spec of _peer_worker.py, or ``{"own_server": "infinity", ...}``)."""
    want = [n for n in (*OURS, *PEERS) if (not args.only or n in args.only) and n not in args.skip]
    for n in args.skip:  # left out on request: the result says so, as for any contender not measured
        skipped[n] = "left out by --skip"
    main_py, th = Path(sys.executable), args.threads
    cfg, resolved, fp32 = harness.load_artifact("fp32")
    ml = cfg.model.max_length
    out: dict[str, tuple[Path, dict | None]] = {}
    arts = {"ours-fp32": fp32}
    if any(n in want for n in ("ours-int8", "optimum-ort-int8", "infinity-server-int8")):
        try:
            arts["ours-int8"] = harness.load_artifact(args.int8_variant)[2]
        except Exception as exc:
            skipped["ours-int8"] = f"{args.int8_variant} export failed: {type(exc).__name__}: {exc}"
    for n, a in arts.items():
        if n in want:  # ours-int8: the variant the decision ships (reports/latest/decision.json)
            out[n] = (main_py, {"kind": "ours", "folder": str(a.folder), "onnx_file": a.onnx_path.name, "threads": th, "max_length": ml})
    st_folder = None
    st_users = ("st-onnx", "st-onnx-qint8", "infinity-optimum", "infinity-server")
    if any(n in want for n in st_users):
        try:
            st_folder = harness.st_onnx_folder(resolved, fp32, peers_root)
        except Exception as exc:
            for n in st_users:
                if n in want:
                    skipped[n] = f"preparing the ONNX checkpoint folder failed: {type(exc).__name__}: {exc}"
    if "st-onnx" in want and st_folder is not None:
        out["st-onnx"] = (main_py, {"kind": "st-onnx", "folder": str(st_folder), "file_name": "onnx/model.onnx", "threads": th})
    if "optimum-ort" in want:
        out["optimum-ort"] = (
            main_py,
            {
                "kind": "optimum",
                "folder": str(fp32.folder),
                "onnx_file": fp32.onnx_path.name,
                "tokenizer_folder": str(fp32.folder),
                "threads": th,
                "max_length": ml,
            },
        )
    int8 = arts.get("ours-int8")
    if "optimum-ort-int8" in want:
        if int8 is None:
            skipped["optimum-ort-int8"] = f"the {args.int8_variant} file was not built"
        else:  # the same file as ours-int8 (Optimum's O2 graph plus ORTQuantizer: one recipe for both)
            out["optimum-ort-int8"] = (
                main_py,
                {
                    "kind": "optimum",
                    "folder": str(int8.folder),
                    "onnx_file": int8.onnx_path.name,
                    "tokenizer_folder": str(fp32.folder),
                    "threads": th,
                    "max_length": ml,
                },
            )
    if "st-onnx-qint8" in want and st_folder is not None:  # sentence-transformers' own qint8 export
        out["st-onnx-qint8"] = (
            main_py,
            {"kind": "st-onnx", "folder": str(st_folder), "file_name": "onnx/model_qint8_avx512_vnni.onnx", "threads": th},
        )
    if "st-openvino" in want or "st-openvino-int8" in want:
        env = harness.peer_env("st-openvino", env_root, env_report)
        if not env.ok:
            skipped.update({n: f"environment not made: {env.reason}" for n in ("st-openvino", "st-openvino-int8") if n in want})
        if env.ok and "st-openvino-int8" in want:
            try:  # NNCF static int8 calibrated on STS dev sentences: the same cached folder as peers_best.py's
                folder = harness.ov_static_calibrated(env.python, resolved, peers_root)
                out["st-openvino-int8"] = (
                    env.python,
                    {
                        "kind": "st",
                        "backend": "openvino",
                        "folder": str(folder),
                        "threads": th,
                        "model_kwargs": {"file_name": harness.OV_STATIC_FILE, "ov_config": {"INFERENCE_NUM_THREADS": th}},
                    },
                )
            except Exception as exc:
                skipped["st-openvino-int8"] = f"export_static_quantized_openvino_model: {type(exc).__name__}: {exc}"
        if env.ok and "st-openvino" in want:
            out["st-openvino"] = (
                env.python,
                {
                    "kind": "st",
                    "backend": "openvino",
                    "folder": str(resolved.folder),
                    "threads": th,
                    "model_kwargs": {"ov_config": {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": th}},
                },
            )
    folders: dict[str, Path] = {}  # the folder each infinity contender's engine loads
    fp32_inf = [n for n in ("infinity-optimum", "infinity-server") if n in want]
    try:  # Optimum's O2 graph of our fp32 export, the only ONNX file of its folder
        if fp32_inf:
            folders.update(dict.fromkeys(fp32_inf, harness.infinity_o2_folder(resolved, fp32, peers_root, st_folder)))
    except Exception as exc:
        skipped.update(dict.fromkeys(fp32_inf, f"preparing its ONNX folder failed: {type(exc).__name__}: {exc}"))
    if "infinity-server-int8" in want:
        try:  # the same int8 file as ours-int8, the folder's only ONNX file
            if int8 is None:
                raise RuntimeError(f"the {args.int8_variant} file was not built")
            folders["infinity-server-int8"] = harness.infinity_onnx_folder(resolved, int8.onnx_path, peers_root, name="infinity-onnx-int8")
        except Exception as exc:
            skipped["infinity-server-int8"] = f"preparing its ONNX folder failed: {type(exc).__name__}: {exc}"
    if folders:
        env = harness.peer_env("infinity-emb-server", env_root, env_report)  # one environment with peers_best.py's infinity rows
        pooling = harness.infinity_pooling(cfg)
        for n, folder in folders.items():
            if not env.ok:
                skipped[n] = f"environment not made: {env.reason}"
            elif n == "infinity-optimum":
                out[n] = (
                    env.python,
                    {
                        "kind": "infinity",
                        "engine": "optimum",
                        "folder": str(folder),
                        "threads": th,
                        "batch_size": args.max_batch,
                        "hf_hub_cache": str(harness.infinity_hub(folder)),
                        "pooling_method": pooling,
                    },
                )
            else:  # its own server (infinity_emb v2): no builder of ours, its own front
                out[n] = (env.python, {"own_server": "infinity", "folder": str(folder), "pooling": pooling})
    for _, spec in out.values():  # one ONNX Runtime session config for all that take one
        if spec.get("kind") in ORT_SESSION_KINDS:
            spec["session_config"] = dict(args.session_config)
    return out


def series_of(cands: dict, args) -> list[dict]:
    """Each (contender, front): the server process to start, and the transports to drive it over."""
    fronts = {
        "per-request": {"max_batch": 1, "max_wait_ms": 0.0, "loop": args.loop},
        "batched": {"max_batch": args.max_batch, "max_wait_ms": args.max_wait_ms, "loop": args.loop},
    }
    out = []
    for name, (python, spec) in cands.items():
        if spec.get("own_server"):  # infinity's own server: its own batching, over HTTP only
            out.append(
                {
                    "contender": name,
                    "front": "own",
                    "python": python,
                    "spec": None,
                    "transports": ["http"] if "http" in args.transports else [],
                    "front_settings": {"max_batch": args.max_batch, "folder": spec["folder"], "served": name, "pooling": spec["pooling"]},
                }
            )
            continue
        for f in args.fronts:
            out.append(
                {
                    "contender": name,
                    "front": f,
                    "python": python,
                    "spec": spec,
                    "transports": list(args.transports),
                    "front_settings": fronts[f],
                }
            )
    return [s for s in out if s["transports"]]


# -- measuring ------------------------------------------------------------------------------------
def ladder(gen: Generator, args, seed: int) -> list[dict]:
    """Rates ascending until the p95 passes the largest target twice running, or the server saturates."""
    points, misses = [], 0
    for i, rate in enumerate(args.rates):
        n = args.requests if not args.max_point_s else max(50, min(args.requests, int(rate * args.max_point_s)))
        p = gen.ask({"op": "point", "rate": rate, "requests": n, "seed": seed + i, "timeout_s": args.timeout_s})
        lat = p.pop("latencies_ms")
        p["latency_percentiles_ms"] = [round(float(x), 3) for x in np.percentile(lat, np.arange(101))]
        points.append(p)
        print(
            f"  {rate:g}/s: p95 {p['p95_ms']:.1f} ms, achieved {p['achieved_qps']:.0f}/s, lost {p['lost']}, failed {p['failed']}",
            file=sys.stderr,
            flush=True,
        )
        misses = misses + 1 if not ss.met(p, max(ss.TARGETS_MS)) else 0
        if misses >= 2 or p["achieved_qps"] < 0.8 * rate:
            break
    return points


def run_series(s: dict, gen: Generator, args, work: Path, sentences: Path, rnd: int) -> dict:
    """Start the series' server, drive it over each transport, stop it: this round's measurements."""
    srv = Server(f"{s['contender']}-{s['front']}-r{rnd}", s["python"], s["spec"], s["front_settings"], work, sentences).start()
    out = {"service_ms": srv.service.get("service_ms"), "info": srv.service.get("info"), "transports": {}}
    try:
        for t in s["transports"]:
            print(f"round {rnd}: {s['contender']} / {s['front']} / {t}", file=sys.stderr, flush=True)
            port = srv.http_port if t == "http" else srv.tcp_port
            path = "/embeddings" if s["spec"] is None else "/v1/embeddings"
            gen.ask({"op": "target", "transport": "http" if t == "http" else "tcp", "port": port, "path": path, "model": s["contender"]})
            ours = (srv.proc.pid, gen.proc.pid)  # the server and the load generator: their CPU is the measurement's
            a = harness.mark(ours)
            closed = gen.ask({"op": "closed", "requests": args.closed_requests})["ms"]
            points = ladder(gen, args, seed=1000 * rnd)
            out["transports"][t] = {"closed_loop_ms": closed, "points": points, "conditions": harness.window(a, harness.mark(ours))}
    finally:
        srv.stop()
    return out


# -- results --------------------------------------------------------------------------------------
def figures(per: list[dict]) -> dict:
    """Over rounds of one transport (each with its ``points``): the saturation rate (median of each
    round's highest achieved rate) and the max QPS at each target (median over the rounds)."""
    out = {"saturation_qps": float(np.median([max(p["achieved_qps"] for p in x["points"]) for x in per]))}
    for t in ss.TARGETS_MS:
        out[f"max_qps_p95_{t:g}ms"] = ss.median_over_rounds([ss.max_qps_at(x["points"], t) for x in per])
    return out


def row(contender: str, front: str, transport: str, rounds: list[dict]) -> dict:
    """One contender/front/transport over the rounds: figures at each target, service time, M/G/1 beside measured."""
    per = [r["transports"][transport] for r in rounds]
    service = [x for r in rounds for x in (r["service_ms"] or [])]
    closed = [x for p in per for x in p["closed_loop_ms"]]
    basis = service or closed  # infinity's own server: only the closed-loop time over HTTP is known
    out = {
        "contender": contender,
        "front": front,
        "transport": transport,
        "peer": contender not in OURS,
        "precision": precision(contender),
        "service_ms_p50": float(np.median(basis)),
        "service_ms_mean": float(np.mean(basis)),
        "service_from": "in-process single calls" if service else "closed-loop requests over HTTP",
        "closed_loop_ms_p50": float(np.median(closed)),
        **figures(per),
        "rounds": per,
        "info": rounds[0].get("info"),
    }
    out["mg1"] = [
        {"offered_qps": p["offered_qps"], "p95_ms": p["p95_ms"], "mg1_p95_ms": ss.mg1_p95_ms(p["offered_qps"], basis)}
        for p in per[0]["points"]
    ]
    return out


HEADLINE_GROUPS = {"best": None, "fp32": "fp32", "int8": "int8"}


def headline(rows: list[dict]) -> dict:
    """Per group, transport and target: our best contender and front over the best peer's.

    ``best:``: every class (ours-int8 is the variant the decision ships; the peers include their
    own int8 paths); ``fp32:`` and ``int8:``: within one precision class.  Keys read
    ``<group>:<process|http>@<target>ms``."""
    out = {}
    for group, cls in HEADLINE_GROUPS.items():
        for transport in ("tcp", "http"):
            for t in ss.TARGETS_MS:
                key = f"max_qps_p95_{t:g}ms"
                sel = [r for r in rows if r["transport"] == transport and (cls is None or precision(r["contender"]) == cls)]
                ours = {f"{r['contender']}/{r['front']}": {**r[key], "saturation_qps": r["saturation_qps"]} for r in sel if not r["peer"]}
                peers = {f"{r['contender']}/{r['front']}": {**r[key], "saturation_qps": r["saturation_qps"]} for r in sel if r["peer"]}
                if not ours or not peers:
                    continue
                o, p = ss.best_peer(ours), ss.best_peer(peers)
                out[f"{group}:{'process' if transport == 'tcp' else 'http'}@{t:g}ms"] = {
                    "ours": o,
                    "ours_qps": ours[o]["qps"],
                    "best_peer": p,
                    "peer_qps": peers[p]["qps"],
                    **ss.ratio(ours[o], peers[p]),
                }
    return out


def conditions_of(started: float, lock, versions: dict) -> dict:
    from pipeline.core.machine import cpu_model

    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "loadavg_end": os.getloadavg(),
        "seconds": round(time.time() - started, 1),
        "lock": {"path": str(lock.path), "held": lock.held, "contended": lock.contention, "waited_s": round(lock.waited_s, 1)},
        "python": sys.version.split()[0],
        "versions": versions,
    }


def rows_of(measured: dict) -> list[dict]:
    """One row per (contender, front, transport) measured in every round it ran; a contender with
    no measured round (it failed each time: named under ``skipped``) has no row."""
    return [row(c, f, t, rs) for (c, f), rs in measured.items() if rs for t in rs[0]["transports"] if all(t in r["transports"] for r in rs)]


def sentences_file(work: Path) -> Path:
    """The STS-test sentences, shuffled the same way every run, as the JSON file the servers and
    the load generator read (``work/sentences.json``)."""
    import random

    from pipeline.config import QualityConfig
    from pipeline.data.sts import load_sts

    sentences = list(load_sts(QualityConfig(split="test")).unique_sentences)
    random.Random(0).shuffle(sentences)
    path = work / "sentences.json"
    path.write_text(json.dumps(sentences))
    return path


def run(args) -> dict:
    from pipeline.core.machine import cpu_model
    from pipeline.core.machine_lock import MachineLock

    started = time.time()
    cache = Path(os.environ.get("PIPELINE_CACHE_DIR") or ROOT / ".cache" / "pipeline").absolute()
    work = Path(tempfile.mkdtemp(prefix="serving-"))
    sentences_file(work)
    skipped, env_report = {}, {}
    cands = contenders(args, cache / "envs", cache / "peers", env_report, skipped)
    series = series_of(cands, args)
    for n, why in skipped.items():
        print(f"{n} skipped: {why}", file=sys.stderr, flush=True)
    measured: dict[tuple[str, str], list[dict]] = {}
    with MachineLock(args.lock_wait_s, "benchmarks/serving.py") as lock:
        gen = Generator(work / "sentences.json")
        try:
            for rnd in range(1, args.rounds + 1):
                for s in series if rnd % 2 else series[::-1]:
                    key = (s["contender"], s["front"])
                    try:
                        got = run_series(s, gen, args, work, work / "sentences.json", rnd)
                        measured.setdefault(key, []).append(got)  # only once measured: a failed series adds nothing
                    except Exception as exc:
                        skipped[f"{s['contender']}/{s['front']}"] = f"round {rnd}: {type(exc).__name__}: {exc}"
                        print(f"{s['contender']}/{s['front']} failed: {exc}", file=sys.stderr, flush=True)
        finally:
            gen.close()
        cond = conditions_of(started, lock, harness.versions(VERSIONS))
    rows = rows_of(measured)
    return {
        "benchmark": "serving",
        "cpu_slug": cpu_slug(cpu_model()),
        "threads": args.threads,
        "rates": list(args.rates),
        "requests_per_point": args.requests,
        "max_point_s": args.max_point_s,
        "rounds": args.rounds,
        "front": {"max_batch": args.max_batch, "max_wait_ms": args.max_wait_ms, "loop": args.loop},
        "session_config": {
            "entries": args.session_config,
            "given_to": sorted(n for n, (_, s) in cands.items() if "session_config" in (s or {})),
        },
        "targets_ms": list(ss.TARGETS_MS),
        "quick": args.quick,
        "headline": headline(rows),
        "skipped": skipped,
        "envs": env_report,
        "conditions": cond,
        "logs": str(work),
        "rows": rows,
    }


def session_config_of(given: str | None) -> dict[str, str]:
    """``--session-config``: None is pipeline serve's entries, "none" is none, else KEY=VALUE,..."""
    from pipeline.serving.app import SESSION_CONFIG, session_entries

    if given is None:
        return dict(SESSION_CONFIG)
    return {} if given.strip().lower() == "none" else session_entries(x for x in given.split(",") if x.strip())


def parse(argv=None):
    p = harness.parser(__doc__, threads=2, rounds=2, lock_wait_s=1800)
    p.add_argument("--rates", default=",".join(map(str, RATES)), help="offered rates (/s), ascending")
    p.add_argument("--requests", type=int, default=1000, help="requests per point")
    p.add_argument(
        "--max-point-s",
        type=float,
        default=0,
        help="cap a point at this many scheduled seconds (fewer than --requests at low rates; 0: no cap)",
    )
    p.add_argument("--closed-requests", type=int, default=200, help="one-at-a-time requests per transport (service time over it)")
    p.add_argument("--timeout-s", type=float, default=2.0)
    p.add_argument("--max-batch", type=int, default=16)
    p.add_argument("--max-wait-ms", type=float, default=0.0, help="the batched front's wait, the same for all (pipeline serve's default)")
    p.add_argument(
        "--loop",
        default="auto",
        choices=("auto", "asyncio", "uvloop"),
        help="the servers' event loop, uvicorn's --loop (auto: uvloop where installed, as pipeline serve runs)",
    )
    p.add_argument("--fronts", default="per-request,batched")
    p.add_argument("--transports", default="tcp,http")
    p.add_argument("--only", default="", help=f"contenders, comma-separated (of {', '.join((*OURS, *PEERS))})")
    p.add_argument("--skip", default="")
    p.add_argument("--int8-variant", default="int8_dynamic")
    p.add_argument(
        "--session-config",
        default=None,
        help="ONNX Runtime session config entries for every ONNX Runtime contender, KEY=VALUE[,KEY=VALUE] ('none': "
        "ONNX Runtime's defaults; default: pipeline serve's)",
    )
    p.add_argument("--quick", action="store_true", help="a short run that shows it works (its figures are not kept)")
    p.add_argument("--out", default=None, help="default: benchmarks/results/<cpu-slug>/serving.json (quick: serving-quick.json)")
    args = p.parse_args(argv)
    if args.quick:
        args.rates, args.requests, args.rounds, args.closed_requests = "5,50,200", 100, 1, 30
        args.only = args.only or "ours-fp32,st-onnx"
    args.rates = [float(r) for r in harness.names(args.rates)]
    args.fronts, args.transports = args.fronts.split(","), args.transports.split(",")
    args.only, args.skip = harness.names(args.only), harness.names(args.skip)
    try:
        args.session_config = session_config_of(args.session_config)
    except ValueError as exc:
        p.error(str(exc))
    unknown = sorted(set(args.only + args.skip) - {*OURS, *PEERS})
    if unknown:
        p.error(f"unknown contender(s) {', '.join(unknown)}; known: {', '.join((*OURS, *PEERS))}")
    return args


def main(argv=None) -> int:
    args = parse(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    summary = run(args)
    out = (
        Path(args.out)
        if args.out
        else results_path(summary["conditions"]["cpu_model"], "serving-quick.json" if args.quick else "serving.json")
    )
    harness.write_result(out, summary, indent=1, default=float, newline=True)
    print(
        f"\n{'contender':<18} {'front':<12} {'transport':<9} {'service ms':>10} "
        + " ".join(f"{'QPS@' + format(t, 'g') + 'ms':>10}" for t in ss.TARGETS_MS)
        + f" {'saturation':>10}"
    )
    for r in summary["rows"]:
        print(
            f"{r['contender']:<18} {r['front']:<12} {r['transport']:<9} {r['service_ms_p50']:>10.2f} "
            + " ".join(f"{r[f'max_qps_p95_{t:g}ms']['qps']:>10.0f}" for t in ss.TARGETS_MS)
            + f" {r['saturation_qps']:>10.0f}"
        )
    print(json.dumps({"headline": summary["headline"], "skipped": summary["skipped"], "out": str(out)}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
