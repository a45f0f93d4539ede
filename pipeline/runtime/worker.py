"""What runs inside a provider's own environment (pipeline/runtime/providers.py starts it).

It imports only numpy, tokenizers, onnxruntime and the package's light modules (embed,
placement), so an environment holding an onnxruntime build and those two packages is enough:

    <env>/bin/python -m pipeline.runtime.worker REQUEST.json REPLY.json     (pipeline.core.child)

The request: ``{"spec": EmbedderSpec as a dict, "texts": [...] or null, "batch_size": int or null,
"assignment": bool, "out_dir": folder}``.  The reply: ``status`` (ok | unavailable | fallback),
``reason``, the runtime's versions, the node assignment; when texts were given, ``out_dir`` gets
``vectors.npy``.  A provider that is missing or offers no device is ``unavailable``; one that
onnxruntime accepted but ran elsewhere (fully or in part) is ``fallback``, never a quiet CPU run;
any other failure is the protocol's error (the parent raises with its message and traceback).
"""

from __future__ import annotations

import sys
from pathlib import Path

from pipeline.core import child


def runtime_info() -> dict:
    """This process's onnxruntime: its version, build, providers, plugin devices, and the versions
    of the distributions that provide it (onnxruntime*, openvino*, numpy, tokenizers)."""
    from importlib import metadata

    import onnxruntime as ort

    dists = {}
    for d in metadata.distributions():
        name = (d.metadata.get("Name") or "").lower()
        if name.startswith(("onnxruntime", "openvino")) or name in ("numpy", "tokenizers"):
            dists[name] = d.version
    info = {
        "onnxruntime": ort.__version__,
        "available_providers": list(ort.get_available_providers()),
        "distributions": dict(sorted(dists.items())),
        "python": sys.executable,
    }
    # the OpenVINO runtime inside an onnxruntime-openvino build (libopenvino.so.2025.4.1)
    import re

    for lib in sorted(Path(ort.__file__).parent.glob("capi/libopenvino.so.*")):
        m = re.fullmatch(r"libopenvino\.so\.(\d+\.\d+\.\d+)", lib.name)
        if m:
            info["openvino"] = m.group(1)
    try:
        info["build_info"] = ort.get_build_info()
    except AttributeError:
        pass
    try:
        info["ep_devices"] = [
            {
                "ep_name": d.ep_name,
                "ep_vendor": d.ep_vendor,
                "ep_metadata": dict(d.ep_metadata),
                "device": f"{getattr(d.device.type, 'name', d.device.type)} {d.device.vendor} 0x{int(d.device.vendor_id):04x}",
            }
            for d in ort.get_ep_devices()
        ]
    except Exception:  # noqa: BLE001 - an onnxruntime without the device API
        pass
    return info


def run(task: dict) -> dict:
    import numpy as np

    from pipeline.embedder.plugin_eps import ProviderFallback, ProviderUnavailable
    from pipeline.embedder.spec import EmbedderSpec
    from pipeline.runtime.placement import assignment_of

    result: dict = {"status": "ok", "reason": ""}
    spec = EmbedderSpec.from_dict(task["spec"])
    if task.get("assignment"):
        spec = spec.replace(session_config={**spec.session_config, "session.record_ep_graph_assignment_info": "1"})
    try:
        result["runtime"] = runtime_info()
        emb = spec.build()
    except ProviderUnavailable as exc:
        return {**result, "status": "unavailable", "reason": str(exc)}
    except ProviderFallback as exc:
        return {**result, "status": "fallback", "reason": str(exc)}
    if task.get("assignment"):
        a = assignment_of(emb.session, spec.provider)
        result["assignment"] = a.to_dict()
        why = a.fallback_reason()
        if why:
            return {**result, "status": "fallback", "reason": why}
    if task.get("texts") is not None:
        vecs = emb.embed(list(task["texts"]), batch_size=task.get("batch_size"))
        np.save(Path(task["out_dir"]) / "vectors.npy", np.asarray(vecs, dtype=np.float32))
        result["vectors"] = "vectors.npy"
    result["dim"] = int(emb.dim)
    return result


if __name__ == "__main__":
    raise SystemExit(child.serve(run, default=str))
