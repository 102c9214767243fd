"""Added latency per query of re-ranking the first stage's top 100 with MaxSim and with TFLocal.

A synthetic cache of 100,000 images (random patch tokens P = 7x7, random globals) and 2,000
captions is written once (``--cache``, reused when present). For each query caption:

* first stage: faiss ``Flat`` inner product over the 100,000 image globals, top ``k_rerank``;
* + MaxSim: score the (caption, candidate) pairs with the parameter-free MaxSim scorer;
* + TFLocal: score them with a TFLocal head (random weights: latency does not depend on them),
  the joint transformer (summary read-out) and ``readout: segments`` (which also parses each
  caption into its layout; every synthetic caption has 2 objects and 1 relation).

Queries run one at a time (latency, not throughput), after warm-up; the re-ranking time
includes reading the candidates' patches from the HDF5 file (``--in-memory`` loads the payload
into RAM first). Prints median and p90 milliseconds per query.

    python bench/rerank.py --cache /tmp/rerank_100k.h5 --queries 30 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

CAPTION = "a small red circle is left of a blue square"
"""Every synthetic caption: parseable, so the segments read-out does its real work (2 objects, 1 relation)."""


def make_cache(path: Path, n: int, grid: int, dim: int, n_texts: int, tokens: int, seed: int = 0) -> Path:
    from cache_tools.arrays import write_arrays

    rng = np.random.default_rng(seed)
    print(
        f"writing synthetic cache {path}: {n:,} images x {grid * grid} patches x {dim} (float16) ...",
        flush=True,
    )
    t0 = time.perf_counter()
    patches = rng.standard_normal((n, grid * grid, dim), dtype=np.float32).astype(np.float16)
    image_global = rng.standard_normal((n, dim), dtype=np.float32)
    text_image = rng.integers(0, n, n_texts)
    text_global = image_global[text_image] + rng.standard_normal((n_texts, dim), dtype=np.float32)
    toks = [rng.standard_normal((tokens, dim), dtype=np.float32) for _ in range(n_texts)]
    words = ["[CLS]", *CAPTION.split(), "[SEP]"]
    pieces = (words + ["."] * tokens)[:tokens]
    write_arrays(
        path,
        {
            "encoder": "synthetic:bench",
            "grid": [grid, grid],
            "context_length": 77,
            "space": "joint",
            "global_space": "joint",
        },
        [f"img{i:06d}" for i in range(n)],
        patches,
        image_global,
        [CAPTION] * n_texts,
        toks,
        text_global,
        text_image,
        [-1] * n_texts,
        token_strings=[pieces] * n_texts,
    )
    print(f"  done in {time.perf_counter() - t0:.1f} s, {path.stat().st_size / 2**30:.2f} GiB", flush=True)
    return path


def timed(fn, queries: np.ndarray, warmup: int = 2) -> list[float]:
    for q in queries[:warmup]:
        fn(q)
    out = []
    for q in queries:
        t0 = time.perf_counter()
        fn(q)
        out.append(1000 * (time.perf_counter() - t0))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache", default="/tmp/tflocal_rerank_100k_v2.h5")
    p.add_argument("--images", type=int, default=100_000)
    p.add_argument("--grid", type=int, default=7, help="patch grid side (7 -> 49 patches, as ViT-B/32)")
    p.add_argument("--dim", type=int, default=64, help="token / global dimension of the synthetic cache")
    p.add_argument("--tokens", type=int, default=12, help="caption tokens")
    p.add_argument("--queries", type=int, default=30)
    p.add_argument("--k-rerank", type=int, default=100, dest="k_rerank")
    p.add_argument("--width", type=int, default=512, help="TFLocal head width (default: ModelConfig's)")
    p.add_argument("--depth", type=int, default=4, help="TFLocal head layers")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--in-memory", action="store_true", help="load the cache payload into RAM first")
    args = p.parse_args()

    import torch

    from cache_tools.reader import open_cache
    from tflocal.models import ModelConfig, build_head
    from tflocal.retrieval import build_index, rerank, search
    from tflocal.scorers.head import HeadScorer, maxsim_scorer

    torch.set_num_threads(args.threads)
    path = Path(args.cache)
    if not path.is_file():
        make_cache(path, args.images, args.grid, args.dim, 2000, args.tokens)
    cache = open_cache(path)
    if args.in_memory:
        cache.load_into_memory()
    n = cache.n_images
    t0 = time.perf_counter()
    index = build_index(cache.image_global(np.arange(n)), "Flat")
    print(f"faiss Flat over {n:,} x {index.d}: built in {time.perf_counter() - t0:.2f} s")
    queries = np.random.default_rng(1).choice(cache.n_texts, args.queries, replace=False)
    qvec = cache.text_global(np.sort(queries))
    qpos = {int(t): i for i, t in enumerate(np.sort(queries))}

    def first(q: int) -> np.ndarray:
        return search(index, qvec[qpos[int(q)]][None], args.k_rerank)[1]

    head = build_head("tflocal", ModelConfig(width=args.width, depth=args.depth, heads=8), cache.attrs)
    seg_cfg = ModelConfig(width=args.width, depth=args.depth, heads=8, readout="segments")
    seg = build_head("tflocal", seg_cfg, cache.attrs)
    scorers = {
        "maxsim": maxsim_scorer(cache, device=args.device, batch_size=args.k_rerank, progress=False),
        f"tflocal (w{args.width}, d{args.depth})": HeadScorer(
            head, "tflocal", cache, device=args.device, batch_size=args.k_rerank, progress=False
        ),
        f"tflocal segments (w{args.width}, d{args.depth})": HeadScorer(
            seg, "tflocal", cache, device=args.device, batch_size=args.k_rerank, progress=False
        ),
    }
    first_name = f"first stage (faiss Flat, top {args.k_rerank})"
    results = {first_name: timed(first, queries)}
    for name, sc in scorers.items():
        results[f"first stage + {name} re-rank"] = timed(
            lambda q, sc=sc: rerank(sc, np.array([q]), first(q), "t2i"), queries
        )
    base = statistics.median(results[first_name])
    print(
        f"\n{n:,} images, {args.queries} queries one at a time, re-ranking the top {args.k_rerank}, "
        f"{args.threads} CPU threads, device {args.device}, payload {'in RAM' if args.in_memory else 'read from HDF5'}"
    )
    print(f"{'':48s} {'median ms':>10s} {'p90 ms':>9s} {'added ms':>9s}")
    for name, ts in results.items():
        med = statistics.median(ts)
        p90 = float(np.percentile(ts, 90))
        added = "" if name.startswith("first stage (") else f"{med - base:9.1f}"
        print(f"{name:48s} {med:10.1f} {p90:9.1f} {added:>9s}")
    cache.close()


if __name__ == "__main__":
    main()
