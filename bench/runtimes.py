"""The offline towers on each runtime and precision this CPU offers, side by side.

For each tower of ``towers:effnet-lite0+minilm`` (EfficientNet-Lite0 images, MiniLM captions)
the same encoder call (``encode_images`` on ``--images`` 224 px images, ``encode_texts`` on
``--captions`` captions) runs as

* ``torch_fp32``: torch, fp32 (``TFLOCAL_RUNTIME=torch``);
* ``onnx_fp32``: ONNX Runtime, fp32 (``TFLOCAL_RUNTIME=onnx``);
* ``torch_bf16``: torch under bf16 autocast (``@bf16`` / ``@text-bf16``);
* ``onnx_int8`` (text only): MiniLM's weight MatMuls in int8 on ONNX Runtime (``@text-int8``);

alternating, best of ``--repeats``, so the ratios hold on a loaded machine. Printed per tower:
items per second, each ratio to ``torch_fp32``, the largest output difference from
``torch_fp32`` and the lowest cosine of an output row (a patch, a token) to its row there, and what the default encoder of ``tflocal quickstart`` picks on this CPU
(``auto``: :func:`tflocal.app.quickstart.default_towers`, then each tower's own one-batch timing). Run it on a CPU with native bf16 and on one without
(e.g. ``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2`` limits torch to AVX2; ONNX Runtime's
kernels cannot be limited that way). The last line is a JSON object of the figures.

    python bench/runtimes.py
    python bench/runtimes.py --images 64 --captions 512 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from encoders import captions  # noqa: E402

from cache_tools.encoders import load_encoder  # noqa: E402
from cache_tools.encoders.onnx_runtime import (  # noqa: E402
    RUNTIME_ENV,
    forget_choices,
    onnx_available,
    runtime_choices,
)
from cache_tools.encoders.towers import native_bf16  # noqa: E402
from cache_tools.infra.machine import cpu_model  # noqa: E402
from tflocal.app.quickstart import default_towers  # noqa: E402

PAIR = "towers:effnet-lite0+minilm"
CASES = {
    "image": {
        "torch_fp32": (PAIR, "torch"),
        "onnx_fp32": (PAIR, "onnx"),
        "torch_bf16": (PAIR + "@bf16", "torch"),
    },
    "text": {
        "torch_fp32": (PAIR, "torch"),
        "onnx_fp32": (PAIR, "onnx"),
        "torch_bf16": (PAIR + "@text-bf16", "torch"),
        "onnx_int8": (PAIR + "@text-int8", "onnx"),
    },
}
"""tower -> case -> (encoder name, TFLOCAL_RUNTIME)."""


def load(name: str, runtime: str | None) -> Any:
    forget_choices()
    if runtime is None:
        os.environ.pop(RUNTIME_ENV, None)
    else:
        os.environ[RUNTIME_ENV] = runtime
    return load_encoder(name, device="cpu")


def call(encoder: Any, tower: str, pixels: torch.Tensor, texts: list[str]) -> torch.Tensor:
    """One encoder call; its main output as one float tensor (patches, or tokens concatenated)."""
    if tower == "image":
        return encoder.encode_images(pixels).patches
    return torch.cat(encoder.encode_texts(texts).tokens)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=64, help="images per image-tower call")
    ap.add_argument("--captions", type=int, default=512, help="captions per text-tower call")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    if not onnx_available():
        print(
            "runtimes: error: onnx and onnxruntime are not installed (pip install -e '.[towers]')",
            file=sys.stderr,
        )
        return 1
    torch.manual_seed(0)
    pixels = torch.randn(args.images, 3, 224, 224)
    texts = captions(args.captions)
    figures: dict[str, Any] = {
        "cpu": cpu_model(),
        "native_bf16": native_bf16(),
        "torch_threads": torch.get_num_threads(),
        "torch_isa_limit": os.environ.get("ATEN_CPU_CAPABILITY")
        or os.environ.get("ONEDNN_MAX_CPU_ISA")
        or None,
    }
    saved = os.environ.get(RUNTIME_ENV)
    try:
        for tower, cases in CASES.items():
            encoders = {case: load(name, runtime) for case, (name, runtime) in cases.items()}
            n = args.images if tower == "image" else args.captions
            best = {case: float("inf") for case in cases}
            outputs = {}
            for case, enc in encoders.items():  # warm-up: exports, runtimes loaded, the choice each holds
                forget_choices()  # the choice is kept per encoder name, which two cases share
                os.environ[RUNTIME_ENV] = cases[case][1]
                outputs[case] = call(enc, tower, pixels, texts).float()
            for _ in range(args.repeats):
                for case, enc in encoders.items():
                    t0 = time.perf_counter()
                    call(enc, tower, pixels, texts)
                    best[case] = min(best[case], time.perf_counter() - t0)
            ref = outputs["torch_fp32"]
            for case in cases:
                rate = n / best[case]
                figures[f"{tower}_{case}_per_s"] = float(f"{rate:.4g}")
                if case != "torch_fp32":
                    figures[f"{tower}_{case}_ratio_to_torch_fp32"] = round(best["torch_fp32"] / best[case], 3)
                    figures[f"{tower}_{case}_max_abs_diff"] = float(
                        f"{(outputs[case] - ref).abs().max():.3g}"
                    )
                    rows = (outputs[case].reshape(-1, ref.shape[-1]), ref.reshape(-1, ref.shape[-1]))
                    cos = torch.nn.functional.cosine_similarity(*rows, dim=1)
                    figures[f"{tower}_{case}_min_cos"] = round(float(cos.min()), 5)
                print(f"{tower:5s} {case:10s} {rate:8.1f} {'images' if tower == 'image' else 'captions'}/s")
            name = default_towers("cpu")
            auto = load(name, None)
            call(auto, tower, pixels[:8], texts[:64])
            picked = {k: v for k, v in runtime_choices().items() if k.startswith(f"{tower}:")}
            if tower == "text" and name.endswith("@text-int8"):
                figures["text_default_picks"] = "onnx_int8"
            else:
                figures[f"{tower}_default_picks"] = (
                    (next(iter(picked.values())) + "_fp32") if picked else "torch_bf16"
                )
    finally:
        forget_choices()
        if saved is None:
            os.environ.pop(RUNTIME_ENV, None)
        else:
            os.environ[RUNTIME_ENV] = saved
    for tower in CASES:
        fastest = max(CASES[tower], key=lambda c: figures[f"{tower}_{c}_per_s"])
        figures[f"{tower}_fastest"] = fastest
        print(
            f"{tower}: fastest {fastest}; the quickstart's default runs {figures[f'{tower}_default_picks']}"
        )
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
