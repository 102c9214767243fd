"""Benchmark of the feature cache. Prints three ratios, each measured side by side in one run:

1. caching time (``write_cache``: image decode + preprocess + encode + HDF5 writes) over the
   encoder's own forward on the same batches (pixels and texts prepared beforehand); target <= 1.15;
2. file size over the raw payload bytes (patches and tokens in fp16, globals in fp32); target <= 1.05;
3. shuffled training-batch read throughput (``chunk_shuffle`` + ``Cache.patches``) over a
   sequential read of the same rows; target >= 0.5. Per-sample h5py fancy indexing is shown too.

    python bench/cache.py                      # random-weight ViT-B-32 built locally, 128 images
    python bench/cache.py --encoder towers:effnet-lite0+minilm --n 256
    python bench/cache.py --device cuda --n 2048 --batch-size 256
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cache_tools.arrays import write_arrays  # noqa: E402
from cache_tools.images import load_image  # noqa: E402
from cache_tools.reader import chunk_shuffle, open_cache  # noqa: E402
from cache_tools.records import ImageRecord, TextRecord  # noqa: E402
from cache_tools.writer import write_cache  # noqa: E402

WORDS = "red blue green small large cube ball cone left right of above below a the striped metal".split()


def make_images(root: Path, n: int, size: int = 256) -> list[ImageRecord]:
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    recs = []
    for i in range(n):
        img = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(0, 255, 3)))
        d = ImageDraw.Draw(img)
        for _ in range(3):
            x, y = rng.integers(0, size - 60, 2)
            d.ellipse(
                (int(x), int(y), int(x) + 50, int(y) + 50),
                fill=tuple(int(v) for v in rng.integers(0, 255, 3)),
            )
        p = root / f"{i:06d}.jpg"
        img.save(p, quality=90)
        caps = [" ".join(rng.choice(WORDS, size=int(rng.integers(6, 14)))) for _ in range(2)]
        recs.append(
            ImageRecord(
                id=p.name,
                image=str(p),
                texts=[TextRecord(caps[0]), TextRecord(caps[1], positive=0, op="swap")],
            )
        )
    return recs


def local_vit_b32(tmp: Path) -> str:
    """A random-weight ViT-B-32 saved locally (no download), as an encoder registry name."""
    import open_clip

    model = open_clip.create_model("ViT-B-32", pretrained=None)
    path = tmp / "vit_b32_random.pt"
    torch.save(model.state_dict(), path)
    return f"openclip:ViT-B-32@{path}"


def bench_caching(encoder_name: str, n: int, batch_size: int, device: str, tmp: Path) -> None:
    from cache_tools.encoders import load_encoder

    recs = make_images(tmp, n)
    enc = load_encoder(encoder_name, device=device)
    # warm-up (first-call allocations, lazy inits)
    enc.encode_images(torch.stack([enc.preprocess(load_image(r)) for r in recs[:2]]).to(enc.device))
    enc.encode_texts([t.text for r in recs[:2] for t in r.texts])
    pixels = [enc.preprocess(load_image(r)) for r in recs]
    texts = list(dict.fromkeys(t.text for r in recs for t in r.texts))
    sync = torch.cuda.synchronize if enc.device.type == "cuda" else (lambda: None)

    def forward_only() -> float:
        t0 = time.perf_counter()
        with torch.inference_mode():
            for i in range(0, n, batch_size):
                out = enc.encode_images(torch.stack(pixels[i : i + batch_size]))
                out.patches.float().cpu()
            for i in range(0, len(texts), batch_size):
                out = enc.encode_texts(texts[i : i + batch_size])
                [t.float().cpu() for t in out.tokens]
        sync()
        return time.perf_counter() - t0

    def caching(k: int) -> tuple[float, Path]:
        out = tmp / f"bench{k}.h5"
        t0 = time.perf_counter()
        write_cache(recs, enc, out, batch_size=batch_size, progress=False)
        sync()
        return time.perf_counter() - t0, out

    # interleave to share the machine's noise: forward, cache, forward, cache
    f1, (c1, out) = forward_only(), caching(1)
    f2, (c2, _) = forward_only(), caching(2)
    fwd, cache_t = min(f1, f2), min(c1, c2)
    c = open_cache(out)
    payload = c.payload_bytes()
    size = out.stat().st_size
    print(
        f"encoder {encoder_name} on {enc.device}, {n} images, {len(texts)} unique texts, batch {batch_size}"
    )
    print(f"  encoder forward only      {fwd:8.2f} s   {n / fwd:8.1f} img/s")
    print(f"  write_cache (end to end)  {cache_t:8.2f} s   {n / cache_t:8.1f} img/s")
    print(f"  caching / forward         {cache_t / fwd:8.3f}   (target <= 1.15)")
    print(
        f"  file size / raw payload   {size / payload:8.3f}   ({size / 2**20:.1f} MiB / {payload / 2**20:.1f} MiB; target <= 1.05)"
    )


def bench_reads(n: int, batch_size: int, tmp: Path, p: int = 49, d: int = 768) -> None:
    rng = np.random.default_rng(0)
    path = tmp / "reads.h5"
    patches = rng.standard_normal((n, p, d), dtype=np.float32).astype(np.float16)
    write_arrays(
        path,
        {"encoder": "synthetic", "grid": [7, 7], "space": "joint", "global_space": "joint"},
        [str(i) for i in range(n)],
        patches,
        rng.standard_normal((n, 512), dtype=np.float32),
        ["t"] * n,
        [rng.standard_normal((12, 512), dtype=np.float32).astype(np.float16) for _ in range(n)],
        rng.standard_normal((n, 512), dtype=np.float32),
        np.arange(n),
        np.full(n, -1),
    )
    del patches
    if hasattr(os, "posix_fadvise"):  # drop the page cache of the file where allowed
        with open(path, "rb") as fh:
            os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    c = open_cache(path)
    block = c.block_rows

    def run(order: np.ndarray, reader) -> float:
        t0 = time.perf_counter()
        for i in range(0, n, batch_size):
            reader(order[i : i + batch_size])
        return n / (time.perf_counter() - t0)

    seq = np.arange(n)
    shuf = chunk_shuffle(n, block, seed=0, span=batch_size)
    dset = c.file["images/patches"]
    fancy_perm = np.random.default_rng(1).permutation(n)[: max(batch_size * 4, n // 8)]
    results = {}
    for _ in range(2):  # interleaved, best of two
        results.setdefault("sequential", []).append(run(seq, c.patches))
        results.setdefault("chunk-shuffled", []).append(run(shuf, c.patches))
    t0 = time.perf_counter()
    for i in range(0, len(fancy_perm), batch_size):
        dset[np.sort(fancy_perm[i : i + batch_size])]
    fancy = len(fancy_perm) / (time.perf_counter() - t0)
    s, sh = max(results["sequential"]), max(results["chunk-shuffled"])
    print(
        f"reads: {n} images x {p} x {d} fp16 ({n * p * d * 2 / 2**20:.0f} MiB), batch {batch_size}, "
        f"HDF5 chunk {block} rows, rows shuffled within each batch of whole chunks"
    )
    print(f"  sequential                {s:10.0f} img/s")
    print(f"  chunk-shuffled batches    {sh:10.0f} img/s   ratio {sh / s:.2f} (target >= 0.5)")
    print(
        f"  per-sample fancy indexing {fancy:10.0f} img/s   ratio {fancy / s:.2f} (what chunk shuffling avoids)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoder", default=None, help="registry name (default: random ViT-B-32 saved locally)")
    ap.add_argument("--n", type=int, default=128, help="images to cache")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--read-n", type=int, default=6000, help="images in the read benchmark")
    ap.add_argument("--read-batch", type=int, default=256)
    ap.add_argument("--skip-caching", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if not args.skip_caching:
            name = args.encoder or local_vit_b32(tmp)
            bench_caching(name, args.n, args.batch_size, args.device, tmp)
        bench_reads(args.read_n, args.read_batch, tmp)


if __name__ == "__main__":
    main()
