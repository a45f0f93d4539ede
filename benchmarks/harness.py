"""What the benchmark scripts share, written once (peers_best.py, serving.py, cache_fit.py,
fusions.py, stability.py):

- ``load_artifact``: compose the project's config for a variant, resolve the model, export the
  variant (from the export cache when it is there);
- the peers' environments: each package set by name (``ENVS``), made through
  ``pipeline.runtime.envs`` by ``peer_env``, which records what was made; ``child_env``: the
  environment variables of a process run in one (offline, no telemetry, its own packages);
- the folders more than one script prepares for a peer (sentence-transformers' ONNX layout of our
  fp32 export, its O2 graph, infinity-emb's folder around that graph);
- ``worker``: a script of this folder as a long-lived child of the package's one process protocol
  (``pipeline.core.child.Session``: the peer workers, the load generator), in any environment;
  ``run_tool``: a one-shot command in a peer's environment (its process group killed on a timeout);
- the conditions of a measured stretch (``mark`` / ``window``: seconds, the CPU share of other
  processes, load average) with our worker processes counted as ours;
- the command line's common options and writing a result file.

Only the standard library is imported here at load time; ``pipeline`` (the repository root on
``sys.path``) inside the functions.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


# -- the command line ----------------------------------------------------------------------------
def parser(doc: str, *, threads: int | None = 2, rounds: int | None = None, lock_wait_s: float | None = None) -> argparse.ArgumentParser:
    """A script's parser (its description: the docstring's first paragraph) with the options every
    timed script spells the same way: ``--threads`` (intra-op threads, the same for every
    contender), ``--rounds``, ``--lock-wait-s`` (how long to wait for the machine lock)."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    if threads is not None:
        p.add_argument("--threads", type=int, default=threads)
    if rounds is not None:
        p.add_argument("--rounds", type=int, default=rounds)
    if lock_wait_s is not None:
        p.add_argument("--lock-wait-s", type=float, default=lock_wait_s)
    return p


def names(text: str) -> list[str]:
    """A comma-separated option as a list, empty items left out (``""`` -> ``[]``)."""
    return [n for n in str(text).split(",") if n]


def write_result(path: Path, data: dict, indent: int = 2, default=str, newline: bool = False) -> Path:
    """Write a result file (its folder made first)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=indent, default=default) + ("\n" if newline else ""))
    return path


def settings_of(run: dict, keys) -> dict:
    """The values of ``keys`` (dotted paths, ``"a.b"``) in a result file; a missing one reads as None."""
    out = {}
    for key in keys:
        v = run
        for part in key.split("."):
            v = v.get(part) if isinstance(v, dict) else None
        out[key] = v
    return out


def refuse_different(settings: dict[str, dict], what: str = "pooling") -> None:
    """ValueError unless there are two runs or more and every one's settings equal the first's:
    ``settings`` is ``{run name: settings_of(run, keys)}``."""
    if len(settings) < 2:
        raise ValueError(f"{what} needs at least two runs")
    first, s0 = next(iter(settings.items()))
    for name, s in settings.items():
        differ = [k for k in s0 if s[k] != s0[k]]
        if differ:
            raise ValueError(f"{name} differs from {first} in {', '.join(differ)}: its rounds measure something else")


def versions(packages, keep_missing: bool = False) -> dict:
    """Installed versions of these distributions (a missing one left out, or None with ``keep_missing``)."""
    from importlib import metadata

    out = {}
    for n in packages:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            if keep_missing:
                out[n] = None
    return out


def utc_now() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


# -- the model files -----------------------------------------------------------------------------
def load_artifact(variant: str):
    """(config, resolved model, artifact) of ``variant`` on the project's default config: the one
    way every benchmark composes a config, resolves the model and exports a variant."""
    from pipeline.config import compose_config, to_config
    from pipeline.model import export, sources

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

    model = SentenceTransformer(
        str(tmp), backend="onnx", device="cpu", local_files_only=True, model_kwargs={"file_name": "onnx/model.onnx"}
    )
    export_dynamic_quantized_onnx_model(model, "avx512_vnni", str(tmp))
    if not (tmp / "onnx" / qint8.name).is_file():
        raise RuntimeError(
            f"export_dynamic_quantized_onnx_model wrote {sorted(p.name for p in (tmp / 'onnx').iterdir())}, not {qint8.name}"
        )
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

    model = SentenceTransformer(
        str(st_folder), backend="onnx", device="cpu", local_files_only=True, model_kwargs={"file_name": "onnx/model.onnx"}
    )
    export_optimized_onnx_model(model, level, str(st_folder))
    if not (st_folder / "onnx" / fname).is_file():
        raise RuntimeError(f"export_optimized_onnx_model wrote {sorted(p.name for p in (st_folder / 'onnx').iterdir())}, not {fname}")
    return fname


def infinity_onnx_folder(resolved, graph: Path, root: Path, name: str = "infinity-onnx") -> Path:
    """The folder infinity-emb's optimum engine loads: the checkpoint's config, tokenizer and pooling
    files with ``graph`` as model.onnx, its only ONNX file, at the top (the engine picks a file by
    globbing the folder, preferring one named *quantize* on the CPU, and there is none; it passes
    the path it found as Optimum's file_name, which Optimum 2 matches against bare file names only)."""
    folder = root / name
    source = f"{graph.resolve()} {graph.stat().st_size}"
    if not (folder / "model.onnx").is_file() or not (folder / "source.txt").is_file() or (folder / "source.txt").read_text() != source:
        tmp = root / f".{name}.{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(resolved.folder, tmp, ignore=shutil.ignore_patterns("*.safetensors", "*.bin", "*.onnx", "onnx", "openvino"))
        shutil.copy2(graph, tmp / "model.onnx")
        (tmp / "source.txt").write_text(source)
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(infinity_hub(folder), ignore_errors=True)  # its optimized graph of an older folder
        tmp.rename(folder)
    return folder


def infinity_hub(folder: Path) -> Path:
    """Where infinity-emb's engine writes its optimized graph of ``folder`` (one cache per folder)."""
    return folder.parent / f"{folder.name}.hub"


def infinity_o2_folder(resolved, fp32_art, root: Path, st_folder: Path | None = None) -> Path:
    """infinity-emb's optimum engine's folder around Optimum's O2 graph of our fp32 export
    (sentence-transformers' ``export_optimized_onnx_model``).  The engine's own ORTOptimizer pass
    (level 99) is written for Optimum 1.x and fails on the Optimum 2 here (OptimizationConfig lost
    optimize_with_onnxruntime_only); it then runs the graph it was given, so it is given the
    optimized one.  (Optimum 1.27, its own pass's version, does not import beside torch 2.13:
    torch.onnx lost _attention_scale.)"""
    st = st_folder if st_folder is not None else st_onnx_folder(resolved, fp32_art, root)
    return infinity_onnx_folder(resolved, st / "onnx" / st_optimized(st, "O2"), root)


def optimum_qint8_folder(st_folder: Path, fp32_art, root: Path) -> Path:
    folder = root / "optimum-qint8"
    if not (folder / "model_qint8_avx512_vnni.onnx").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        for p in fp32_art.folder.iterdir():
            if p.is_file() and p.suffix != ".onnx" and not p.name.startswith("."):
                shutil.copy2(p, folder / p.name)
        shutil.copy2(st_folder / "onnx" / "model_qint8_avx512_vnni.onnx", folder / "model_qint8_avx512_vnni.onnx")
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


OV_CALIBRATION_SAMPLES = 300  # STS dev sentences (the test set untouched); the folder is made once with them


def ov_static_calibrated(python: Path, resolved, root: Path, samples: int = OV_CALIBRATION_SAMPLES) -> Path:
    """``ov_static_folder`` calibrated on the first ``samples`` unique STS dev sentences (as our int8_static)."""
    from pipeline.config import QualityConfig
    from pipeline.data.sts import load_sts

    return ov_static_folder(python, resolved, load_sts(QualityConfig(split="dev")).unique_sentences[:samples], root)


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
    try:
        run_tool(python, _OV_STATIC, [tmp, cal, len(calibration)], "export_static_quantized_openvino_model", timeout_s)
        if not (tmp / OV_STATIC_FILE).is_file():
            found = sorted(p.name for p in (tmp / "openvino").iterdir()) if (tmp / "openvino").is_dir() else []
            raise RuntimeError(f"export_static_quantized_openvino_model wrote {found}, not {OV_STATIC_FILE}")
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
    finally:
        shutil.rmtree(cal, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def infinity_pooling(cfg) -> str:
    """The pooling infinity-emb is told: the model's own (its optimum engine pools by CLS unless told)."""
    return cfg.model.native_pooling or "mean"


# -- the peers' environments ---------------------------------------------------------------------
def _ov_ep() -> tuple[tuple[str, ...], bool, tuple[str, ...]]:
    """The OpenVINO execution provider's environment: exactly the set issue 18's provider config
    uses (the environment is shared), pinned to this environment's numpy and tokenizers."""
    import numpy
    import tokenizers

    return ("onnxruntime-openvino==1.24.1", f"numpy=={numpy.__version__}", f"tokenizers=={tokenizers.__version__}"), False, ()


# name -> () -> (package set, inherit this environment's packages after their own, pip arguments)
# optimum-intel requires torchvision, and PyPI's torchvision is a CUDA build that does not load
# beside this environment's CPU torch ("operator torchvision::nms does not exist", and
# transformers then fails to import); unpinned, pip even replaces torch with a CUDA build (5.5 GB).
# So the OpenVINO peer gets optimum-intel and what it adds to this environment, without
# torchvision (--no-deps: the rest, torch and transformers included, is this environment's).
# datasets (and what it adds here) is for export_static_quantized_openvino_model, which reads its
# calibration set with datasets.load_dataset: 4.8.5 is the newest that keeps this environment's
# huggingface-hub 0.x (5.x wants 1.x, which transformers 4.57 refuses), with the fsspec it allows.
# infinity-emb pins numpy<2, sentence-transformers<4; [optimum]: its ONNX engine beside the torch
# one; [server]: its HTTP server (one environment for peers_best.py's rows and serving.py's).
ENVS = {
    "onnxruntime-openvino": _ov_ep,
    "st-openvino": lambda: (
        (
            "optimum-intel==2.2.0",
            "optimum==2.3.0",
            "openvino==2026.4.1",
            "openvino-tokenizers==2026.4.1.0",
            "openvino-telemetry==2025.2.0",
            "nncf==3.4.0",
            "ninja==1.13.2",
            "datasets==4.8.5",
            "dill==0.4.1",
            "multiprocess==0.70.19",
            "xxhash==4.1.0",
            "fsspec==2026.2.0",
            "httpx==0.29.0",
            "httpcore==1.0.9",
        ),
        True,
        ("--no-deps",),
    ),
    "fastembed": lambda: (("fastembed==0.9.1",), False, ()),  # its own onnxruntime, as a user gets it
    "ctranslate2": lambda: (("ctranslate2==4.8.5",), True, ()),  # the converter needs transformers + torch
    "infinity-emb-server": lambda: (("infinity-emb[torch,optimum,server]==0.0.78",), True, ()),
}


def peer_env(name: str, root: Path, report: dict):
    """The environment ``name`` of ``ENVS`` under ``root`` (made once, through
    ``pipeline.runtime.envs``); what it is and how long it took goes to ``report[name]``."""
    from pipeline.runtime import envs

    packages, inherit, pip_args = ENVS[name]()
    t0 = time.perf_counter()
    env = envs.ensure(packages, root, name=name, inherit=inherit, pip_args=pip_args, log=lambda m: print(m, file=sys.stderr, flush=True))
    report[name] = {
        "packages": list(packages),
        "inherit": inherit,
        "pip_args": list(pip_args),
        "ok": env.ok,
        "size_mb": env.size_mb,
        "created_s": env.created_s,
        "path": str(env.path),
        "reason": env.reason,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    return env


def child_env(**extra: str) -> dict:
    """The environment variables of a process in a peer's environment: offline, no telemetry, and
    no PYTHONPATH (each environment sees its own packages; ours gets the repository root otherwise)."""
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        INFINITY_ANONYMOUS_USAGE_STATS="0",
        DO_NOT_TRACK="1",
        **extra,
    )
    env.pop("PYTHONPATH", None)
    return env


def run_tool(python: Path, code: str, args: list[str], what: str, timeout_s: float) -> str:
    """Run ``python -c code args...`` (a one-shot tool in a peer's environment; started by
    ``pipeline.core.child.start``: its own process group, which dies with us and is killed on a
    timeout); returns what it printed on stdout; a failure raises with the exit status and the
    last lines it wrote."""
    from pipeline.core.child import kill_group, start

    proc = start([str(python), "-c", code, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except BaseException:  # a timeout, an interruption: the tool goes with what it started
        kill_group(proc)
        proc.communicate()
        raise
    if proc.returncode != 0:
        tail = " | ".join((err or out).strip().splitlines()[-3:])
        raise RuntimeError(f"{what} failed (exit {proc.returncode}): {tail}")
    return out


# -- a script of this folder as a long-lived child -----------------------------------------------
def worker(module: str, what: str, python: Path | str | None = None, env: dict | None = None):
    """``python -m module`` (benchmarks/<module>.py, ending in ``pipeline.core.child.serve``) as a
    ``pipeline.core.child.Session``: one JSON request and one reply a line each on a pipe pair of
    its own (never stdout), every failure a ``ChildFailed``, its process group killed when it does
    not end.  ``python``: default this one (a peer's environment's otherwise); ``env``: default
    ours (``child_env()`` for a peer's), given this folder and the repository root on its
    PYTHONPATH: it finds the script and pipeline.core.child (standard library only: no other
    module of pipeline is imported by that)."""
    from pipeline.core.child import Session

    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "benchmarks"), str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return Session(module, what=what, python=str(python) if python is not None else None, env=env, cwd=ROOT)


# -- the conditions of a measured stretch --------------------------------------------------------
def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads), from /proc/<pid>/stat."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def loadavg() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def mark(pids):
    """The machine now (``pipeline.measure.signals.Mark``), the CPU time of ``pids`` (our workers,
    our servers, the load generator) counted as ours."""
    from dataclasses import replace

    from pipeline.measure.signals import Mark

    m = Mark.now()
    return replace(m, own_cpu=m.own_cpu + sum(proc_cpu_s(p) for p in pids if p is not None))


def other_share(a, b) -> float | None:
    """The CPU share processes not ours took between two marks."""
    from pipeline.measure.signals import Window

    return Window.between(a, b).other_cpu_share


def window(a, b) -> dict:
    """Conditions of one measured stretch: its seconds, the CPU share of processes not ours, load average."""
    return {"seconds": round(b.wall - a.wall, 1), "other_cpu_share": other_share(a, b), "loadavg": loadavg()}
