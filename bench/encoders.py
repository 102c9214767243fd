"""Throughput of the offline towers (``towers:effnet-lite0+minilm``): the plain reference path
(unfused EfficientNet-Lite0, NCHW, one forward per batch; MiniLM on one padded batch with a
second tokenization pass) against what ``encode_images`` / ``encode_texts`` run (BN folded,
channels_last, CPU sub-batches; captions sorted by length in sub-batches). Both are measured
side by side in one process, alternating, best of ``--repeats``, so the ratio holds on a
loaded machine even when absolute numbers move. Also prints the largest output difference.

    python bench/encoders.py                       # batch 32 and 64, 128 images, 512 captions
    python bench/encoders.py --images 64 --captions 256 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cache_tools.encoders import load_encoder  # noqa: E402
from cache_tools.encoders.towers import (  # noqa: E402
    _effnet_lite0,
    reference_encode_images,
    reference_encode_texts,
)

WORDS = (
    "a the red blue green yellow small large tiny striped metal rubber cube ball cone cylinder "
    "left right of above below next to behind in front dog cat two three people sitting on "
    "wooden table near window holding umbrella street"
).split()


def captions(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 15))) for _ in range(n)]


def best_time(fn, repeats: int) -> float:
    return min(_once(fn) for _ in range(repeats))


def _once(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--images", type=int, default=128)
    ap.add_argument("--captions", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = leave as is)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    enc = load_encoder("towers:effnet-lite0+minilm")
    ref_image = _effnet_lite0().eval().requires_grad_(False)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {enc.device}")

    g = torch.Generator().manual_seed(0)
    pixels = torch.rand(args.images, 3, 224, 224, generator=g) * 2 - 1
    texts = captions(args.captions)

    # correctness at a glance
    a = reference_encode_images(ref_image, pixels[:8])
    b = enc.encode_images(pixels[:8])
    rel = ((a.patches - b.patches).abs().max() / a.patches.abs().max()).item()
    ta = reference_encode_texts(enc.text_model, enc.tokenizer, texts[:64])
    tb = enc.encode_texts(texts[:64])
    tdiff = max((x - y).abs().max().item() for x, y in zip(ta.tokens, tb.tokens))
    gdiff = (ta.global_ - tb.global_).abs().max().item()
    print(f"image patches max rel diff {rel:.2e}; text tokens max abs diff {tdiff:.2e}, globals {gdiff:.2e}")

    figures: dict[str, float] = {}
    for bs in args.batch_sizes:
        img_batches = [pixels[i : i + bs] for i in range(0, len(pixels), bs)]
        txt_batches = [texts[i : i + bs] for i in range(0, len(texts), bs)]
        img = {
            "reference": lambda img_batches=img_batches: [
                reference_encode_images(ref_image, x) for x in img_batches
            ],
            "optimized": lambda img_batches=img_batches: [enc.encode_images(x) for x in img_batches],
        }
        txt = {
            "reference": lambda txt_batches=txt_batches: [
                reference_encode_texts(enc.text_model, enc.tokenizer, t) for t in txt_batches
            ],
            "optimized": lambda txt_batches=txt_batches: [enc.encode_texts(t) for t in txt_batches],
        }
        for fns in (img, txt):  # warm-up (mkldnn primitives, allocator)
            for fn in fns.values():
                fn()
        times: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.repeats):  # alternate so both see the same machine load
            for what, fns in (("img", img), ("txt", txt)):
                for name, fn in fns.items():
                    times.setdefault((what, name), []).append(_once(fn))
        t_img = {k: min(v) for (w, k), v in times.items() if w == "img"}
        t_txt = {k: min(v) for (w, k), v in times.items() if w == "txt"}
        ri, oi = len(pixels) / t_img["reference"], len(pixels) / t_img["optimized"]
        rt, ot = len(texts) / t_txt["reference"], len(texts) / t_txt["optimized"]
        print(
            f"batch {bs:3d}: images   reference {ri:7.1f} img/s   optimized {oi:7.1f} img/s   x{oi / ri:.2f}\n"
            f"           captions reference {rt:7.1f} cap/s   optimized {ot:7.1f} cap/s   x{ot / rt:.2f}"
        )
        figures |= {
            f"b{bs}_images_per_s": round(oi, 1),
            f"b{bs}_images_speedup_ratio": round(oi / ri, 3),
            f"b{bs}_captions_per_s": round(ot, 1),
            f"b{bs}_captions_speedup_ratio": round(ot / rt, 3),
        }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
