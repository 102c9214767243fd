"""Benchmark of the feature cache. Prints three ratios, each measured side by side in one run:

1. caching time (``write_cache``: image decode + preprocess + encode + HDF5 writes) over the
   encoder's own forward on the same batches (pixels and texts prepared beforehand); target <= 1.15;
2. file size over the raw payload bytes (patches and tokens in fp16, globals in fp32); target <= 1.05;
3. shuffled training-batch read throughput (``chunk_shuffle`` + ``Cache.patches``) over a
   sequential read of the same rows; target >= 0.5. Per-sample h5py fancy indexing is shown too.

    python bench/cache.py                      # random-weight ViT-B-32 built locally, 128 images
    python bench/cache.py --encoder towers:effnet-lite0+minilm --n 256
    python bench/cache.py --device cuda --n 2048 --batch-size 256
    # the quickstart's encoder on ShapesWorld, fp32 vs the bf16 text tower, caching only:
    python bench/cache.py --encoder towers:effnet-lite0+minilm --shapes --n 128 --batch-size 64 \
        --compare towers:effnet-lite0+minilm@text-bf16 --skip-reads

The last line printed is a JSON object of the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cache_tools.encoders.images import load_image  # noqa: E402
from cache_tools.infra.precision import PRECISIONS  # noqa: E402
from cache_tools.sources.records import ImageRecord, TextRecord  # noqa: E402
from cache_tools.store.reader import chunk_shuffle, open_cache  # noqa: E402
from cache_tools.write.arrays import write_arrays  # noqa: E402
from cache_tools.write.encode import TEXT_CALL_BATCHES  # noqa: E402
from cache_tools.write.writer import write_cache  # noqa: E402

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


def shapes_records(n: int, tmp: Path) -> list[ImageRecord]:
    """The first ``n`` training records of a freshly rendered ShapesWorld (real captions with
    their hard negatives, as the quickstart caches them)."""
    from cache_tools.sources import open_source
    from tflocal.shapesworld.generate import generate

    generate(tmp / "shapes", n_train=n, n_test_id=1, n_test_ood=1, seed=0, workers=1, progress=False)
    return list(open_source(f"shapesworld:{tmp / 'shapes'}", split="train"))[:n]


def bench_caching(
    encoder_name: str,
    n: int,
    batch_size: int,
    device: str,
    tmp: Path,
    shapes: bool,
    compare: str,
    precision: str = "fp32",
) -> dict:
    """Caching time vs the encoder's own forward (images, then each distinct caption once) on
    the same records; with ``compare``: a second encoder name (e.g. the ``@text-bf16`` towers)
    timed alike, interleaved, and how far its cached tokens are from the first's."""
    from cache_tools.encoders import load_encoder

    recs = shapes_records(n, tmp) if shapes else make_images(tmp, n)
    n = len(recs)
    names = [encoder_name] + ([compare] if compare else [])
    encs = {name: load_encoder(name, device=device, precision=precision) for name in names}
    texts = list(dict.fromkeys(t.text for r in recs for t in r.texts))
    first = encs[encoder_name]
    pixels = [first.preprocess(load_image(r)) for r in recs]
    for enc in encs.values():  # warm-up (first-call allocations, lazy inits)
        enc.encode_images(torch.stack(pixels[:2]).to(enc.device))
        enc.encode_texts(texts[:2])
    sync = torch.cuda.synchronize if first.device.type == "cuda" else (lambda: None)

    def forward_only(enc) -> tuple[float, float]:
        t0 = time.perf_counter()
        with torch.inference_mode():
            for i in range(0, n, batch_size):
                enc.encode_images(torch.stack(pixels[i : i + batch_size])).patches.float().cpu()
            sync()
            t1 = time.perf_counter()
            # the calls cache_tools.write.encode.encode_texts makes: shortest first, several batches
            # per call for an encoder that sorts and sub-batches itself
            step = batch_size * (TEXT_CALL_BATCHES if getattr(enc, "sorts_texts", False) else 1)
            ordered = sorted(texts, key=len)
            for i in range(0, len(ordered), step):
                [t.float().cpu() for t in enc.encode_texts(ordered[i : i + step]).tokens]
        sync()
        return t1 - t0, time.perf_counter() - t1

    def caching(enc, k: int) -> tuple[float, Path]:
        out = tmp / f"bench{k}.h5"
        out.unlink(missing_ok=True)
        t0 = time.perf_counter()
        write_cache(recs, enc, out, batch_size=batch_size, progress=False)
        sync()
        return time.perf_counter() - t0, out

    # interleave to share the machine's noise: forward, cache, forward, cache (per encoder)
    times: dict[str, dict[str, list[float]]] = {name: {} for name in names}
    outs: dict[str, Path] = {}
    for rep in range(2):
        for k, (name, enc) in enumerate(encs.items()):
            img_t, txt_t = forward_only(enc)
            cache_t, outs[name] = caching(enc, 2 * k + rep)
            for key, v in (("images", img_t), ("texts", txt_t), ("cache", cache_t)):
                times[name].setdefault(key, []).append(v)
    best = {name: {k: min(v) for k, v in t.items()} for name, t in times.items()}
    b = best[encoder_name]
    fwd, cache_t = b["images"] + b["texts"], b["cache"]
    c = open_cache(outs[encoder_name])
    payload = c.payload_bytes()
    size = outs[encoder_name].stat().st_size
    print(
        f"encoder {encoder_name} on {first.device} ({torch.get_num_threads()} threads), {n} images, "
        f"{len(texts)} distinct texts, batch {batch_size}, {'ShapesWorld' if shapes else 'synthetic'}"
    )
    print(f"  image forward             {b['images']:8.2f} s   {n / b['images']:8.1f} img/s")
    print(f"  text forward              {b['texts']:8.2f} s   {len(texts) / b['texts']:8.1f} texts/s")
    print(f"  text share of forward     {b['texts'] / fwd:8.3f}")
    print(f"  write_cache (end to end)  {cache_t:8.2f} s   {n / cache_t:8.1f} img/s")
    print(f"  caching / forward         {cache_t / fwd:8.3f}   (target <= 1.15)")
    print(
        f"  file size / raw payload   {size / payload:8.3f}   ({size / 2**20:.1f} MiB / {payload / 2**20:.1f} MiB; target <= 1.05)"
    )
    fig = {
        "encoder": encoder_name,
        "images": n,
        "distinct_texts": len(texts),
        "threads": torch.get_num_threads(),
        "device": str(first.device),
        "precision": precision,
        "image_forward_per_s": round(n / b["images"], 1),
        "caching_images_per_s": round(n / cache_t, 1),
        "text_share_of_forward": round(b["texts"] / fwd, 3),
        "caching_over_forward_ratio": round(cache_t / fwd, 3),
        "file_over_payload_ratio": round(size / payload, 3),
    }
    if compare:
        o = best[compare]
        c2 = open_cache(outs[compare])
        rows = np.arange(min(len(c.strings), 2000))
        diff = max(
            float(np.abs(np.asarray(a, np.float32) - b).max())
            for a, b in zip(c.tokens(rows), c2.tokens(rows))
        )
        gdiff = float(np.abs(c.text_global(rows) - c2.text_global(rows)).max())
        imgs = np.arange(len(c.image_ids))
        pdiff = float(np.abs(np.asarray(c.patches(imgs), np.float32) - c2.patches(imgs)).max())
        print(f"  vs {compare}:")
        print(f"    image forward ratio     {b['images'] / o['images']:8.3f}x faster")
        print(f"    text forward ratio      {b['texts'] / o['texts']:8.3f}x faster")
        print(f"    caching time ratio      {b['cache'] / o['cache']:8.3f}x faster")
        print(f"    cached tokens max |diff| {diff:.4f}, text globals {gdiff:.5f}, patches {pdiff:.4f}")
        fig.update(
            compare=compare,
            image_forward_speedup_ratio=round(b["images"] / o["images"], 3),
            text_forward_speedup_ratio=round(b["texts"] / o["texts"], 3),
            caching_speedup_ratio=round(b["cache"] / o["cache"], 3),
            compare_caching_over_forward_ratio=round(o["cache"] / (o["images"] + o["texts"]), 3),
            compare_token_max_abs_diff=round(diff, 4),
            compare_text_global_max_abs_diff=round(gdiff, 5),
            compare_patch_max_abs_diff=round(pdiff, 4),
        )
    return fig


def bench_text_order(encoder_name: str, n: int, batch_size: int, device: str, tmp: Path) -> dict:
    """``cache_tools.write.encode.encode_texts`` on the distinct captions of ``n`` ShapesWorld records:
    as before (batches of ``batch_size`` in order of first appearance) vs now (shortest first,
    16 batches per call to an encoder that sorts itself); interleaved, best of two."""
    import cache_tools.write.encode as encode
    from cache_tools.encoders import load_encoder

    enc = load_encoder(encoder_name, device=device)
    texts = [t.text for r in shapes_records(n, tmp) for t in r.texts]
    enc.encode_texts(texts[:4])

    def before() -> float:
        t0 = time.perf_counter()
        unique = list(dict.fromkeys(texts))
        for i in range(0, len(unique), batch_size):
            enc.encode_texts(unique[i : i + batch_size])
        return time.perf_counter() - t0

    def now() -> float:
        t0 = time.perf_counter()
        encode.encode_texts(enc, texts, batch_size)
        return time.perf_counter() - t0

    b, a = min(before(), before()), min(now(), now())
    print(f"text order: {len(set(texts))} distinct captions, before {b:.2f} s, now {a:.2f} s, {b / a:.3f}x")
    return {"text_order_speedup_ratio": round(b / a, 3)}


def bench_reads(n: int, batch_size: int, tmp: Path, p: int = 49, d: int = 768) -> dict:
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
    return {
        "shuffled_over_sequential_read_ratio": round(sh / s, 3),
        "fancy_over_sequential_read_ratio": round(fancy / s, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoder", default=None, help="registry name (default: random ViT-B-32 saved locally)")
    ap.add_argument("--n", type=int, default=128, help="images to cache")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--read-n", type=int, default=6000, help="images in the read benchmark")
    ap.add_argument("--read-batch", type=int, default=256)
    ap.add_argument("--skip-caching", action="store_true")
    ap.add_argument("--skip-reads", action="store_true")
    ap.add_argument("--shapes", action="store_true", help="ShapesWorld records (real captions + negatives)")
    ap.add_argument("--text-order", action="store_true", help="time caption order/batching (ShapesWorld)")
    ap.add_argument("--compare", default="", help="a second encoder name timed alike (e.g. ...@text-bf16)")
    ap.add_argument("--precision", default="fp32", choices=PRECISIONS, help="encoders' autocast")
    args = ap.parse_args()
    figures: dict = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if not args.skip_caching:
            name = args.encoder or local_vit_b32(tmp)
            figures.update(
                bench_caching(
                    name, args.n, args.batch_size, args.device, tmp, args.shapes, args.compare, args.precision
                )
            )
        if args.text_order:
            figures.update(
                bench_text_order(
                    args.encoder or "towers:effnet-lite0+minilm", args.n, args.batch_size, args.device, tmp
                )
            )
        if not args.skip_reads:
            figures.update(bench_reads(args.read_n, args.read_batch, tmp))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
