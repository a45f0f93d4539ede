"""'Did you mean': the nearest real key for a mistyped ``key=value`` override.

Hydra answers an unknown key with its ``+key=value`` hint, which adds a key nothing reads; the
command line adds the nearest key of the project's config instead (``bench.batchsize`` ->
``bench.batch_size``).
"""

from __future__ import annotations

import difflib
from typing import Any, Iterable


def _keys(node: Any, prefix: str = "") -> list[str]:
    from omegaconf import DictConfig

    out = []
    for k in node.keys() if isinstance(node, DictConfig) else []:
        full = f"{prefix}{k}"
        out.append(full)
        try:
            child = node._get_node(k)
        except Exception:  # an interpolation or a missing value: a leaf
            continue
        if isinstance(child, DictConfig):
            out.extend(_keys(child, full + "."))
    return out


def config_keys() -> list[str]:
    """Every key of the default config (the groups' fields included), dotted."""
    from pipeline.config.compose import compose_config

    return _keys(compose_config([]))


def suggestions(args: Iterable[str], keys: list[str] | None = None) -> list[str]:
    """One line per ``key=value`` argument whose key does not exist: the nearest real key."""
    overrides = [a for a in args if "=" in a and not a.startswith(("-", "+", "~")) and "." in a.split("=", 1)[0]]
    if not overrides:
        return []
    keys = keys if keys is not None else config_keys()
    known = set(keys)
    out = []
    for arg in overrides:
        key, value = arg.split("=", 1)
        if key in known or key.startswith("hydra."):
            continue
        close = difflib.get_close_matches(key, keys, n=1, cutoff=0.75)
        if close:
            out.append(f"did you mean {close[0]}={value}? ('{key}' is no key of the config; a leading + would add one that nothing reads)")
    return out
