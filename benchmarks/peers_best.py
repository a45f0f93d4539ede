"""Our embedding path against every peer library at its fastest, precision class by precision class.

    python benchmarks/peers_best.py [--threads 2] [--rounds 5] [--singles 100] [--quick]
                                    [--only NAME,...] [--skip NAME,...] [--fp32-only]

A user who wants speed picks each library's fast path, so here every peer runs at every precision
it offers, each in its own process and, where its dependencies conflict with ours, in its own
environment made by ``pipeline.runtime.envs`` under ``<cache_dir>/envs`` (its size is reported):

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

``--fp32-only``: the peers as a user first meets them, in plain fp32 on the very file our fp32
runs (fastembed, sentence-transformers' onnx backend, Optimum's ``ORTModelForFeatureExtraction``)
and sentence-transformers on torch, against ours-fp32, ours-O2_cpu and ours-int8_dynamic; written
to ``reports/peers_best_fp32_only.json`` (not committed).

The timed part holds the machine-wide benchmark lock; the load average and the CPU share
other processes took (the machine's busy time less ours and our workers') are recorded per
round.  Ratios are taken per round (same round, same conditions) and their median reported.
The last line printed is one JSON object.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
import harness  # noqa: E402  (benchmarks/harness.py: what the benchmark scripts share)
import peerstats  # noqa: E402  (benchmarks/peerstats.py: the arithmetic, tested on its own)

from pipeline.core import child  # noqa: E402

WORKER = "_peer_worker"  # benchmarks/_peer_worker.py, run as a pipeline.core.child Session (harness.worker)
MAIN_PY = Path(sys.executable)
CLASSES = peerstats.CLASSES
SLOW = {"st-torch", "st-torch-bf16", "infinity-torch"}  # torch's slow corpus passes: timed in --slow-corpus-rounds rounds
# --fp32-only: the peers in plain fp32 on our fp32 file (and on torch), beside ours in fp32, O2_cpu and int8_dynamic
FP32_ONLY = ("ours-fp32", "ours-O2_cpu", "ours-int8_dynamic", "fastembed", "st-onnx", "optimum-ort", "st-torch")
FP32_ONLY_VARIANTS = ("O2_cpu", "int8_dynamic")
PASSAGE_LENGTHS = (64, 128, 256)  # up to the model's max_length: every library keeps the whole text (none truncates)


# -- the options ---------------------------------------------------------------------------------
@dataclass
class Options:
    """The command line, parsed once and passed to every step (``Options.parse``)."""

    threads: int = 2
    rounds: int = 3
    lock_wait_s: float = 900
    singles: int = 100
    batch_size: int = 32
    call_cost: int = 0
    seed: int = 0
    slow_corpus_rounds: int = 2
    variants: list[str] = field(default_factory=list)
    ov_calibration_samples: int = harness.OV_CALIBRATION_SAMPLES
    only: list[str] = field(default_factory=list)
    skip: list[str] = field(default_factory=list)
    ov_ep_f32: bool = False
    ov_extra: dict = field(default_factory=dict)
    extra_ours: list[dict] = field(default_factory=list)
    max_sts_loss: float = 1.0
    settle_s: float = 0.2
    start_timeout: float = 900
    quick: bool = False
    fp32_only: bool = False
    workload: str = "sentences"
    passages_per_length: int = 64
    out: str | None = None

    @classmethod
    def parse(cls, argv=None) -> "Options":
        from pipeline.embedder.embed import Embedder

        p = harness.parser(__doc__, threads=2, rounds=3, lock_wait_s=900)
        p.add_argument("--singles", type=int, default=100, help="single-sentence calls per contender per round")
        p.add_argument("--batch-size", type=int, default=32)
        p.add_argument(
            "--call-cost",
            type=int,
            default=inspect.signature(Embedder).parameters["call_cost"].default,
            help="the per-call cost (padded tokens) of the equal batches: our embedder's default",
        )
        p.add_argument("--seed", type=int, default=0, help="the seed of the rounds' base visiting order")
        p.add_argument(
            "--slow-corpus-rounds",
            type=int,
            default=2,
            help="corpus rounds for the torch contenders (st-torch, st-torch-bf16, infinity-torch)",
        )
        p.add_argument("--variants", default="O2_cpu,int8_dynamic,int8_static", help="our variants beside fp32")
        p.add_argument(
            "--ov-calibration-samples",
            type=int,
            default=300,
            help="STS dev sentences that calibrate the OpenVINO static int8 peer (its default num_samples is 300)",
        )
        p.add_argument("--only", default="", help="comma-separated contender names (or prefixes) to run; ours-fp32 is always added")
        p.add_argument("--skip", default="", help="comma-separated contender names (or prefixes) to leave out")
        p.add_argument("--ov-ep-f32", action="store_true", help="also our embedder on the OpenVINO EP in f32")
        p.add_argument("--ov-extra", default="{}", help="extra OpenVINO CPU properties (JSON) for our OpenVINO EP rows")
        p.add_argument("--extra-ours", default="[]", help="more rows of ours as a JSON list (see extra_ours_rows), for closing experiments")
        p.add_argument("--max-sts-loss", type=float, default=1.0)
        p.add_argument("--settle-s", type=float, default=0.2)
        p.add_argument("--start-timeout", type=float, default=900)
        p.add_argument("--quick", action="store_true", help="a short check: 1 round, 20 single calls (written to reports/, not committed)")
        p.add_argument(
            "--fp32-only",
            action="store_true",
            help=f"only {', '.join(FP32_ONLY)}: the peers in plain fp32 (written to reports/, not committed)",
        )
        p.add_argument(
            "--workload",
            choices=("sentences", "passages"),
            default="sentences",
            help="the texts timed: the STS sentences, or real prose passages of 64/128/256 tokens (docs/workloads.md)",
        )
        p.add_argument("--passages-per-length", type=int, default=64, help="--workload passages: distinct passages per length")
        p.add_argument("--out", default=None, help="the result file (default: benchmarks/results/<cpu>/peers_best.json, committed)")
        a = vars(p.parse_args(argv))
        a["variants"], a["only"], a["skip"] = harness.names(a["variants"]), harness.names(a["only"]), harness.names(a["skip"])
        if a["only"] and "ours-fp32" not in a["only"]:
            a["only"].append("ours-fp32")
        if a["fp32_only"]:
            a["variants"] = [v for v in a["variants"] if v in FP32_ONLY_VARIANTS]
        a["ov_extra"], a["extra_ours"] = json.loads(a["ov_extra"]), json.loads(a["extra_ours"])
        a["variants"] += [x["variant"] for x in a["extra_ours"] if x["variant"] != "fp32" and x["variant"] not in a["variants"]]
        if a["quick"]:
            a["rounds"], a["singles"] = 1, 20
        return cls(**a)

    def wants(self, name: str) -> bool:
        """Whether contender ``name`` runs (--fp32-only, --only and --skip; names or prefixes)."""
        if self.fp32_only and name not in FP32_ONLY:
            return False
        if self.only and not any(name == o or name.startswith(o) for o in self.only):
            return False
        return not any(name == s or name.startswith(s) for s in self.skip)

    def out_path(self, cpu_model: str) -> Path:
        """The full run is committed (README tables are generated from it); a --quick check is not a result."""
        suffix = "" if self.workload == "sentences" else "_" + self.workload
        if self.out:
            return ROOT / self.out
        if self.quick:
            return ROOT / "reports" / f"peers_best{suffix}.quick.json"
        if self.fp32_only:
            return ROOT / "reports" / f"peers_best{suffix}_fp32_only.json"
        return peerstats.results_path(cpu_model, f"peers_best{suffix}.json")


@dataclass
class State:
    """What one run gathers besides the measurements: the contenders left out and why, every
    worker process started (ended on any exit), the environments made."""

    skipped: dict[str, str] = field(default_factory=dict)
    started: list = field(default_factory=list)
    envs: dict = field(default_factory=dict)

    def skip(self, name: str, why: str) -> None:
        self.skipped[name] = why
        print(f"{name} skipped: {why}", file=sys.stderr, flush=True)

    def kill_all(self) -> None:
        for c in self.started:
            c.kill()


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
    session: child.Session | None = None  # its worker process
    info: dict = field(default_factory=dict)
    single_p50: list[float] = field(default_factory=list)  # per round
    single_p95: list[float] = field(default_factory=list)
    single_all: list[float] = field(default_factory=list)
    corpus_s: list[float] = field(default_factory=list)  # per round, as shipped (NaN: not timed that round)
    corpus_eq_s: list[float] = field(default_factory=list)  # per round, the same batches for all
    min_cosine: float = float("nan")
    sts: float = float("nan")

    @property
    def pid(self) -> int | None:
        return self.session.proc.pid if self.session is not None else None

    def start(self, python: Path, timeout_s: float) -> None:
        # each environment sees its own packages (and the repository root, for pipeline.core.child;
        # ours: our embedder, the root in the spec)
        self.session = harness.worker(WORKER, f"{self.name}'s process", python, env=harness.child_env(TOKENIZERS_PARALLELISM="true"))
        self.info = self.ask({"op": "start", **self.spec}, timeout_s)["info"]

    def ask(self, msg: dict, timeout_s: float = 600) -> dict:
        assert self.session is not None
        return self.session.request(msg, timeout_s)

    def stop(self) -> None:
        """End its process (the end of its requests); killed with its group if it does not end within 30 s."""
        if self.session is not None:
            self.session.close(30)

    def kill(self) -> None:
        if self.session is not None:
            child.kill_group(self.session.proc)
            self.session.close()

    def result(self, equal: bool) -> peerstats.Result:
        return peerstats.Result(
            self.name,
            self.precision,
            self.ours,
            self.sts,
            list(self.single_p50),
            list(self.corpus_eq_s if equal else self.corpus_s),
            self.min_cosine,
        )

    def row(self, n_corpus: int, ref_sts: float, max_sts_loss: float) -> dict:
        timed, timed_eq = peerstats.timed(self.corpus_s), peerstats.timed(self.corpus_eq_s)
        return {
            "contender": self.name,
            "precision": self.precision,
            "library": self.library,
            "ours": self.ours,
            "env": self.env,
            "single_p50_ms": statistics.median(self.single_p50),
            "single_p95_ms": statistics.median(self.single_p95),
            "corpus_sentences_per_s": n_corpus / statistics.median(timed_eq) if timed_eq else None,
            "corpus_sentences_per_s_as_shipped": n_corpus / statistics.median(timed) if timed else None,
            "corpus_rounds": len(timed_eq),
            "min_cosine_vs_ours_fp32": self.min_cosine,
            "stsb_spearman": self.sts,
            "sts_loss_vs_fp32": ref_sts - self.sts,
            "qualifies": peerstats.qualifies(self.result(True), ref_sts, max_sts_loss),
            "single_p50_ms_per_round": self.single_p50,
            "single_p95_ms_per_round": self.single_p95,
            "corpus_s_per_round": self.corpus_eq_s,
            "corpus_s_per_round_as_shipped": self.corpus_s,
            "note": self.note,
            "info": self.info,
        }


# -- preparing the files only this script's peers read (harness.py: the shared ones) --------------
def ct2_folder(python: Path, resolved, root: Path) -> Path:
    """CTranslate2's conversion of the checkpoint (float32 weights; the compute type is chosen
    at load), made once with its converter in its environment."""
    folder = root / "ct2-float32"
    if (folder / "model.bin").is_file():
        return folder
    code = "import sys, ctranslate2.converters as c; c.TransformersConverter(sys.argv[1]).convert(sys.argv[2], force=True)"
    harness.run_tool(python, code, [resolved.folder, folder], "ct2-transformers conversion", 900)
    return folder


# -- the contenders ------------------------------------------------------------------------------
@dataclass
class Prep:
    """What the contenders are made from (the options, the config, the model, our artifacts by
    variant), where their files and environments go, and the (contender, python) pairs made so far."""

    opts: Options
    cfg: object
    resolved: object
    arts: dict
    peers_root: Path
    env_root: Path
    state: State
    out: list[tuple[Contender, Path]] = field(default_factory=list)
    st_folder: Path | None = None

    @property
    def fp32(self):
        return self.arts["fp32"]

    def add(self, c: Contender, python: Path = MAIN_PY) -> None:
        self.out.append((c, python))

    def env(self, name: str):
        return harness.peer_env(name, self.env_root, self.state.envs)

    def admits(self, contender: str, env) -> bool:
        """Whether ``contender`` is wanted and its environment was made (else skipped, with the reason)."""
        if not self.opts.wants(contender):
            return False
        if not env.ok:
            self.state.skipped[contender] = f"environment not made: {env.reason}"
        return env.ok

    def env_of(self, contender: str, env_name: str):
        """The environment of ``contender`` when it is wanted and the environment is made; else None
        (a contender whose environment could not be made is skipped, with the reason)."""
        if not self.opts.wants(contender):
            return None
        env = self.env(env_name)
        if not env.ok:
            self.state.skipped[contender] = f"environment not made: {env.reason}"
            return None
        return env

    def ours_spec(self, art) -> dict:
        return {
            "kind": "ours",
            "root": str(ROOT),
            "folder": str(art.folder),
            "onnx_file": art.onnx_path.name,
            "threads": self.opts.threads,
            "max_length": self.cfg.model.max_length,
        }

    def peer_spec(self, kind: str, **settings) -> dict:
        return {"kind": kind, **settings, "threads": self.opts.threads}


def openvino_ep(spec: dict, hint: str, extra: dict) -> dict:
    """``spec`` of ours on onnxruntime-openvino's OpenVINO execution provider at precision ``hint``."""
    return {
        **spec,
        "provider": "OpenVINOExecutionProvider",
        "provider_options": {"device_type": "CPU", "load_config": {"CPU": {"INFERENCE_PRECISION_HINT": hint, **extra}}},
    }


def contenders_for(
    opts: Options, cfg, resolved, arts: dict, peers_root: Path, env_root: Path, state: State
) -> list[tuple[Contender, Path]]:
    """(contender, python) pairs, in the order they are listed (the rounds' seeded order depends on
    it); what cannot be prepared goes to ``state.skipped`` with its reason."""
    p = Prep(opts, cfg, resolved, arts, peers_root, env_root, state)
    for step in (
        ours_rows,
        ours_openvino_ep_rows,
        extra_ours_rows,
        st_rows,
        optimum_rows,
        st_optimized_rows,
        st_openvino_rows,
        fastembed_rows,
        ct2_rows,
        infinity_rows,
    ):
        step(p)
    return p.out


def ours_rows(p: Prep) -> None:
    for name, variant, prec in [
        ("ours-fp32", "fp32", "fp32"),
        ("ours-O2_cpu", "O2_cpu", "fp32"),
        ("ours-int8_dynamic", "int8_dynamic", "int8"),
        ("ours-int8_static", "int8_static", "int8"),
    ]:
        if p.opts.wants(name) and variant in p.arts:
            p.add(Contender(name, prec, "ours (pipeline.embedder.embed)", "main", p.ours_spec(p.arts[variant]), ours=True))


def ours_openvino_ep_rows(p: Prep) -> None:
    """bf16: our embedder on the OpenVINO execution provider, in issue 18's environment."""
    env = p.env_of("ours-bf16-openvino-ep", "onnxruntime-openvino")
    if env is None:
        return
    for name, hint, prec in [("ours-bf16-openvino-ep", "bf16", "bf16")] + (
        [("ours-fp32-openvino-ep", "f32", "fp32")] if p.opts.ov_ep_f32 else []
    ):
        p.add(
            Contender(
                name,
                prec,
                "ours (pipeline.embedder.embed, OpenVINO EP)",
                env.path.name,
                openvino_ep(p.ours_spec(p.fp32), hint, p.opts.ov_extra),
                ours=True,
            ),
            env.python,
        )


def extra_ours_rows(p: Prep) -> None:
    """Experiments (closing the gaps): more rows of ours, e.g. another variant on the OpenVINO EP,
    another call_cost, session config entries; each {"name", "variant", "precision", and
    optionally "openvino_hint" (runs on the OpenVINO EP), "ov_extra", "call_cost", "session_config",
    "threads" (fewer than everyone's, never more)}."""
    th = p.opts.threads
    for x in p.opts.extra_ours:
        if x.get("threads", th) > th:
            raise SystemExit(f"{x['name']}: more threads ({x['threads']}) than the contest's {th}")
        if x["variant"] not in p.arts:
            p.state.skipped[x["name"]] = f"variant {x['variant']} not built"
            continue
        spec = p.ours_spec(p.arts[x["variant"]])
        spec.update({k: x[k] for k in ("call_cost", "session_config", "threads") if k in x})
        python, env_name, lib = MAIN_PY, "main", "ours (pipeline.embedder.embed)"
        if "openvino_hint" in x:
            env = p.env("onnxruntime-openvino")
            if not env.ok:
                p.state.skipped[x["name"]] = f"environment not made: {env.reason}"
                continue
            python, env_name, lib = env.python, env.path.name, "ours (pipeline.embedder.embed, OpenVINO EP)"
            spec = openvino_ep(spec, x["openvino_hint"], x.get("ov_extra", {}))
        p.add(Contender(x["name"], x["precision"], lib, env_name, spec, ours=True, note=x.get("note", "experiment")), python)


ST_ONNX_USERS = ("st-onnx", "st-onnx-qint8", "optimum-ort-qint8", "st-onnx-O2", "st-onnx-O3")


def st_rows(p: Prep) -> None:
    """sentence-transformers (this environment): torch fp32 / bf16, onnx, onnx qint8."""
    ck = str(p.resolved.folder)
    if p.opts.wants("st-torch"):
        p.add(
            Contender(
                "st-torch",
                "fp32",
                "sentence-transformers",
                "main",
                {"kind": "st", "backend": "torch", "folder": ck, "threads": p.opts.threads},
            )
        )
    if p.opts.wants("st-torch-bf16"):
        p.add(
            Contender(
                "st-torch-bf16",
                "bf16",
                "sentence-transformers",
                "main",
                {"kind": "st", "backend": "torch", "folder": ck, "threads": p.opts.threads, "model_kwargs": {"torch_dtype": "bfloat16"}},
            )
        )
    if any(p.opts.wants(n) for n in ST_ONNX_USERS):
        try:
            p.st_folder = harness.st_onnx_folder(p.resolved, p.fp32, p.peers_root)
        except Exception as exc:
            for n in ST_ONNX_USERS:
                p.state.skipped[n] = f"preparing the sentence-transformers ONNX folder failed: {type(exc).__name__}: {exc}"
    if p.st_folder is None:
        return
    if p.opts.wants("st-onnx"):
        p.add(
            Contender(
                "st-onnx",
                "fp32",
                "sentence-transformers",
                "main",
                p.peer_spec("st-onnx", folder=str(p.st_folder), file_name="onnx/model.onnx"),
            )
        )
    if p.opts.wants("st-onnx-qint8"):
        p.add(
            Contender(
                "st-onnx-qint8",
                "int8",
                "sentence-transformers",
                "main",
                p.peer_spec("st-onnx", folder=str(p.st_folder), file_name="onnx/model_qint8_avx512_vnni.onnx"),
                note="export_dynamic_quantized_onnx_model(model, 'avx512_vnni')",
            )
        )


def optimum_rows(p: Prep) -> None:
    """Optimum on our fp32 file, and on the graphs its own ORTOptimizer (O2) and ORTQuantizer (O2 +
    dynamic int8) make: the recipe our O2_cpu and int8_dynamic variants are, so the Optimum peer runs
    on its fastest path too."""
    ml, tok = p.cfg.model.max_length, str(p.fp32.folder)
    if p.opts.wants("optimum-ort"):
        p.add(
            Contender(
                "optimum-ort",
                "fp32",
                "optimum",
                "main",
                {
                    "kind": "optimum",
                    "folder": str(p.fp32.folder),
                    "onnx_file": p.fp32.onnx_path.name,
                    "tokenizer_folder": tok,
                    "threads": p.opts.threads,
                    "max_length": ml,
                },
            )
        )
    for name, variant, prec in (("optimum-ort-O2", "O2_cpu", "fp32"), ("optimum-ort-int8-O2", "int8_dynamic", "int8")):
        if not p.opts.wants(name):
            continue
        if variant not in p.arts:
            p.state.skipped[name] = f"the {variant} file was not built"
            continue
        a = p.arts[variant]
        p.add(
            Contender(
                name,
                prec,
                "optimum",
                "main",
                {
                    "kind": "optimum",
                    "folder": str(a.folder),
                    "onnx_file": a.onnx_path.name,
                    "tokenizer_folder": tok,
                    "threads": p.opts.threads,
                    "max_length": ml,
                },
                note=f"Optimum's {variant} recipe (the same file as ours-{variant}), run through ORTModelForFeatureExtraction",
            )
        )


def st_optimized_rows(p: Prep) -> None:
    """sentence-transformers' own O2 and O3 exports of our fp32 file, and Optimum on its qint8 file."""
    if p.opts.wants("st-onnx-O4"):
        p.state.skipped["st-onnx-O4"] = "O4 is O3 with fp16 weights, which Optimum's ORTOptimizer makes for the GPU only"
    for level in ("O2", "O3"):
        name = f"st-onnx-{level}"
        if not p.opts.wants(name) or p.st_folder is None:
            continue
        try:
            fname = harness.st_optimized(p.st_folder, level)
        except Exception as exc:
            p.state.skipped[name] = f"export_optimized_onnx_model({level}) failed: {type(exc).__name__}: {exc}"
            continue
        p.add(
            Contender(
                name,
                "fp32",
                "sentence-transformers",
                "main",
                p.peer_spec("st-onnx", folder=str(p.st_folder), file_name=f"onnx/{fname}"),
                note=f"export_optimized_onnx_model(model, '{level}')",
            )
        )
    if p.opts.wants("optimum-ort-qint8") and p.st_folder is not None:
        q = harness.optimum_qint8_folder(p.st_folder, p.fp32, p.peers_root)
        p.add(
            Contender(
                "optimum-ort-qint8",
                "int8",
                "optimum",
                "main",
                {
                    "kind": "optimum",
                    "folder": str(q),
                    "onnx_file": "model_qint8_avx512_vnni.onnx",
                    "tokenizer_folder": str(p.fp32.folder),
                    "threads": p.opts.threads,
                    "max_length": p.cfg.model.max_length,
                },
                note="ORTQuantizer avx512_vnni dynamic (the file sentence-transformers exports)",
            )
        )


def st_openvino_rows(p: Prep) -> None:
    """sentence-transformers with OpenVINO (optimum-intel), its own environment."""
    th = p.opts.threads
    if not any(p.opts.wants(n) for n in ("st-openvino-f32", "st-openvino-bf16", "st-openvino-int8wo", "st-openvino-int8-static")):
        return
    env = p.env("st-openvino")
    for name, prec, kwargs, note in [
        ("st-openvino-f32", "fp32", {"ov_config": {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": th}}, ""),
        ("st-openvino-bf16", "bf16", {"ov_config": {"INFERENCE_PRECISION_HINT": "bf16", "INFERENCE_NUM_THREADS": th}}, ""),
        (
            "st-openvino-int8wo",
            "int8",
            {"ov_config": {"INFERENCE_NUM_THREADS": th}, "load_in_8bit": True, "export": True},
            "weight-only int8 (optimum-intel load_in_8bit), activations in OpenVINO's default precision on this CPU",
        ),
    ]:
        if not p.admits(name, env):
            continue
        p.add(
            Contender(
                name,
                prec,
                "sentence-transformers (openvino)",
                env.path.name,
                {"kind": "st", "backend": "openvino", "folder": str(p.resolved.folder), "threads": th, "model_kwargs": kwargs},
                note=note,
            ),
            env.python,
        )
    if p.opts.wants("st-openvino-int8-static"):
        st_openvino_static_row(p, env)


def st_openvino_static_row(p: Prep, env) -> None:
    """NNCF static int8, calibrated on the STS dev sentences (as our int8_static), the test set untouched."""
    th = p.opts.threads
    try:
        if not env.ok:
            raise RuntimeError(f"environment not made: {env.reason}")
        folder = harness.ov_static_calibrated(env.python, p.resolved, p.peers_root, p.opts.ov_calibration_samples)
        p.add(
            Contender(
                "st-openvino-int8-static",
                "int8",
                "sentence-transformers (openvino)",
                env.path.name,
                {
                    "kind": "st",
                    "backend": "openvino",
                    "folder": str(folder),
                    "threads": th,
                    "model_kwargs": {"file_name": harness.OV_STATIC_FILE, "ov_config": {"INFERENCE_NUM_THREADS": th}},
                },
                note=f"export_static_quantized_openvino_model, up to {p.opts.ov_calibration_samples} STS dev sentences as its calibration set",
            ),
            env.python,
        )
    except Exception as exc:
        p.state.skipped["st-openvino-int8-static"] = f"{type(exc).__name__}: {exc}"


def fastembed_rows(p: Prep) -> None:
    env = p.env_of("fastembed", "fastembed")
    if env is None:
        return
    dim = json.loads((p.fp32.folder / "config.json").read_text())["hidden_size"]
    p.add(
        Contender(
            "fastembed",
            "fp32",
            "fastembed",
            env.path.name,
            {"kind": "fastembed", "folder": str(p.fp32.folder), "onnx_file": p.fp32.onnx_path.name, "dim": dim, "threads": p.opts.threads},
            note="pointed at our fp32 export (its hub files are not reachable offline); fastembed offers no other precision for this model",
        ),
        env.python,
    )


CT2_TYPES = [
    ("ct2-float32", "float32", "fp32"),
    ("ct2-int8", "int8", "int8"),
    ("ct2-int8_float32", "int8_float32", "int8"),
    ("ct2-bfloat16", "bfloat16", "bf16"),
    ("ct2-int8_bfloat16", "int8_bfloat16", "int8"),
]


def ct2_rows(p: Prep) -> None:
    """CTranslate2's Encoder at every compute type this CPU supports, on its conversion of the checkpoint."""
    if not any(p.opts.wants(n) for n, _, _ in CT2_TYPES):
        return
    env = p.env("ctranslate2")
    folder, supported = None, set()
    if env.ok:
        try:
            folder = ct2_folder(env.python, p.resolved, p.peers_root)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
    else:
        reason = f"environment not made: {env.reason}"
    if folder is not None:
        try:
            supported = set(
                harness.run_tool(
                    env.python,
                    "import ctranslate2; print(' '.join(sorted(ctranslate2.get_supported_compute_types('cpu'))))",
                    [],
                    "ctranslate2's compute types",
                    300,
                ).split()
            )
        except Exception as exc:
            folder, reason = None, f"{type(exc).__name__}: {exc}"
    for name, ct, prec in CT2_TYPES:
        if not p.opts.wants(name):
            continue
        if folder is None:
            p.state.skipped[name] = reason
        elif ct not in supported:
            p.state.skipped[name] = f"ctranslate2 does not offer compute type {ct} on this CPU (supported: {', '.join(sorted(supported))})"
        else:
            p.add(
                Contender(
                    name,
                    prec,
                    "ctranslate2",
                    env.path.name,
                    {
                        "kind": "ct2",
                        "folder": str(folder),
                        "compute_type": ct,
                        "tokenizer_folder": str(p.fp32.folder),
                        "threads": p.opts.threads,
                        "max_length": p.cfg.model.max_length,
                    },
                ),
                env.python,
            )


def infinity_rows(p: Prep) -> None:
    """infinity-emb: its torch engine on the checkpoint; its optimum (ONNX Runtime) engine on a folder
    whose only ONNX file is Optimum's O2 graph of our fp32 export (``harness.infinity_o2_folder``)."""
    if not (p.opts.wants("infinity-torch") or p.opts.wants("infinity-optimum")):
        return
    env = p.env("infinity-emb-server")
    engines = [("infinity-torch", "torch", p.resolved.folder, {})]
    if p.opts.wants("infinity-optimum"):
        try:
            folder = harness.infinity_o2_folder(p.resolved, p.fp32, p.peers_root, p.st_folder)
            engines.append(
                (
                    "infinity-optimum",
                    "optimum",
                    folder,
                    {"hf_hub_cache": str(harness.infinity_hub(folder)), "pooling_method": harness.infinity_pooling(p.cfg)},
                )
            )
        except Exception as exc:
            p.state.skipped["infinity-optimum"] = f"preparing its ONNX folder failed: {type(exc).__name__}: {exc}"
    for name, engine, folder, extra in engines:
        if not p.admits(name, env):
            continue
        p.add(
            Contender(
                name,
                "fp32",
                "infinity-emb",
                env.path.name,
                {
                    "kind": "infinity",
                    "engine": engine,
                    "folder": str(folder),
                    "threads": p.opts.threads,
                    "batch_size": p.opts.batch_size,
                    **extra,
                },
                note="its optimum engine on Optimum's O2 graph of our fp32 export" if engine == "optimum" else "",
            ),
            env.python,
        )


# -- the run -------------------------------------------------------------------------------------
def workload_texts(args, cfg, fp32, sentences: list[str]) -> tuple[list[str], list[str] | None, dict]:
    """(the texts timed, the STS sentences when those are other texts, the workload's tags).
    ``--workload passages``: real prose cut to 64/128/256 tokens (pipeline/measure/workload.py), the
    model's document prefix included; the STS quality is then measured on the sentences apart."""
    if args.workload == "sentences":
        return sentences, None, {"workload": "sentences"}
    from pipeline.config import WorkloadConfig
    from pipeline.embedder.embed import position_limit
    from pipeline.measure import workload

    lengths = [n for n in PASSAGE_LENGTHS if n <= cfg.model.max_length]
    wcfg = WorkloadConfig(name="passages", lengths=lengths, texts_per_length=args.passages_per_length)
    wl = workload.build(wcfg, cfg.model, fp32.folder / "tokenizer.json", sentences, position_limit(fp32.folder))
    return wl.texts, sentences, {**wl.tags(), "lengths": lengths, "texts_per_length": args.passages_per_length}


@dataclass
class Inputs:
    """What every contender is given: the model files, the texts (written where the workers read
    them, in ``run_dir``), their token counts and the batches."""

    cfg: object
    resolved: object
    arts: dict
    data: object  # the STS test split (quality)
    corpus: list[str]
    sts_texts: list[str] | None  # the STS sentences when the corpus is other texts
    workload_tags: dict
    singles: list[str]
    lengths: list[int]
    batching: dict
    run_dir: Path


def build_artifacts(opts: Options, state: State):
    """(config, resolved model, our artifact by variant); a variant that does not build is skipped."""
    cfg, resolved, fp32 = harness.load_artifact("fp32")
    arts = {"fp32": fp32}
    for v in opts.variants:
        try:
            arts[v] = harness.load_artifact(v)[2]
        except Exception as exc:
            state.skipped[f"ours-{v}"] = f"variant not built: {type(exc).__name__}: {exc}"
    return cfg, resolved, arts


def prepare_inputs(opts: Options, state: State, run_dir: Path) -> Inputs:
    """The model files, the texts and the equal batches: the batches our embedder makes of the corpus
    (sorted by length, cut where padding plus per-call cost is least), given to every contender, so
    all compute the same shapes."""
    from tokenizers import Tokenizer

    from pipeline.config import QualityConfig
    from pipeline.data.sts import load_sts

    cfg, resolved, arts = build_artifacts(opts, state)
    data = load_sts(QualityConfig(split="test"))
    corpus, sts_texts, workload_tags = workload_texts(opts, cfg, arts["fp32"], data.unique_sentences)
    rng = np.random.default_rng(0)
    singles = [corpus[i] for i in rng.choice(len(corpus), size=min(opts.singles, len(corpus)), replace=False)]
    (run_dir / "corpus.json").write_text(json.dumps(corpus))
    (run_dir / "singles.json").write_text(json.dumps(singles))
    tok = Tokenizer.from_file(str(arts["fp32"].folder / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(cfg.model.max_length)
    lengths = [len(e.ids) for e in tok.encode_batch(corpus)]
    equal = peerstats.length_sorted_batches(lengths, opts.batch_size, opts.call_cost)
    (run_dir / "equal.json").write_text(json.dumps(equal))
    if sts_texts is not None:  # the STS sentences, embedded apart from the passages for the quality check
        (run_dir / "sts.json").write_text(json.dumps(sts_texts))
        sts_lengths = [len(e.ids) for e in tok.encode_batch(sts_texts)]
        (run_dir / "equal_sts.json").write_text(json.dumps(peerstats.length_sorted_batches(sts_lengths, opts.batch_size, opts.call_cost)))
    return Inputs(
        cfg, resolved, arts, data, corpus, sts_texts, workload_tags, singles, lengths, batching_detail(opts, lengths, equal), run_dir
    )


def batching_detail(opts: Options, lengths: list[int], equal: list[list[int]]) -> dict:
    bs = opts.batch_size
    return {
        "equal": {
            "policy": f"pipeline.embedder.grouping.length_groups(batch_size={bs}, call_cost={opts.call_cost}), one library call per batch",
            "batches": len(equal),
            "padded_tokens": peerstats.padded_tokens(lengths, equal),
        },
        "as_shipped": {
            "policy": f"the corpus in input order in one library call with batch_size={bs}: "
            "each library batches it its own way (sentence-transformers sorts by length inside encode; "
            "fastembed, Optimum and CTranslate2 wrappers cut it in input order; ours sorts and groups)",
            "padded_tokens_input_order": peerstats.padded_tokens(lengths, peerstats.input_order_batches(len(lengths), bs)),
        },
        "real_tokens": sum(lengths),
    }


def start_contenders(pairs: list[tuple[Contender, Path]], inp: Inputs, opts: Options, state: State) -> list[Contender]:
    """Each contender's process, loaded and given the texts and batches; one that fails is skipped."""
    rd = inp.run_dir
    contenders: list[Contender] = []
    state.started.extend(c for c, _ in pairs)
    for c, python in pairs:
        print(f"starting {c.name} ({c.env})", file=sys.stderr, flush=True)
        try:
            c.start(python, opts.start_timeout)
            c.ask({"op": "texts", "name": "corpus", "file": str(rd / "corpus.json")})
            c.ask({"op": "texts", "name": "singles", "file": str(rd / "singles.json")})
            c.ask({"op": "batches", "name": "equal", "file": str(rd / "equal.json")})
            if inp.sts_texts is not None:
                c.ask({"op": "texts", "name": "sts", "file": str(rd / "sts.json")})
                c.ask({"op": "batches", "name": "equal_sts", "file": str(rd / "equal_sts.json")})
            contenders.append(c)
        except Exception as exc:
            state.skip(c.name, f"{type(exc).__name__}: {exc}")
            c.stop()
    if not any(c.name == "ours-fp32" for c in contenders):
        raise SystemExit("ours-fp32 (the reference) did not start: " + state.skipped.get("ours-fp32", "not selected"))
    return contenders


def first_pass(contenders: list[Contender], inp: Inputs, state: State) -> list[Contender]:
    """The untimed first pass: embeddings for parity and STS (and every contender warm); those that fail it are left out."""
    for c in contenders:
        try:
            c.ask({"op": "corpus", "texts": "corpus", "batches": "equal", "save": str(inp.run_dir / f"{c.name}.npy")})
            if inp.sts_texts is not None:
                c.ask({"op": "corpus", "texts": "sts", "batches": "equal_sts", "save": str(inp.run_dir / f"{c.name}.sts.npy")})
        except Exception as exc:
            state.skipped[c.name] = f"first corpus pass failed: {type(exc).__name__}: {exc}"
    return [c for c in contenders if c.name not in state.skipped]


def mark(workers: list[Contender]):
    return harness.mark([c.pid for c in workers])


def time_round(order: list[Contender], r: int, opts: Options) -> None:
    """Round ``r`` (0-based) in this order: every contender's single calls, then each contender's two
    corpus passes back to back: the same batches for all, then as shipped.  The timing happens in
    the worker processes."""
    for c in order:
        time.sleep(opts.settle_s)  # the previous contender's spinning threads wind down
        ms = c.ask({"op": "single", "texts": "singles", "n": opts.singles, "warm": 5})["ms"]
        c.single_p50.append(float(np.percentile(ms, 50)))
        c.single_p95.append(float(np.percentile(ms, 95)))
        c.single_all.extend(ms)
    for c in order:
        if c.name in SLOW and r >= opts.slow_corpus_rounds:
            c.corpus_eq_s.append(float("nan"))
            c.corpus_s.append(float("nan"))
            continue
        time.sleep(opts.settle_s)
        c.corpus_eq_s.append(c.ask({"op": "corpus", "texts": "corpus", "batches": "equal", "save": None})["s"])
        c.corpus_s.append(c.ask({"op": "corpus", "texts": "corpus", "batch_size": opts.batch_size, "save": None})["s"])


def time_rounds(contenders: list[Contender], opts: Options) -> tuple[list[list[str]], list[dict]]:
    """Every round, in its order (``peerstats.round_order``): (the orders, each round's conditions)."""
    by_name = {c.name: c for c in contenders}
    orders, conditions = [], []
    for r in range(opts.rounds):
        order = [by_name[n] for n in peerstats.round_order([c.name for c in contenders], r, opts.rounds, seed=opts.seed)]
        orders.append([c.name for c in order])
        a = mark(contenders)
        time_round(order, r, opts)
        w = {"round": r + 1, **harness.window(a, mark(contenders))}
        conditions.append(w)
        print(
            f"round {r + 1}/{opts.rounds} done ({w['seconds']:.0f} s, others' CPU {w['other_cpu_share']:.1%}, load {w['loadavg']})",
            file=sys.stderr,
            flush=True,
        )
    return orders, conditions


def peaks_now(threads: int) -> dict:
    """Each precision's matrix-product peak, now, in a fresh process (as pipeline.measure.roofline does)."""
    from pipeline.measure.conditions import Thresholds, in_fresh_process

    peaks = {}
    for prec in ("fp32", "int8"):
        value, window, reason = in_fresh_process("peak", threads, prec, Thresholds())
        peaks[prec] = {**value, "other_cpu_share": window.other_cpu_share, "contended": reason}
    return peaks


def measure(contenders: list[Contender], inp: Inputs, opts: Options, state: State) -> dict:
    """The timed part, under the machine lock: the first pass, the rounds, the peaks; what it measured
    and the conditions it measured in."""
    from pipeline.core.machine_lock import MachineLock

    with MachineLock(wait_s=opts.lock_wait_s, label="benchmarks/peers_best.py") as lock:
        load_before = harness.loadavg()
        contenders = first_pass(contenders, inp, state)
        a_all = mark(contenders)
        orders, rounds_conditions = time_rounds(contenders, opts)
        b_all = mark(contenders)
        load_after = harness.loadavg()
        for c in contenders:
            c.stop()
        peaks = peaks_now(opts.threads)
        lock_info = {"held": lock.held, "waited_s": round(lock.waited_s, 1), "contention": lock.contention}
    return {
        "contenders": contenders,
        "orders": orders,
        "rounds_conditions": rounds_conditions,
        "peaks": peaks,
        "lock": lock_info,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "other_cpu_share": harness.other_share(a_all, b_all),
    }


def score_quality(contenders: list[Contender], inp: Inputs) -> float:
    """Parity (min cosine against ours-fp32) and STS Spearman from the first pass; returns ours-fp32's STS."""
    from pipeline.measure.quality import score

    ref = np.load(inp.run_dir / "ours-fp32.npy")
    for c in contenders:
        v = np.load(inp.run_dir / f"{c.name}.npy")
        c.min_cosine = float((v * ref).sum(axis=1).min())  # on the workload's texts (passages: the cosine floor there)
        sv = v if inp.sts_texts is None else np.load(inp.run_dir / f"{c.name}.sts.npy")
        c.sts = score(lambda s, batch_size, sv=sv: sv, inp.data).stsb_spearman
    return next(c.sts for c in contenders if c.name == "ours-fp32")


def roofline_of(per_class: dict, contenders: list[Contender], inp: Inputs, peaks: dict) -> dict:
    """Our best fp32 and int8 corpus runs, each against its precision's peak."""
    from pipeline.measure import roofline

    by = {c.name: c for c in contenders}
    flops = roofline.model_flops(json.loads((inp.arts["fp32"].folder / "config.json").read_text()), inp.lengths)
    roof = {}
    for prec in ("fp32", "int8"):
        best = per_class[prec]["ours_corpus"]
        if best is None:
            roof[prec] = None
            continue
        s = statistics.median(peerstats.timed(by[best].corpus_eq_s))
        roof[prec] = {
            "contender": best,
            "achieved_gops": flops / s / 1e9,
            "peak_gops": peaks[prec]["peak_gflops"],
            "fraction": flops / s / (peaks[prec]["peak_gflops"] * 1e9),
            "peak_contended": peaks[prec]["contended"],
        }
    return roof


def summarize(opts: Options, inp: Inputs, m: dict, state: State, t_start: float) -> dict:
    """The result (its keys are read by scripts/render_results.py and the tests: keep them)."""
    from pipeline.core.machine import cpu_model

    contenders = m["contenders"]
    ref_sts = score_quality(contenders, inp)
    n = len(inp.corpus)
    rows = [c.row(n, ref_sts, opts.max_sts_loss) for c in contenders]
    equal_results = [c.result(True) for c in contenders]
    per_class = {k: peerstats.class_ratios(equal_results, (k,), ref_sts, opts.max_sts_loss) for k in CLASSES}
    roof = roofline_of(per_class, contenders, inp, m["peaks"])
    summary = {
        "workload": opts.workload,
        "workload_detail": inp.workload_tags,
        "threads": opts.threads,
        "rounds": opts.rounds,
        "sentences_single": len(inp.singles),
        "sentences_corpus": n,
        "batch_size": opts.batch_size,
        "max_sts_loss": opts.max_sts_loss,
        "fp32_stsb_spearman": ref_sts,
        "batching": "equal",  # the headline: every contender given the same batches
        **peerstats.headline(equal_results, ref_sts, opts.max_sts_loss),
        # each library batching the corpus its own way, under their own keys
        **peerstats.headline([c.result(False) for c in contenders], ref_sts, opts.max_sts_loss, prefix="as_shipped."),
    }
    summary.update(
        {
            "batching_detail": inp.batching,
            "round_orders": m["orders"],
            "by_class": per_class,
            "roofline_fraction_fp32": roof["fp32"]["fraction"] if roof.get("fp32") else None,
            "roofline_fraction_int8": roof["int8"]["fraction"] if roof.get("int8") else None,
            "roofline": roof,
            "peaks": m["peaks"],
            "loadavg_before": m["loadavg_before"],
            "loadavg_after": m["loadavg_after"],
            "other_cpu_share": m["other_cpu_share"],
            "rounds_conditions": m["rounds_conditions"],
            "lock": m["lock"],
            "cpu_model": cpu_model(),
            "cores": os.cpu_count(),
            "when": harness.utc_now(),
            "envs": state.envs,
            "skipped": dict(state.skipped),
            "wall_s": round(time.time() - t_start, 1),
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "table": rows,
        }
    )
    return summary


def run(opts: Options, state: State) -> dict:
    t_start = time.time()
    run_dir = Path(tempfile.mkdtemp(prefix="peers-best-"))
    inp = prepare_inputs(opts, state, run_dir)
    cache = Path(inp.cfg.cache_dir).resolve()
    peers_root, env_root = cache / "peers", cache / "envs"
    peers_root.mkdir(parents=True, exist_ok=True)
    pairs = contenders_for(opts, inp.cfg, inp.resolved, inp.arts, peers_root, env_root, state)
    contenders = start_contenders(pairs, inp, opts, state)
    measured = measure(contenders, inp, opts, state)
    summary = summarize(opts, inp, measured, state, t_start)
    shutil.rmtree(run_dir, ignore_errors=True)
    return summary


def print_table(summary: dict) -> None:
    print(f"\n{'contender':<24} {'class':<5} {'p50 ms':>8} {'p95 ms':>8} {'sent/s':>8} {'min cos':>9} {'STS':>7} {'loss':>6} ok")
    for row in sorted(summary["table"], key=lambda r: (CLASSES.index(r["precision"]), not r["ours"], r["contender"])):
        tp = row["corpus_sentences_per_s"]
        print(
            f"{row['contender']:<24} {row['precision']:<5} {row['single_p50_ms']:>8.2f} {row['single_p95_ms']:>8.2f} "
            f"{tp if tp is not None else float('nan'):>8.1f} {row['min_cosine_vs_ours_fp32']:>9.6f} {row['stsb_spearman']:>7.2f} "
            f"{row['sts_loss_vs_fp32']:>6.2f} {'yes' if row['qualifies'] else 'NO'}"
        )
    for name, why in summary["skipped"].items():
        print(f"skipped {name}: {why}")


def main(argv=None) -> int:
    import signal

    from pipeline.core.machine import cpu_model

    opts = Options.parse(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    state = State()
    try:
        summary = run(opts, state)
    finally:
        state.kill_all()
    print_table(summary)
    harness.write_result(opts.out_path(cpu_model()), summary)
    headline = {k: v for k, v in summary.items() if k not in ("table", "rounds_conditions", "by_class", "envs", "peaks")}
    headline["envs_size_mb"] = {k: v["size_mb"] for k, v in summary["envs"].items()}
    print(json.dumps(headline, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
