"""Precision and device in one place: every adapter runs its forward passes under
``get_autocast(precision, device)`` inside ``torch.inference_mode()``.

* ``fp32``: no autocast, full float32 everywhere.
* ``bf16``: ``torch.autocast(..., dtype=torch.bfloat16)`` on CUDA and on CPU.
* ``fp16``: ``torch.autocast(..., dtype=torch.float16)`` on CUDA; on CPU (where float16 matmuls
  are slow or unsupported) it falls back to float32.

Model weights stay float32; the adapters return float32 tensors whatever the precision.
"""

from __future__ import annotations

import contextlib
import typing
from typing import Any, Literal

from cache_tools.errors import UserError

__all__ = ["PRECISIONS", "Precision", "check_precision", "get_autocast", "resolve_device"]

Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS = typing.get_args(Precision)


def check_precision(precision: str) -> str:
    """Return ``precision`` if it is one of PRECISIONS, else raise UserError naming the choices.
    Torch-free, so that configs can check it without importing torch."""
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    return precision


def resolve_device(device: Any = None) -> Any:
    """``None`` / ``"auto"`` -> ``cuda`` when available else ``cpu``; anything else -> torch.device."""
    import torch

    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise UserError(f"unknown device {device!r}: use cpu, cuda, cuda:N or auto") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {device!r} asked but CUDA is not available here: use --device cpu")
    return dev


def get_autocast(precision: str, device: Any) -> contextlib.AbstractContextManager:
    """The autocast context for ``precision`` on ``device`` (a nullcontext for fp32, and for
    fp16 on CPU)."""
    import torch

    check_precision(precision)
    device_type = torch.device(device).type
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and device_type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device_type, dtype=dtype)
