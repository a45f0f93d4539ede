"""Our embedding path against every peer library at its fastest, precision class by precision class.

    python benchmarks/peers_best.py [--threads 2] [--rounds 5] [--singles 100] [--quick]
                                    [--only NAME,...] [--skip NAME,...]

``benchmarks/peers.py`` compares fp32 peers that all run onnxruntime.  A user who wants speed
picks each library's fast path, so here every peer runs at every precision it offers, each in
its own process and, where its dependencies conflict with ours, in its own environment made by
``pipeline.runtime.envs`` under ``<cache_dir>/envs`` (its size is reported):

- ours (pipeline.embedder.Embedder): fp32, O2_cpu, int8_dynamic, int8_static on the CPU provider;
  bf16 through onnxruntime-openvino's OpenVINO execution provider (INFERENCE_PRECISION_HINT
  bf16 in ``load_config``), in the environment issue 18's provider config shares;
- sentence-transformers: torch fp32 and bf16, onnx, its own O2 and O3 exports
  (``export_optimized_onnx_model``), onnx qint8 (``export_dynamic_quantized_onnx_model(...,
  "avx512_vnni")``), openvino f32 and bf16, openvino int8 weight-only (optimum-intel ``load_in_8bit``);
- fastembed; Optimum ``ORTModelForFeatureExtraction`` on the fp32 graph, on its own O2 graph and on
  O2 plus its own dynamic int8 quantization (the recipe of our O2_cpu and int8_dynamic: the same
  files), and on sentence-transformers' qint8 file;
- CTranslate2 ``Encoder``: every compute type this CPU supports among float32, int8,
  int8_float32, bfloat16, int8_bfloat16;
- infinity-emb's engines, torch and optimum (ONNX Runtime), offline on local files.

Same model (all-MiniLM-L6-v2), same sentences (the STS Benchmark test split's unique
sentences), same intra-op thread count.  Each round visits every contender in an order that
rotates a seeded shuffle by n/rounds places a round (``peerstats.round_order``: every contender's
positions spread over the round), first for single-sentence calls (p50, p95), then for the whole
corpus twice, back to back: with **the same batches for all** (the headline, ``"batching":
"equal"``: the batches our embedder makes of the corpus, sorted by length and cut by
``pipeline.embedder.grouping``, one library call per batch) and **as shipped** (the corpus in input order in
one call with batch size 32: each library batches it its own way; those ratios are under
``as_shipped.*``). The timing happens inside each contender's process.  The first corpus pass
(untimed) gives the embeddings for parity (min cosine against our fp32) and for STS Spearman.
A contender counts only if its STS loss against our fp32 is at most --max-sts-loss points.
Peers that run our fp32 file keep onnxruntime's SkipLayerNormFusion, which our embedder turns off
(``pipeline.embedder.embed``; ``benchmarks/fusions.py`` measures it): a product choice any onnxruntime user
could make too. The full result goes to ``benchmarks/results/<cpu>/peers_best.json`` (committed).

The timed part holds the machine-wide benchmark lock; the load average and the CPU share
other processes took (the machine's busy time less ours and our workers') are recorded per
round.  Ratios are taken per round (same round, same conditions) and their median reported.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import csv
import inspect
import json
import os
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WORKER = ROOT / "benchmarks" / "_peer_worker.py"
sys.path.insert(0, str(ROOT / "benchmarks"))
import peerstats  # noqa: E402  (benchmarks/peerstats.py: the arithmetic, tested on its own)

CLASSES = peerstats.CLASSES


def ov_ep_packages() -> tuple[str, ...]:
    """The OpenVINO execution provider's environment: exactly the set issue 18's provider config
    uses (the environment is shared), pinned to this environment's numpy and tokenizers."""
    import numpy
    import tokenizers

    return ("onnxruntime-openvino==1.24.1", f"numpy=={numpy.__version__}", f"tokenizers=={tokenizers.__version__}")


def st_version() -> str:
    import sentence_transformers

    return sentence_transformers.__version__


# peer environments (package set, inherit this environment's packages after their own)
# optimum-intel requires torchvision, and PyPI's torchvision is a CUDA build that does not load
# beside this environment's CPU torch ("operator torchvision::nms does not exist", and
# transformers then fails to import); unpinned, pip even replaces torch with a CUDA build (5.5 GB).
# So the OpenVINO peer gets optimum-intel and what it adds to this environment, without
# torchvision (--no-deps: the rest, torch and transformers included, is this environment's).
# datasets (and what it adds here) is for export_static_quantized_openvino_model, which reads its
# calibration set with datasets.load_dataset: 4.8.5 is the newest that keeps this environment's
# huggingface-hub 0.x (5.x wants 1.x, which transformers 4.57 refuses), with the fsspec it allows.
ST_OPENVINO = lambda: (("optimum-intel==2.2.0", "optimum==2.3.0", "openvino==2026.4.1", "openvino-tokenizers==2026.4.1.0",  # noqa: E731
                        "openvino-telemetry==2025.2.0", "nncf==3.4.0", "ninja==1.13.2",
                        "datasets==4.8.5", "dill==0.4.1", "multiprocess==0.70.19", "xxhash==4.1.0", "fsspec==2026.2.0",
                        "httpx==0.29.0", "httpcore==1.0.9"), True, ("--no-deps",))
FASTEMBED = lambda: (("fastembed==0.9.1",), False, ())  # noqa: E731  its own onnxruntime, as a user gets it
CTRANSLATE2 = lambda: (("ctranslate2==4.8.5",), True, ())  # noqa: E731  the converter needs transformers + torch
# pins numpy<2, sentence-transformers<4; [optimum]: its ONNX engine beside the torch one; [server]: its HTTP server
INFINITY = lambda: (("infinity-emb[torch,optimum,server]==0.0.78",), True, ())  # noqa: E731  (the set benchmarks/serving.py uses: one environment)


def loadavg() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads), from /proc/<pid>/stat."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- a contender in its own process ------------------------------------------------------------
@dataclass
class Contender:
    name: str
    precision: str  # fp32 | int8 | bf16
    library: str
    env: str  # which environment (main or a pipeline.runtime.envs name)
    spec: dict
    ours: bool = False
    note: str = ""
    proc: subprocess.Popen | None = None
    info: dict = field(default_factory=dict)
    single_p50: list[float] = field(default_factory=list)  # per round
    single_p95: list[float] = field(default_factory=list)
    single_all: list[float] = field(default_factory=list)
    corpus_s: list[float] = field(default_factory=list)  # per round, as shipped (NaN: not timed that round)
    corpus_eq_s: list[float] = field(default_factory=list)  # per round, the same batches for all
    min_cosine: float = float("nan")
    sts: float = float("nan")

    def start(self, python: Path, logdir: Path, timeout_s: float) -> None:
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
                   INFINITY_ANONYMOUS_USAGE_STATS="0", DO_NOT_TRACK="1", TOKENIZERS_PARALLELISM="true")
        env.pop("PYTHONPATH", None)  # each environment sees its own packages (ours: root in the spec)
        self.log = logdir / f"{self.name}.log"
        self.proc = subprocess.Popen(
            [str(python), str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=open(self.log, "w"), text=True, env=env, cwd=str(ROOT),
        )
        self.info = self.ask({"op": "start", **self.spec}, timeout_s)["info"]

    def ask(self, msg: dict, timeout_s: float = 600) -> dict:
        assert self.proc is not None
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
        if not ready:
            raise RuntimeError(f"no answer to {msg['op']!r} within {timeout_s:.0f} s")
        line = self.proc.stdout.readline()
        if not line:
            tail = " | ".join(self.log.read_text().strip().splitlines()[-3:]) if self.log.exists() else ""
            raise RuntimeError(f"the process ended (exit {self.proc.poll()}): {tail}")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.ask({"op": "stop"}, 30)
        except Exception:
            pass
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def result(self, equal: bool) -> peerstats.Result:
        return peerstats.Result(self.name, self.precision, self.ours, self.sts, list(self.single_p50),
                                list(self.corpus_eq_s if equal else self.corpus_s), self.min_cosine)

    def row(self, n_corpus: int, ref_sts: float, max_sts_loss: float) -> dict:
        timed, timed_eq = peerstats.timed(self.corpus_s), peerstats.timed(self.corpus_eq_s)
        return {
            "contender": self.name, "precision": self.precision, "library": self.library, "ours": self.ours,
            "env": self.env, "single_p50_ms": statistics.median(self.single_p50),
            "single_p95_ms": statistics.median(self.single_p95),
            "corpus_sentences_per_s": n_corpus / statistics.median(timed_eq) if timed_eq else None,
            "corpus_sentences_per_s_as_shipped": n_corpus / statistics.median(timed) if timed else None,
            "corpus_rounds": len(timed_eq), "min_cosine_vs_ours_fp32": self.min_cosine,
            "stsb_spearman": self.sts, "sts_loss_vs_fp32": ref_sts - self.sts,
            "qualifies": peerstats.qualifies(self.result(True), ref_sts, max_sts_loss),
            "single_p50_ms_per_round": self.single_p50, "single_p95_ms_per_round": self.single_p95,
            "corpus_s_per_round": self.corpus_eq_s, "corpus_s_per_round_as_shipped": self.corpus_s,
            "note": self.note, "info": self.info,
        }


# -- preparing the files each peer reads -------------------------------------------------------
def load_artifact(variant: str):
    from pipeline.model import export, sources
    from pipeline.config import to_config
    from pipeline.study.stages import compose_config

    cfg = to_config(compose_config([f"variant={variant}"]))
    resolved = sources.resolve(cfg.model)
    return cfg, resolved, export.export(resolved, cfg.model, cfg.variant, cfg.cache_dir, cfg.quality)


def st_onnx_folder(resolved, fp32_art, root: Path) -> Path:
    """A copy of the checkpoint folder (no weights) whose onnx/model.onnx is our fp32 export,
    plus sentence-transformers' own qint8 export of it (``export_dynamic_quantized_onnx_model``,
    avx512_vnni), built once."""
    folder = root / "st-onnx"
    qint8 = folder / "onnx" / "model_qint8_avx512_vnni.onnx"
    if qint8.is_file():
        return folder
    tmp = root / f".st-onnx.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(resolved.folder, tmp, ignore=shutil.ignore_patterns("*.safetensors", "*.bin", "onnx", "openvino"))
    (tmp / "onnx").mkdir()
    shutil.copy2(fp32_art.onnx_path, tmp / "onnx" / "model.onnx")
    from sentence_transformers import SentenceTransformer, export_dynamic_quantized_onnx_model

    model = SentenceTransformer(str(tmp), backend="onnx", device="cpu", local_files_only=True, model_kwargs={"file_name": "onnx/model.onnx"})
    export_dynamic_quantized_onnx_model(model, "avx512_vnni", str(tmp))
    if not (tmp / "onnx" / qint8.name).is_file():
        raise RuntimeError(f"export_dynamic_quantized_onnx_model wrote {sorted(p.name for p in (tmp / 'onnx').iterdir())}, not {qint8.name}")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


def st_optimized(st_folder: Path, level: str) -> str:
    """sentence-transformers' own ``export_optimized_onnx_model`` of our fp32 export at ``level``
    (O2, O3, O4: Optimum's ORTOptimizer presets), written beside it once; returns the file name."""
    fname = f"model_{level}.onnx"
    if (st_folder / "onnx" / fname).is_file():
        return fname
    from sentence_transformers import SentenceTransformer, export_optimized_onnx_model

    model = SentenceTransformer(str(st_folder), backend="onnx", device="cpu", local_files_only=True, model_kwargs={"file_name": "onnx/model.onnx"})
    export_optimized_onnx_model(model, level, str(st_folder))
    if not (st_folder / "onnx" / fname).is_file():
        raise RuntimeError(f"export_optimized_onnx_model wrote {sorted(p.name for p in (st_folder / 'onnx').iterdir())}, not {fname}")
    return fname


def optimum_qint8_folder(st_folder: Path, fp32_art, root: Path) -> Path:
    folder = root / "optimum-qint8"
    if not (folder / "model_qint8_avx512_vnni.onnx").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        for p in fp32_art.folder.iterdir():
            if p.is_file() and p.suffix != ".onnx" and not p.name.startswith("."):
                shutil.copy2(p, folder / p.name)
        shutil.copy2(st_folder / "onnx" / "model_qint8_avx512_vnni.onnx", folder / "model_qint8_avx512_vnni.onnx")
    return folder


def infinity_onnx_folder(resolved, graph: Path, root: Path) -> Path:
    """The folder infinity-emb's optimum engine loads: the checkpoint's config, tokenizer and pooling
    files with ``graph`` as model.onnx, its only ONNX file, at the top (the engine picks a file by
    globbing the folder, preferring one named *quantize* on the CPU, and there is none; it passes
    the path it found as Optimum's file_name, which Optimum 2 matches against bare file names only)."""
    folder = root / "infinity-onnx"
    source = f"{graph.resolve()} {graph.stat().st_size}"
    if not (folder / "model.onnx").is_file() or not (folder / "source.txt").is_file() or (folder / "source.txt").read_text() != source:
        tmp = root / f".infinity-onnx.{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(resolved.folder, tmp, ignore=shutil.ignore_patterns("*.safetensors", "*.bin", "*.onnx", "onnx", "openvino"))
        shutil.copy2(graph, tmp / "model.onnx")
        (tmp / "source.txt").write_text(source)
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(root / "infinity-onnx.hub", ignore_errors=True)  # its optimized graph of an older folder
        tmp.rename(folder)
    return folder


OV_STATIC_FILE = "openvino/openvino_model_qint8_quantized.xml"
_OV_STATIC = """
import sys
from optimum.intel import OVQuantizationConfig
from sentence_transformers import SentenceTransformer, export_static_quantized_openvino_model
folder, calibration, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
model = SentenceTransformer(folder, backend="openvino", device="cpu", local_files_only=True)
export_static_quantized_openvino_model(model, OVQuantizationConfig(num_samples=n), folder, dataset_name=calibration,
                                       dataset_config_name="default", dataset_split="train", column_name="sentence")
"""


def ov_static_folder(python: Path, resolved, calibration: list[str], root: Path, timeout_s: float = 1800) -> Path:
    """sentence-transformers' ``export_static_quantized_openvino_model`` (NNCF post-training static int8)
    of the checkpoint, made once in the OpenVINO peer's environment.  Its calibration set is the
    given local sentences, written as a one-column CSV folder that ``datasets.load_dataset`` reads
    offline, in place of its default (glue/sst2 from the hub)."""
    folder = root / "st-openvino-static"
    if (folder / OV_STATIC_FILE).is_file():
        return folder
    if not calibration:
        raise ValueError("no calibration sentences")
    tmp, cal = root / f".st-openvino-static.{os.getpid()}", root / f".ov-calibration.{os.getpid()}"
    for d in (tmp, cal):
        shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(resolved.folder, tmp, ignore=shutil.ignore_patterns("onnx", "openvino"))
    cal.mkdir()
    with open(cal / "train.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sentence"])
        w.writerows([t] for t in calibration)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1", DO_NOT_TRACK="1")
    env.pop("PYTHONPATH", None)
    try:
        proc = subprocess.run([str(python), "-c", _OV_STATIC, str(tmp), str(cal), str(len(calibration))],
                              capture_output=True, text=True, timeout=timeout_s, env=env)
        if proc.returncode != 0:
            tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
            raise RuntimeError(f"export_static_quantized_openvino_model failed (exit {proc.returncode}): {tail}")
        if not (tmp / OV_STATIC_FILE).is_file():
            found = sorted(p.name for p in (tmp / "openvino").iterdir()) if (tmp / "openvino").is_dir() else []
            raise RuntimeError(f"export_static_quantized_openvino_model wrote {found}, not {OV_STATIC_FILE}")
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
    finally:
        shutil.rmtree(cal, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def ct2_folder(python: Path, resolved, root: Path) -> Path:
    """CTranslate2's conversion of the checkpoint (float32 weights; the compute type is chosen
    at load), made once with its converter in its environment."""
    folder = root / "ct2-float32"
    if (folder / "model.bin").is_file():
        return folder
    code = ("import sys, ctranslate2.converters as c; "
            "c.TransformersConverter(sys.argv[1]).convert(sys.argv[2], force=True)")
    proc = subprocess.run([str(python), "-c", code, str(resolved.folder), str(folder)], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise RuntimeError(f"ct2-transformers conversion failed (exit {proc.returncode}): {tail}")
    return folder


# -- the run -------------------------------------------------------------------------------------
def make_env(name: str, packages: tuple[str, ...], inherit: bool, root: Path, report: dict, pip_args: tuple[str, ...] = ()):
    from pipeline.runtime import envs

    t0 = time.perf_counter()
    env = envs.ensure(packages, root, name=name, inherit=inherit, pip_args=pip_args, log=lambda m: print(m, file=sys.stderr, flush=True))
    report[name] = {"packages": list(packages), "inherit": inherit, "pip_args": list(pip_args), "ok": env.ok, "size_mb": env.size_mb,
                    "created_s": env.created_s, "path": str(env.path), "reason": env.reason,
                    "seconds": round(time.perf_counter() - t0, 1)}
    return env


def contenders_for(args, cfg, resolved, arts: dict, peers_root: Path, env_root: Path, env_report: dict, skipped: dict):
    """(contender, python) pairs; what cannot be prepared goes to ``skipped`` with its reason."""
    th, ml = args.threads, cfg.model.max_length
    fp32 = arts["fp32"]
    config = json.loads((fp32.folder / "config.json").read_text())
    out: list[tuple[Contender, Path]] = []
    main_py = Path(sys.executable)

    def want(name: str) -> bool:
        if args.only and not any(name == o or name.startswith(o) for o in args.only):
            return False
        return not any(name == s or name.startswith(s) for s in args.skip)

    def ours(name, variant, precision, note=""):
        if variant not in arts:
            return
        a = arts[variant]
        spec = {"kind": "ours", "root": str(ROOT), "folder": str(a.folder), "onnx_file": a.onnx_path.name, "threads": th, "max_length": ml}
        out.append((Contender(name, precision, "ours (pipeline.embedder.embed)", "main", spec, ours=True, note=note), main_py))

    for name, variant, prec in [("ours-fp32", "fp32", "fp32"), ("ours-O2_cpu", "O2_cpu", "fp32"),
                                ("ours-int8_dynamic", "int8_dynamic", "int8"), ("ours-int8_static", "int8_static", "int8")]:
        if want(name):
            ours(name, variant, prec)

    # bf16: our embedder on the OpenVINO execution provider, in issue 18's environment
    if want("ours-bf16-openvino-ep"):
        env = make_env("onnxruntime-openvino", ov_ep_packages(), False, env_root, env_report)
        if env.ok:
            for name, hint, prec in [("ours-bf16-openvino-ep", "bf16", "bf16")] + ([("ours-fp32-openvino-ep", "f32", "fp32")] if args.ov_ep_f32 else []):
                spec = {"kind": "ours", "root": str(ROOT), "folder": str(fp32.folder), "onnx_file": fp32.onnx_path.name, "threads": th,
                        "max_length": ml, "provider": "OpenVINOExecutionProvider",
                        "provider_options": {"device_type": "CPU", "load_config": {"CPU": {"INFERENCE_PRECISION_HINT": hint, **args.ov_extra}}}}
                out.append((Contender(name, prec, "ours (pipeline.embedder.embed, OpenVINO EP)", env.path.name, spec, ours=True), env.python))
        else:
            skipped["ours-bf16-openvino-ep"] = f"environment not made: {env.reason}"

    # experiments (closing the gaps): more rows of ours, e.g. another variant on the OpenVINO EP,
    # another call_cost, session config entries; each {"name", "variant", "precision", and
    # optionally "openvino_hint" (runs on the OpenVINO EP), "ov_extra", "call_cost", "session_config",
    # "threads" (fewer than everyone's, never more)}
    for x in args.extra_ours:
        if x.get("threads", th) > th:
            raise SystemExit(f"{x['name']}: more threads ({x['threads']}) than the contest's {th}")
        if x["variant"] not in arts:
            skipped[x["name"]] = f"variant {x['variant']} not built"
            continue
        a = arts[x["variant"]]
        spec = {"kind": "ours", "root": str(ROOT), "folder": str(a.folder), "onnx_file": a.onnx_path.name, "threads": th, "max_length": ml}
        for k in ("call_cost", "session_config", "threads"):
            if k in x:
                spec[k] = x[k]
        python, env_name, lib = main_py, "main", "ours (pipeline.embedder.embed)"
        if "openvino_hint" in x:
            env = make_env("onnxruntime-openvino", ov_ep_packages(), False, env_root, env_report)
            if not env.ok:
                skipped[x["name"]] = f"environment not made: {env.reason}"
                continue
            python, env_name, lib = env.python, env.path.name, "ours (pipeline.embedder.embed, OpenVINO EP)"
            spec.update(provider="OpenVINOExecutionProvider", provider_options={
                "device_type": "CPU", "load_config": {"CPU": {"INFERENCE_PRECISION_HINT": x["openvino_hint"], **x.get("ov_extra", {})}}})
        out.append((Contender(x["name"], x["precision"], lib, env_name, spec, ours=True, note=x.get("note", "experiment")), python))

    # sentence-transformers (this environment): torch fp32 / bf16, onnx, onnx qint8
    if want("st-torch"):
        out.append((Contender("st-torch", "fp32", "sentence-transformers", "main", {"kind": "st", "backend": "torch", "folder": str(resolved.folder), "threads": th}), main_py))
    if want("st-torch-bf16"):
        out.append((Contender("st-torch-bf16", "bf16", "sentence-transformers", "main",
                              {"kind": "st", "backend": "torch", "folder": str(resolved.folder), "threads": th, "model_kwargs": {"torch_dtype": "bfloat16"}}), main_py))
    st_folder = None
    if any(want(n) for n in ("st-onnx", "st-onnx-qint8", "optimum-ort-qint8", "st-onnx-O2", "st-onnx-O3")):
        try:
            st_folder = st_onnx_folder(resolved, fp32, peers_root)
        except Exception as exc:
            for n in ("st-onnx", "st-onnx-qint8", "optimum-ort-qint8", "st-onnx-O2", "st-onnx-O3"):
                skipped[n] = f"preparing the sentence-transformers ONNX folder failed: {type(exc).__name__}: {exc}"
    if st_folder is not None:
        if want("st-onnx"):
            out.append((Contender("st-onnx", "fp32", "sentence-transformers", "main", {"kind": "st-onnx", "folder": str(st_folder), "file_name": "onnx/model.onnx", "threads": th}), main_py))
        if want("st-onnx-qint8"):
            out.append((Contender("st-onnx-qint8", "int8", "sentence-transformers", "main",
                                  {"kind": "st-onnx", "folder": str(st_folder), "file_name": "onnx/model_qint8_avx512_vnni.onnx", "threads": th},
                                  note="export_dynamic_quantized_onnx_model(model, 'avx512_vnni')"), main_py))
    if want("optimum-ort"):
        out.append((Contender("optimum-ort", "fp32", "optimum", "main",
                              {"kind": "optimum", "folder": str(fp32.folder), "onnx_file": fp32.onnx_path.name, "tokenizer_folder": str(fp32.folder), "threads": th, "max_length": ml}), main_py))
    # Optimum on the graphs its own ORTOptimizer (O2) and ORTQuantizer (O2 + dynamic int8) make: the
    # recipe our O2_cpu and int8_dynamic variants are, so the Optimum peer runs on its fastest path too
    for name, variant, prec in (("optimum-ort-O2", "O2_cpu", "fp32"), ("optimum-ort-int8-O2", "int8_dynamic", "int8")):
        if not want(name):
            continue
        if variant not in arts:
            skipped[name] = f"the {variant} file was not built"
            continue
        a = arts[variant]
        out.append((Contender(name, prec, "optimum", "main",
                              {"kind": "optimum", "folder": str(a.folder), "onnx_file": a.onnx_path.name, "tokenizer_folder": str(fp32.folder),
                               "threads": th, "max_length": ml},
                              note=f"Optimum's {variant} recipe (the same file as ours-{variant}), run through ORTModelForFeatureExtraction"), main_py))
    if want("st-onnx-O4"):
        skipped["st-onnx-O4"] = "O4 is O3 with fp16 weights, which Optimum's ORTOptimizer makes for the GPU only"
    for level in ("O2", "O3"):
        name = f"st-onnx-{level}"
        if not want(name) or st_folder is None:
            continue
        try:
            fname = st_optimized(st_folder, level)
        except Exception as exc:
            skipped[name] = f"export_optimized_onnx_model({level}) failed: {type(exc).__name__}: {exc}"
            continue
        out.append((Contender(name, "fp32", "sentence-transformers", "main",
                              {"kind": "st-onnx", "folder": str(st_folder), "file_name": f"onnx/{fname}", "threads": th},
                              note=f"export_optimized_onnx_model(model, '{level}')"), main_py))
    if want("optimum-ort-qint8") and st_folder is not None:
        q = optimum_qint8_folder(st_folder, fp32, peers_root)
        out.append((Contender("optimum-ort-qint8", "int8", "optimum", "main",
                              {"kind": "optimum", "folder": str(q), "onnx_file": "model_qint8_avx512_vnni.onnx", "tokenizer_folder": str(fp32.folder), "threads": th, "max_length": ml},
                              note="ORTQuantizer avx512_vnni dynamic (the file sentence-transformers exports)"), main_py))

    # sentence-transformers with OpenVINO (optimum-intel), its own environment
    ov_names = ("st-openvino-f32", "st-openvino-bf16", "st-openvino-int8wo", "st-openvino-int8-static")
    if any(want(n) for n in ov_names):
        pk, inh, pa = ST_OPENVINO()
        env = make_env("st-openvino", pk, inh, env_root, env_report, pa)
        for name, prec, kwargs, note in [
            ("st-openvino-f32", "fp32", {"ov_config": {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": th}}, ""),
            ("st-openvino-bf16", "bf16", {"ov_config": {"INFERENCE_PRECISION_HINT": "bf16", "INFERENCE_NUM_THREADS": th}}, ""),
            ("st-openvino-int8wo", "int8", {"ov_config": {"INFERENCE_NUM_THREADS": th}, "load_in_8bit": True, "export": True},
             "weight-only int8 (optimum-intel load_in_8bit), activations in OpenVINO's default precision on this CPU"),
        ]:
            if not want(name):
                continue
            if not env.ok:
                skipped[name] = f"environment not made: {env.reason}"
                continue
            out.append((Contender(name, prec, "sentence-transformers (openvino)", env.path.name,
                                  {"kind": "st", "backend": "openvino", "folder": str(resolved.folder), "threads": th, "model_kwargs": kwargs}, note=note), env.python))
        if want("st-openvino-int8-static"):
            # NNCF static int8, calibrated on the STS dev sentences (as our int8_static), the test set untouched
            try:
                if not env.ok:
                    raise RuntimeError(f"environment not made: {env.reason}")
                from pipeline.config import QualityConfig
                from pipeline.data.sts import load_sts

                dev = load_sts(QualityConfig(split="dev")).unique_sentences[: args.ov_calibration_samples]
                folder = ov_static_folder(env.python, resolved, dev, peers_root)
                out.append((Contender("st-openvino-int8-static", "int8", "sentence-transformers (openvino)", env.path.name,
                                      {"kind": "st", "backend": "openvino", "folder": str(folder), "threads": th,
                                       "model_kwargs": {"file_name": OV_STATIC_FILE, "ov_config": {"INFERENCE_NUM_THREADS": th}}},
                                      note=f"export_static_quantized_openvino_model, {len(dev)} STS dev sentences as its calibration set"), env.python))
            except Exception as exc:
                skipped["st-openvino-int8-static"] = f"{type(exc).__name__}: {exc}"

    if want("fastembed"):
        pk, inh, pa = FASTEMBED()
        env = make_env("fastembed", pk, inh, env_root, env_report, pa)
        if env.ok:
            out.append((Contender("fastembed", "fp32", "fastembed", env.path.name,
                                  {"kind": "fastembed", "folder": str(fp32.folder), "onnx_file": fp32.onnx_path.name, "dim": config["hidden_size"], "threads": th},
                                  note="pointed at our fp32 export (its hub files are not reachable offline); fastembed offers no other precision for this model"), env.python))
        else:
            skipped["fastembed"] = f"environment not made: {env.reason}"

    ct2_types = [("ct2-float32", "float32", "fp32"), ("ct2-int8", "int8", "int8"), ("ct2-int8_float32", "int8_float32", "int8"),
                 ("ct2-bfloat16", "bfloat16", "bf16"), ("ct2-int8_bfloat16", "int8_bfloat16", "int8")]
    if any(want(n) for n, _, _ in ct2_types):
        pk, inh, pa = CTRANSLATE2()
        env = make_env("ctranslate2", pk, inh, env_root, env_report, pa)
        folder = None
        if env.ok:
            try:
                folder = ct2_folder(env.python, resolved, peers_root)
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
        else:
            reason = f"environment not made: {env.reason}"
        if folder is not None:
            probe = subprocess.run([str(env.python), "-c", "import ctranslate2; print(' '.join(sorted(ctranslate2.get_supported_compute_types('cpu'))))"],
                                   capture_output=True, text=True)
            supported = set(probe.stdout.split())
        for name, ct, prec in ct2_types:
            if not want(name):
                continue
            if folder is None:
                skipped[name] = reason
            elif ct not in supported:
                skipped[name] = f"ctranslate2 does not offer compute type {ct} on this CPU (supported: {', '.join(sorted(supported))})"
            else:
                out.append((Contender(name, prec, "ctranslate2", env.path.name,
                                      {"kind": "ct2", "folder": str(folder), "compute_type": ct, "tokenizer_folder": str(fp32.folder), "threads": th, "max_length": ml}), env.python))

    if want("infinity-torch") or want("infinity-optimum"):
        pk, inh, pa = INFINITY()
        env = make_env("infinity-emb-server", pk, inh, env_root, env_report, pa)
        # its torch engine on the checkpoint; its optimum (ONNX Runtime) engine on a folder whose only ONNX file is
        # Optimum's O2 graph of our fp32 export (sentence-transformers' export_optimized_onnx_model). The engine's own
        # ORTOptimizer pass (level 99) is written for Optimum 1.x and fails on the Optimum 2 here (OptimizationConfig lost
        # optimize_with_onnxruntime_only); it then runs the graph it was given, so it is given the optimized one.
        # (Optimum 1.27, its own pass's version, does not import beside torch 2.13: torch.onnx lost _attention_scale.)
        engines = [("infinity-torch", "torch", resolved.folder, {})]
        if want("infinity-optimum"):
            try:
                st = st_folder if st_folder is not None else st_onnx_folder(resolved, fp32, peers_root)
                graph = st / "onnx" / st_optimized(st, "O2")
                # its optimum engine pools by CLS unless told (pooling_method "auto" is CLS there): told the model's own
                engines.append(("infinity-optimum", "optimum", infinity_onnx_folder(resolved, graph, peers_root),
                                {"hf_hub_cache": str(peers_root / "infinity-onnx.hub"), "pooling_method": cfg.model.native_pooling or "mean"}))
            except Exception as exc:
                skipped["infinity-optimum"] = f"preparing its ONNX folder failed: {type(exc).__name__}: {exc}"
        for name, engine, folder, extra in engines:
            if not want(name):
                continue
            if env.ok:
                out.append((Contender(name, "fp32", "infinity-emb", env.path.name,
                                      {"kind": "infinity", "engine": engine, "folder": str(folder), "threads": th, "batch_size": args.batch_size, **extra},
                                      note="its optimum engine on Optimum's O2 graph of our fp32 export" if engine == "optimum" else ""), env.python))
            else:
                skipped[name] = f"environment not made: {env.reason}"
    return out


def other_share(a, b) -> float | None:
    from pipeline.measure.conditions import Window

    return Window.between(a, b).other_cpu_share


def mark(workers: list[Contender]):
    from pipeline.measure.conditions import Mark

    m = Mark.now()
    return replace(m, own_cpu=m.own_cpu + sum(proc_cpu_s(c.proc.pid) for c in workers if c.proc is not None))


def run(args) -> dict:
    from pipeline.measure import roofline
    from pipeline.core.machine_lock import MachineLock
    from pipeline.measure.conditions import Thresholds, in_fresh_process
    from pipeline.config import QualityConfig
    from pipeline.measure.quality import score
    from pipeline.data.sts import load_sts

    t_start = time.time()
    cfg, resolved, fp32 = load_model_all(args)
    arts = {"fp32": fp32}
    for v in args.variants:
        try:
            arts[v] = load_artifact(v)[2]
        except Exception as exc:
            SKIPPED[f"ours-{v}"] = f"variant not built: {type(exc).__name__}: {exc}"
    data = load_sts(QualityConfig(split="test"))
    corpus, sts_texts, workload_tags = workload_texts(args, cfg, fp32, data.unique_sentences)
    rng = np.random.default_rng(0)
    singles = [corpus[i] for i in rng.choice(len(corpus), size=min(args.singles, len(corpus)), replace=False)]

    cache = Path(cfg.cache_dir).resolve()
    peers_root = cache / "peers"
    env_root = cache / "envs"
    peers_root.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="peers-best-"))
    logdir = ROOT / "reports" / "peers_best_logs"
    logdir.mkdir(parents=True, exist_ok=True)
    (run_dir / "corpus.json").write_text(json.dumps(corpus))
    (run_dir / "singles.json").write_text(json.dumps(singles))
    # equal batching: the batches our embedder makes of the corpus (sorted by length, cut where
    # padding plus per-call cost is least), given to every contender, so all compute the same shapes
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(fp32.folder / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(cfg.model.max_length)
    lengths = [len(e.ids) for e in tok.encode_batch(corpus)]
    equal = peerstats.length_sorted_batches(lengths, args.batch_size, args.call_cost)
    (run_dir / "equal.json").write_text(json.dumps(equal))
    if sts_texts is not None:  # the STS sentences, embedded apart from the passages for the quality check
        (run_dir / "sts.json").write_text(json.dumps(sts_texts))
        sts_lengths = [len(e.ids) for e in tok.encode_batch(sts_texts)]
        (run_dir / "equal_sts.json").write_text(json.dumps(peerstats.length_sorted_batches(sts_lengths, args.batch_size, args.call_cost)))
    batching = {"equal": {"policy": f"pipeline.embedder.grouping.length_groups(batch_size={args.batch_size}, call_cost={args.call_cost}), "
                                    "one library call per batch", "batches": len(equal),
                          "padded_tokens": peerstats.padded_tokens(lengths, equal)},
                "as_shipped": {"policy": f"the corpus in input order in one library call with batch_size={args.batch_size}: "
                                         "each library batches it its own way (sentence-transformers sorts by length inside encode; "
                                         "fastembed, Optimum and CTranslate2 wrappers cut it in input order; ours sorts and groups)",
                               "padded_tokens_input_order": peerstats.padded_tokens(lengths, peerstats.input_order_batches(len(corpus), args.batch_size))},
                "real_tokens": sum(lengths)}

    env_report: dict = {}
    pairs = contenders_for(args, cfg, resolved, arts, peers_root, env_root, env_report, SKIPPED)
    contenders: list[Contender] = []
    STARTED.extend(c for c, _ in pairs)
    for c, python in pairs:
        print(f"starting {c.name} ({c.env})", file=sys.stderr, flush=True)
        try:
            c.start(python, logdir, args.start_timeout)
            c.ask({"op": "texts", "name": "corpus", "file": str(run_dir / "corpus.json")})
            c.ask({"op": "texts", "name": "singles", "file": str(run_dir / "singles.json")})
            c.ask({"op": "batches", "name": "equal", "file": str(run_dir / "equal.json")})
            if sts_texts is not None:
                c.ask({"op": "texts", "name": "sts", "file": str(run_dir / "sts.json")})
                c.ask({"op": "batches", "name": "equal_sts", "file": str(run_dir / "equal_sts.json")})
            contenders.append(c)
        except Exception as exc:
            SKIPPED[c.name] = f"{type(exc).__name__}: {exc}"
            print(f"{c.name} skipped: {SKIPPED[c.name]}", file=sys.stderr, flush=True)
            c.stop()
    if not any(c.name == "ours-fp32" for c in contenders):
        raise SystemExit("ours-fp32 (the reference) did not start: " + SKIPPED.get("ours-fp32", "not selected"))

    th = Thresholds()
    rounds_conditions = []
    with MachineLock(wait_s=args.lock_wait_s, label="benchmarks/peers_best.py") as lock:
        load_before = loadavg()
        # the untimed first pass: embeddings for parity and STS (and every contender warm)
        for c in contenders:
            try:
                c.ask({"op": "corpus", "texts": "corpus", "batches": "equal", "save": str(run_dir / f"{c.name}.npy")})
                if sts_texts is not None:
                    c.ask({"op": "corpus", "texts": "sts", "batches": "equal_sts", "save": str(run_dir / f"{c.name}.sts.npy")})
            except Exception as exc:
                SKIPPED[c.name] = f"first corpus pass failed: {type(exc).__name__}: {exc}"
        contenders = [c for c in contenders if c.name not in SKIPPED]
        a_all = mark(contenders)
        by_name = {c.name: c for c in contenders}
        orders = []
        for r in range(args.rounds):
            order = [by_name[n] for n in peerstats.round_order([c.name for c in contenders], r, args.rounds, seed=args.seed)]
            orders.append([c.name for c in order])
            a = mark(contenders)
            for c in order:
                time.sleep(args.settle_s)  # the previous contender's spinning threads wind down
                ms = c.ask({"op": "single", "texts": "singles", "n": args.singles, "warm": 5})["ms"]
                c.single_p50.append(float(np.percentile(ms, 50)))
                c.single_p95.append(float(np.percentile(ms, 95)))
                c.single_all.extend(ms)
            for c in order:  # each contender's two corpus passes back to back: the same batches for all, then as shipped
                if c.name in SLOW and r >= args.slow_corpus_rounds:
                    c.corpus_eq_s.append(float("nan"))
                    c.corpus_s.append(float("nan"))
                    continue
                time.sleep(args.settle_s)
                c.corpus_eq_s.append(c.ask({"op": "corpus", "texts": "corpus", "batches": "equal", "save": None})["s"])
                c.corpus_s.append(c.ask({"op": "corpus", "texts": "corpus", "batch_size": args.batch_size, "save": None})["s"])
            b = mark(contenders)
            rounds_conditions.append({"round": r + 1, "seconds": round(b.wall - a.wall, 1), "other_cpu_share": other_share(a, b), "loadavg": loadavg()})
            print(f"round {r + 1}/{args.rounds} done ({b.wall - a.wall:.0f} s, others' CPU {other_share(a, b):.1%}, load {loadavg()})", file=sys.stderr, flush=True)
        b_all = mark(contenders)
        load_after = loadavg()
        for c in contenders:
            c.stop()
        # each precision's matrix-product peak, now, in a fresh process (as pipeline.measure.roofline does)
        peaks = {}
        for prec in ("fp32", "int8"):
            value, window, reason = in_fresh_process("peak", args.threads, prec, th)
            peaks[prec] = {**value, "other_cpu_share": window.other_cpu_share, "contended": reason}
        lock_info = {"held": lock.held, "waited_s": round(lock.waited_s, 1), "contention": lock.contention}

    # parity and quality from the first pass
    ref = np.load(run_dir / "ours-fp32.npy")
    for c in contenders:
        v = np.load(run_dir / f"{c.name}.npy")
        c.min_cosine = float((v * ref).sum(axis=1).min())  # on the workload's texts (passages: the cosine floor there)
        sv = v if sts_texts is None else np.load(run_dir / f"{c.name}.sts.npy")
        c.sts = score(lambda s, batch_size, sv=sv: sv, data).stsb_spearman
    ref_sts = next(c.sts for c in contenders if c.name == "ours-fp32")
    n = len(corpus)
    rows = [c.row(n, ref_sts, args.max_sts_loss) for c in contenders]
    by = {c.name: c for c in contenders}
    equal_results = [c.result(True) for c in contenders]
    per_class = {k: peerstats.class_ratios(equal_results, (k,), ref_sts, args.max_sts_loss) for k in CLASSES}

    # roofline of our best fp32 and int8 corpus runs, each against its precision's peak
    flops = roofline.model_flops(json.loads((fp32.folder / "config.json").read_text()), lengths)
    roof = {}
    for prec in ("fp32", "int8"):
        best = per_class[prec]["ours_corpus"]
        if best is None:
            roof[prec] = None
            continue
        s = statistics.median(peerstats.timed(by[best].corpus_eq_s))
        roof[prec] = {"contender": best, "achieved_gops": flops / s / 1e9, "peak_gops": peaks[prec]["peak_gflops"],
                      "fraction": flops / s / (peaks[prec]["peak_gflops"] * 1e9), "peak_contended": peaks[prec]["contended"]}

    summary = {
        "workload": args.workload, "workload_detail": workload_tags,
        "threads": args.threads, "rounds": args.rounds, "sentences_single": len(singles), "sentences_corpus": n,
        "batch_size": args.batch_size, "max_sts_loss": args.max_sts_loss, "fp32_stsb_spearman": ref_sts,
        "batching": "equal",  # the headline: every contender given the same batches
        **peerstats.headline(equal_results, ref_sts, args.max_sts_loss),
        # each library batching the corpus its own way, under their own keys
        **peerstats.headline([c.result(False) for c in contenders], ref_sts, args.max_sts_loss, prefix="as_shipped."),
    }
    summary.update({"batching_detail": batching, "round_orders": orders,
        "by_class": per_class,
        "roofline_fraction_fp32": roof["fp32"]["fraction"] if roof.get("fp32") else None,
        "roofline_fraction_int8": roof["int8"]["fraction"] if roof.get("int8") else None,
        "roofline": roof, "peaks": peaks,
        "loadavg_before": load_before, "loadavg_after": load_after,
        "other_cpu_share": other_share(a_all, b_all),
        "rounds_conditions": rounds_conditions, "lock": lock_info,
        "cpu_model": __import__("pipeline.core.machine", fromlist=["cpu_model"]).cpu_model(), "cores": os.cpu_count(),
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "envs": env_report, "skipped": dict(SKIPPED), "wall_s": round(time.time() - t_start, 1),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "table": rows,
    })
    shutil.rmtree(run_dir, ignore_errors=True)
    return summary


PASSAGE_LENGTHS = (64, 128, 256)  # up to the model's max_length: every library keeps the whole text (none truncates)


def workload_texts(args, cfg, fp32, sentences: list[str]) -> tuple[list[str], list[str] | None, dict]:
    """(the texts timed, the STS sentences when those are other texts, the workload's tags).
    ``--workload passages``: real prose cut to 64/128/256 tokens (pipeline/measure/workload.py), the
    model's document prefix included; the STS quality is then measured on the sentences apart."""
    if args.workload == "sentences":
        return sentences, None, {"workload": "sentences"}
    from pipeline.measure import workload
    from pipeline.config import WorkloadConfig
    from pipeline.embedder.embed import position_limit

    lengths = [n for n in PASSAGE_LENGTHS if n <= cfg.model.max_length]
    wcfg = WorkloadConfig(name="passages", lengths=lengths, texts_per_length=args.passages_per_length)
    wl = workload.build(wcfg, cfg.model, fp32.folder / "tokenizer.json", sentences, position_limit(fp32.folder))
    return wl.texts, sentences, {**wl.tags(), "lengths": lengths, "texts_per_length": args.passages_per_length}


def load_model_all(args):
    return load_artifact("fp32")


SKIPPED: dict[str, str] = {}
STARTED: list[Contender] = []  # every worker process, ended on any exit
SLOW = {"st-torch", "st-torch-bf16", "infinity-torch"}  # torch's slow corpus passes: timed in --slow-corpus-rounds rounds


def main(argv=None) -> int:
    from pipeline.core.machine import cpu_model
    from pipeline.embedder.embed import Embedder

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--singles", type=int, default=100, help="single-sentence calls per contender per round")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--call-cost", type=int, default=inspect.signature(Embedder).parameters["call_cost"].default,
                   help="the per-call cost (padded tokens) of the equal batches: our embedder's default")
    p.add_argument("--seed", type=int, default=0, help="the seed of the rounds' base visiting order")
    p.add_argument("--slow-corpus-rounds", type=int, default=2, help="corpus rounds for the torch contenders (st-torch, st-torch-bf16, infinity-torch)")
    p.add_argument("--variants", default="O2_cpu,int8_dynamic,int8_static", help="our variants beside fp32")
    p.add_argument("--ov-calibration-samples", type=int, default=300,
                   help="STS dev sentences that calibrate the OpenVINO static int8 peer (its default num_samples is 300)")
    p.add_argument("--only", default="", help="comma-separated contender names (or prefixes) to run; ours-fp32 is always added")
    p.add_argument("--skip", default="", help="comma-separated contender names (or prefixes) to leave out")
    p.add_argument("--ov-ep-f32", action="store_true", help="also our embedder on the OpenVINO EP in f32")
    p.add_argument("--ov-extra", default="{}", help="extra OpenVINO CPU properties (JSON) for our OpenVINO EP rows")
    p.add_argument("--extra-ours", default="[]", help="more rows of ours as a JSON list (see contenders_for), for closing experiments")
    p.add_argument("--max-sts-loss", type=float, default=1.0)
    p.add_argument("--settle-s", type=float, default=0.2)
    p.add_argument("--lock-wait-s", type=float, default=900)
    p.add_argument("--start-timeout", type=float, default=900)
    p.add_argument("--quick", action="store_true", help="a short check: 1 round, 20 single calls (written to reports/, not committed)")
    p.add_argument("--workload", choices=("sentences", "passages"), default="sentences",
                   help="the texts timed: the STS sentences, or real prose passages of 64/128/256 tokens (docs/workloads.md)")
    p.add_argument("--passages-per-length", type=int, default=64, help="--workload passages: distinct passages per length")
    p.add_argument("--out", default=None, help="the result file (default: benchmarks/results/<cpu>/peers_best.json, committed)")
    args = p.parse_args(argv)
    args.variants = [v for v in args.variants.split(",") if v]
    args.only = [o for o in args.only.split(",") if o]
    if args.only and "ours-fp32" not in args.only:
        args.only.append("ours-fp32")
    args.skip = [s for s in args.skip.split(",") if s]
    args.ov_extra = json.loads(args.ov_extra)
    args.extra_ours = json.loads(args.extra_ours)
    args.variants += [x["variant"] for x in args.extra_ours if x["variant"] != "fp32" and x["variant"] not in args.variants]
    if args.quick:
        args.rounds, args.singles = 1, 20
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        summary = run(args)
    finally:
        for c in STARTED:
            if c.proc is not None and c.proc.poll() is None:
                c.proc.kill()
    print(f"\n{'contender':<24} {'class':<5} {'p50 ms':>8} {'p95 ms':>8} {'sent/s':>8} {'min cos':>9} {'STS':>7} {'loss':>6} ok")
    for row in sorted(summary["table"], key=lambda r: (CLASSES.index(r["precision"]), not r["ours"], r["contender"])):
        tp = row["corpus_sentences_per_s"]
        print(f"{row['contender']:<24} {row['precision']:<5} {row['single_p50_ms']:>8.2f} {row['single_p95_ms']:>8.2f} "
              f"{tp if tp is not None else float('nan'):>8.1f} {row['min_cosine_vs_ours_fp32']:>9.6f} {row['stsb_spearman']:>7.2f} "
              f"{row['sts_loss_vs_fp32']:>6.2f} {'yes' if row['qualifies'] else 'NO'}")
    for name, why in summary["skipped"].items():
        print(f"skipped {name}: {why}")
    # the full run is committed (README tables are generated from it); a --quick check is not a result
    out = ROOT / args.out if args.out else (ROOT / "reports" / f"peers_best{'' if args.workload == 'sentences' else '_' + args.workload}.quick.json" if args.quick else peerstats.results_path(cpu_model(), "peers_best.json" if args.workload == "sentences" else f"peers_best_{args.workload}.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2, default=str))
    headline = {k: v for k, v in summary.items() if k not in ("table", "rounds_conditions", "by_class", "envs", "peaks")}
    headline["envs_size_mb"] = {k: v["size_mb"] for k, v in summary["envs"].items()}
    print(json.dumps(headline, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
