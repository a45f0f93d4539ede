"""Machine facts: the CPU model, the frequency governor, the load average, and the machine's
fingerprint (CPU model, cores, kernel, host and machine id: what a timing and a baseline belong to)."""

from __future__ import annotations

import hashlib
import os
import platform
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def governor() -> str | None:
    try:
        return Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor").read_text().strip()
    except OSError:
        return None


def loadavg() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:  # pragma: no cover - not on Linux
        return float("nan")


def _machine_id() -> str:
    for p in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            return Path(p).read_text().strip()
        except OSError:
            continue
    return ""


def fingerprint() -> dict[str, str]:
    """What a timing belongs to: the CPU model, cores, kernel, host and machine id; ``id``, a short
    hash of them all (two hosts with the same CPU model have different ids: baselines and resume
    are keyed on it), and ``kind``, a hash of the hardware alone (CPU model, cores, architecture:
    the decision never ranks two kinds together)."""
    parts = {
        "cpu_model": cpu_model(),
        "cores": str(os.cpu_count() or 1),
        "kernel": platform.release(),
        "host": platform.node(),
        "machine_id": hashlib.sha256(_machine_id().encode()).hexdigest()[:12],
        "arch": platform.machine(),
    }
    parts["id"] = hashlib.sha256(repr(sorted(parts.items())).encode()).hexdigest()[:12]
    # the hardware alone: identical nodes of a cluster share it (the decision ranks one kind)
    parts["kind"] = hashlib.sha256(repr((parts["cpu_model"], parts["cores"], parts["arch"])).encode()).hexdigest()[:12]
    return parts
