"""Precision and device helpers: names checked before any model loads, CUDA refused when hidden,
autocast only where the CPU has it (bf16)."""

from __future__ import annotations

import pytest
import torch

from cache_tools.encoders import load_encoder
from cache_tools.infra.precision import check_precision, get_autocast, resolve_device
from tflocal.errors import UserError


def test_bad_precision_and_device_rejected_before_loading():
    with pytest.raises(UserError, match="fp32, bf16, fp16"):
        load_encoder("towers:effnet-lite0+minilm", precision="int8")
    assert check_precision("bf16") == "bf16"
    assert resolve_device(None) == torch.device("cpu")  # CUDA hidden in tests
    with pytest.raises(UserError, match="CUDA"):
        resolve_device("cuda")


def test_get_autocast():
    with get_autocast("fp32", "cpu"):
        assert not torch.is_autocast_enabled("cpu")
    with get_autocast("fp16", "cpu"):  # no fp16 autocast on CPU: fp32
        assert not torch.is_autocast_enabled("cpu")
    with get_autocast("bf16", "cpu"):
        assert torch.is_autocast_enabled("cpu")
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
        y = torch.ones(2, 3) @ torch.ones(3, 2)
    assert y.dtype == torch.bfloat16
