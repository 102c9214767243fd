"""The machine line every bench and results doc carries."""

from __future__ import annotations

import os

import cache_tools.infra.machine as machine


def test_describe_names_model_cores_and_native_bf16(monkeypatch):
    info = {"model name": "Test CPU 9000", "flags": "fpu avx2 amx_bf16 avx512f"}
    monkeypatch.setattr(machine, "_cpuinfo", info.get)
    assert machine.describe() == f"Test CPU 9000, {os.cpu_count()} cores, native bf16 (amx_bf16)"
    info["flags"] = "fpu avx2 fma"
    assert machine.bf16_flags() == []
    assert machine.describe() == f"Test CPU 9000, {os.cpu_count()} cores"


def test_cpu_model_of_this_machine_is_a_name():
    assert machine.cpu_model().strip() and machine.cpu_model() != "unknown"
