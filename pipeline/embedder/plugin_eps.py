"""Execution-provider plumbing the embedder needs: provider options as onnxruntime takes them, and
plugin EPs (a shared library registered with onnxruntime, then appended for the devices it offers).

Imports only onnxruntime (inside the functions) and the exceptions of :mod:`pipeline.embedder.embed`'s
contract, kept here so that a provider's own environment needs nothing more.
"""

from __future__ import annotations

import json
from typing import Any

from pipeline.core.errors import PipelineError


class ProviderUnavailable(PipelineError, RuntimeError):
    """The requested execution provider is not in this onnxruntime build, or offers no device here."""


class ProviderFallback(PipelineError, RuntimeError):
    """onnxruntime accepted the provider but ran (part of) the graph elsewhere: a failure, never a
    quiet CPU measurement."""


def option_strings(options: dict[str, Any] | None) -> dict[str, str]:
    """Provider options as onnxruntime takes them: strings; a mapping or list (OpenVINO's
    ``load_config``) as JSON, a bool as ``true``/``false``."""
    out = {}
    for k, v in (options or {}).items():
        if isinstance(v, (dict, list, tuple)):
            out[str(k)] = json.dumps(v, sort_keys=True)
        elif isinstance(v, bool):
            out[str(k)] = "true" if v else "false"
        else:
            out[str(k)] = str(v)
    return out


def load_plugin(plugin: str, provider: str) -> list:
    """Register a plugin EP library and return onnxruntime's devices for ``provider``.

    ``plugin`` is ``module:function``, a function of the plugin's package that returns the path
    of its shared library (or ``path:/some/lib.so``).  Raises ProviderUnavailable, saying which
    devices onnxruntime found, when the plugin offers none here.
    """
    import importlib

    import onnxruntime as ort

    if plugin.startswith("path:"):
        lib = plugin[5:]
    else:
        mod, _, fn = plugin.partition(":")
        try:
            target = getattr(importlib.import_module(mod), fn)
        except (ImportError, AttributeError) as exc:
            raise ProviderUnavailable(f"plugin {plugin}: {type(exc).__name__}: {exc}") from None
        lib = target() if callable(target) else target
    if not any(d.ep_name == provider for d in ort.get_ep_devices()):
        try:
            ort.register_execution_provider_library(provider, str(lib))
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own Fail type
            raise ProviderUnavailable(f"plugin library {lib} did not register: {exc}") from None
    devices = [d for d in ort.get_ep_devices() if d.ep_name == provider]
    if not devices:
        found = "; ".join(f"{d.ep_name} on {hardware_text(d.device)}" for d in ort.get_ep_devices()) or "none"
        raise ProviderUnavailable(f"no device: {provider} registered but offers no device on this machine (onnxruntime's devices: {found})")
    return devices


def hardware_text(device) -> str:
    """A hardware device as onnxruntime describes it: type, vendor and its PCI vendor id."""
    kind = getattr(device.type, "name", str(device.type))
    return f"{kind} {device.vendor or '?'} (vendor id 0x{int(device.vendor_id):04x})"
