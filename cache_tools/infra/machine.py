"""What machine a figure came from: the CPU's model name, its core count and whether it runs
bf16 natively (the CPU flags oneDNN uses). Every bench and results doc names its machine this way."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from pathlib import Path

BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def _cpuinfo(field: str) -> str | None:
    try:
        found = re.search(rf"^{field}\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
    except OSError:
        return None
    return found.group(1).strip() if found else None


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``, else ``lscpu``, else what ``platform`` knows)."""
    model = _cpuinfo("model name")
    if model:
        return model
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        found = re.search(r"^Model name:\s*(.+)$", text, re.M)
        if found:
            return found.group(1).strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or platform.machine() or "unknown"


def bf16_flags() -> list[str]:
    """The native-bf16 CPU flags this CPU has (empty: bf16 runs emulated, slower than fp32)."""
    flags = (_cpuinfo("flags") or "").split()
    return [f for f in BF16_FLAGS if f in flags]


def describe() -> str:
    """One line: ``MODEL, N cores[, native bf16 (FLAGS)]``."""
    bf16 = bf16_flags()
    return f"{cpu_model()}, {os.cpu_count()} cores" + (f", native bf16 ({', '.join(bf16)})" if bf16 else "")
