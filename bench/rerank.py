"""Retrieval latency over 100,000 images, side by side in one run: the faiss first stage,
re-ranking its top 100 (MaxSim, the joint TFLocal head, the ``segments`` read-out; image
vectors recomputed per query or read from a :mod:`tflocal.retrieval`), and the late-interaction
first stage over the whole corpus with its recall@10 against exhaustive scoring by the same head.
Rows marked bf16 run the scorer's bf16 copy of the head under autocast (``tflocal search
--precision bf16``; recall of the bf16 late stage is against the fp32 head's exhaustive top 10).
Rows marked "dual global" use heads with the separable global path (``model.global_form:
dual``), whose image side is stored beside the region vectors.

A synthetic joint-space cache (``--cache``, written once and reused) of 100,000 images x 7x7
patches x 64 dims and 2,000 captions of 12 tokens. It has structure, as real embeddings do:
every image holds 4 objects (instances of 1,000 concept prototypes, 3 patches each) on
background prototypes; each of a caption's 12 tokens is a noisy copy of one of its image's 4
objects (3 tokens per object: contextualized tokens carry content), those of the two parsed
phrases copying objects 1 and 2; globals are mean patches plus noise. Every caption parses as
"a small red circle is left of a blue square" (2 objects, 1 relation). (With tokens that match
no object, e.g. function words of random direction, the scores of an image's nearest rivals
would be near-ties decided by noise, and the late stage's recall@10 would measure that noise
rather than the index.)

Heads have random weights (latency does not depend on them), except that the indexed
``segments`` head's text tower is a copy of its image tower, so phrases and regions share a
space as after training (recall needs that). Image-side indexes are built once per head
(``--index-dir``, reused: the index refuses another head). Queries run one at a time after
warm-up; re-ranking reads candidates from the HDF5 cache or the index's memory-mapped files
(page cache); the w512 d4 ``segments`` head, too slow to index 100,000 images on CPUs, gets its
candidates' image vectors computed before timing (fp16, as an index stores them). The last line
is a JSON object of the figures.

    python bench/rerank.py                       # the full run (builds cache + indexes once)
    python bench/rerank.py --images 20000 --queries 10 --cache /tmp/r20k.h5 --index-dir /tmp/r20k_idx
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CAPTION = "a small red circle is left of a blue square"
WORDS = ["[CLS]", *CAPTION.split(), "[SEP]"]
OBJECT_TOKENS = {1: (2, 3, 4), 2: (9, 10, 11), 3: (0, 1, 5), 4: (6, 7, 8)}
"""Token positions copying each object: 1 = "a small red circle", 2 = "a blue square" (parsed)."""


def make_cache(path: Path, n: int, grid: int, dim: int, n_texts: int, seed: int = 0) -> Path:
    from cache_tools.write.arrays import write_arrays

    rng = np.random.default_rng(seed)
    P, t0 = grid * grid, time.perf_counter()
    print(f"writing synthetic cache {path}: {n:,} images x {P} patches x {dim} (float16) ...", flush=True)
    concepts = rng.standard_normal((1000, dim), dtype=np.float32)
    background = rng.standard_normal((50, dim), dtype=np.float32)
    patches = np.empty((n, P, dim), np.float16)
    objects = np.empty((n, 4, dim), np.float32)
    for s in range(0, n, 10000):
        b = min(10000, n - s)
        x = background[rng.integers(0, 50, (b, P))] + 0.5 * rng.standard_normal((b, P, dim), dtype=np.float32)
        inst = concepts[rng.integers(0, 1000, (b, 4))] + 0.5 * rng.standard_normal(
            (b, 4, dim), dtype=np.float32
        )
        where = np.argsort(rng.random((b, P)), axis=1)[:, :12].reshape(b, 4, 3)
        for o in range(4):
            for j in range(3):
                x[np.arange(b), where[:, o, j]] = inst[:, o] + 0.3 * rng.standard_normal(
                    (b, dim), dtype=np.float32
                )
        patches[s : s + b], objects[s : s + b] = x, inst
    image_global = patches.astype(np.float32).mean(1) + 0.3 * rng.standard_normal((n, dim), dtype=np.float32)
    text_image = rng.integers(0, n, n_texts)
    toks = []
    for t in range(n_texts):
        x = np.empty((len(WORDS), dim), np.float32)
        for o, pos in OBJECT_TOKENS.items():
            x[list(pos)] = objects[text_image[t], o - 1] + 0.3 * rng.standard_normal(
                (3, dim), dtype=np.float32
            )
        toks.append(x)
    text_global = image_global[text_image] + rng.standard_normal((n_texts, dim), dtype=np.float32)
    attrs = {"encoder": "synthetic:bench", "grid": [grid, grid], "context_length": 77}
    attrs.update(space="joint", global_space="joint")
    write_arrays(
        path,
        attrs,
        [f"img{i:06d}" for i in range(n)],
        patches,
        image_global,
        [CAPTION] * n_texts,
        toks,
        text_global,
        text_image,
        [-1] * n_texts,
        token_strings=[WORDS] * n_texts,
    )
    print(f"  done in {time.perf_counter() - t0:.1f} s, {path.stat().st_size / 2**30:.2f} GiB", flush=True)
    return path


def timed(fn, queries, warmup: int = 2) -> list[float]:
    """Per-query ms of ``fn`` over ``queries`` after ``warmup`` untimed calls. (Not a full
    untimed pass over every query: that leaves faiss Flat's data warm in the CPU cache, and the
    first stage's cache state moves the ratios as much as the code does.)"""
    for q in queries[:warmup]:
        fn(q)
    out = []
    for q in queries:
        t0 = time.perf_counter()
        fn(q)
        out.append(1000 * (time.perf_counter() - t0))
    return out


def aligned(seg):
    """``seg`` with its text tower a copy of its image tower (phrases and regions in one space)."""
    import torch

    out = copy.deepcopy(seg)
    with torch.no_grad():
        out.token_in.load_state_dict(seg.patch_in.state_dict())
        out.text_out.load_state_dict(seg.image_out.state_dict())
        for a, b in zip(out.text_blocks, seg.image_blocks):
            a.load_state_dict(b.state_dict())
    return out


def get_index(cache, head, folder: Path, storage: str, centroids: int, name: str, device: str = "cpu"):
    """The head's index in ``folder``, built when missing or built by another head; its scorer
    (and the head, moved there) on ``device``."""
    from tflocal.errors import UserError
    from tflocal.retrieval import LateIndex, VectorStore, build_late_index
    from tflocal.scoring.head import HeadScorer

    scorer = HeadScorer(head, name, cache, batch_size=256, device=device, progress=False)
    try:
        return LateIndex(VectorStore(folder), scorer)
    except UserError:
        t0 = time.perf_counter()
        print(f"building index {folder} ({name}, {storage}) ...", flush=True)
        store = build_late_index(
            cache, head, folder, storage=storage, n_centroids=centroids, name=name, device=device
        )
        print(f"  built in {time.perf_counter() - t0:.0f} s ({store.meta})", flush=True)
        return LateIndex(store, scorer)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache", default="/tmp/tflocal_rerank_100k_v4.h5")
    p.add_argument("--index-dir", default="/tmp/tflocal_rerank_100k_v4_index", dest="index_dir")
    p.add_argument("--images", type=int, default=100_000)
    p.add_argument("--grid", type=int, default=7, help="patch grid side (7 -> 49 patches, as ViT-B/32)")
    p.add_argument("--dim", type=int, default=64, help="token / global dimension of the synthetic cache")
    p.add_argument("--queries", type=int, default=30)
    p.add_argument(
        "--slow-queries", type=int, default=8, dest="slow_queries", help="for per-query recompute rows"
    )
    p.add_argument("--k-rerank", type=int, default=100, dest="k_rerank")
    p.add_argument("--width", type=int, default=512, help="TFLocal head width")
    p.add_argument("--depth", type=int, default=4, help="TFLocal head layers")
    p.add_argument("--index-width", type=int, default=128, dest="index_width", help="indexed segments head")
    p.add_argument("--index-depth", type=int, default=2, dest="index_depth")
    p.add_argument("--centroids", type=int, default=4096)
    p.add_argument("--nprobe", type=int, default=4)
    p.add_argument(
        "--refine", type=int, default=4, help="late stage: refine x candidates get the centroid interaction"
    )
    p.add_argument("--candidates", type=int, default=512, help="late stage: images scored exactly (maxsim)")
    p.add_argument("--seg-candidates", type=int, default=1024, dest="seg_candidates")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--in-memory", action="store_true", help="load the cache payload into RAM first")
    args = p.parse_args()

    import torch

    from cache_tools.infra.precision import get_autocast
    from cache_tools.store.reader import open_cache
    from tflocal.models import ModelConfig, build_head
    from tflocal.retrieval import LateIndex
    from tflocal.retrieval.first_stage import build_faiss_index, rerank, search
    from tflocal.scoring.head import HeadScorer, low_precision_copy, maxsim_scorer

    torch.set_num_threads(args.threads)
    path = Path(args.cache)
    if not path.is_file():
        make_cache(path, args.images, args.grid, args.dim, 2000)
    cache = open_cache(path)
    if args.in_memory:
        cache.load_into_memory()
    n = cache.n_images
    index = build_faiss_index(cache.image_global(np.arange(n)), "Flat")
    queries = np.random.default_rng(1).choice(cache.n_texts, args.queries, replace=False)
    qvec = {int(t): cache.text_global(np.array([t])) for t in queries}

    def first(q: int) -> np.ndarray:
        return search(index, qvec[int(q)], args.k_rerank)[1]

    kw = dict(device=args.device, batch_size=args.k_rerank, progress=False)
    torch.manual_seed(0)
    big = dict(width=args.width, depth=args.depth, heads=8)
    joint = build_head("tflocal", ModelConfig(**big, readout="summary"), cache.attrs).eval()
    seg_big = build_head("tflocal", ModelConfig(**big, readout="segments"), cache.attrs).eval()
    small = dict(width=args.index_width, depth=args.index_depth, heads=4, readout="segments")
    seg = aligned(build_head("tflocal", ModelConfig(**small), cache.attrs).eval())
    # the same read-outs with the separable global path (model.global_form: dual), whose image
    # side an index stores: exact scoring then runs no per-pair MLP (own seed: the heads above
    # keep their weights, and their indexes stay valid)
    torch.manual_seed(1)
    seg_dual = build_head("tflocal", ModelConfig(**big, readout="segments", global_form="dual"), cache.attrs)
    seg_dual = seg_dual.eval()
    seg_small_dual = aligned(
        build_head("tflocal", ModelConfig(**small, global_form="dual"), cache.attrs).eval()
    )
    ms = maxsim_scorer(cache, **kw)
    d_idx = Path(args.index_dir)
    dev = args.device
    late_ms = get_index(cache, ms.head, d_idx / "maxsim_f16", "float16", args.centroids, "maxsim", dev)
    late_ms_res = get_index(cache, ms.head, d_idx / "maxsim_res2", "residual", args.centroids, "maxsim", dev)
    late_seg = get_index(
        cache,
        seg,
        d_idx / f"seg_w{args.index_width}d{args.index_depth}",
        "float16",
        args.centroids,
        "seg",
        dev,
    )
    late_seg_dual = get_index(
        cache,
        seg_small_dual,
        d_idx / f"seg_w{args.index_width}d{args.index_depth}_dual",
        "float16",
        args.centroids,
        "seg-dual",
        dev,
    )
    full_text = {int(t): late_seg.cached_caption(int(t)).to(args.device) for t in queries}

    def stored_rerank(late):
        def fn(q):
            cand = first(q)[0]
            s = late.score(late.cached_caption(int(q)), cand)  # the caption read + parsed, as rerank() does
            return cand[np.argsort(-s, kind="stable")]

        return fn

    def joint_rerank(sc):
        def fn(q):
            if args.device.startswith("cuda"):
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    return rerank(sc, np.array([q]), first(q), "t2i")
            return rerank(sc, np.array([q]), first(q), "t2i")

        return fn

    globals_ = torch.from_numpy(cache.image_global(np.arange(n)))  # in RAM, as LateIndex holds them

    given_cache: dict = {}

    def given_rerank(head, qs, precision="fp32"):
        """Re-rank with the head's image vectors of each query's candidates computed beforehand
        (float16, as an index stores them; indexing a w512 d4 head over 100k images is too slow
        on CPUs, and reading the stored rows would add only page-cache reads), and the
        image side of a separable global path too: the caption read + parsed, its text tower
        once, the interaction with the candidates. bf16 runs the scorer's bf16 copy of the head
        under autocast, as ``--precision bf16`` does."""
        from tflocal.pairs.assemble import ImageSide, texts_from_cache
        from tflocal.retrieval.head_sides import score_stored, separable_global, text_needs

        glob = separable_global(head)
        given = given_cache.setdefault(id(head), {})
        with torch.inference_mode():
            for q in qs:
                if int(q) in given:
                    continue
                cand = first(q)[0]
                p = torch.from_numpy(np.ascontiguousarray(cache.patches(cand))).to(args.device)
                mask = torch.ones(p.shape[:2], dtype=torch.bool, device=p.device)
                g = None
                if glob is not None:
                    g = glob.encode_image_global(globals_[torch.from_numpy(cand)].to(args.device)).half()
                given[int(q)] = (head.encode_image(p, mask).half(), g)
        run = low_precision_copy(head, precision, args.device)

        def fn(q):
            cand = first(q)[0]
            texts = texts_from_cache(cache, np.array([q]), text_needs(head)).to(args.device)
            idx = torch.arange(cand.size, device=args.device)
            vectors, g = given[int(q)]
            with torch.inference_mode(), get_autocast(precision, args.device):
                images = (
                    ImageSide()
                    if g is not None
                    else ImageSide(image_global=globals_[torch.from_numpy(cand)]).to(args.device)
                )
                s = score_stored(run, vectors, texts, idx, torch.zeros_like(idx), images, None, g)
                s = s.float().cpu().numpy()
            return cand[np.argsort(-s, kind="stable")]

        return fn

    wide, narrow = f"w{args.width} d{args.depth}", f"w{args.index_width} d{args.index_depth}"
    slow = queries[: args.slow_queries]
    first_name = f"first stage (faiss Flat, top {args.k_rerank})"
    rows = {first_name: timed(first, queries)}
    rows["+ maxsim re-rank, patches from HDF5"] = timed(
        lambda q: rerank(ms, np.array([q]), first(q)), queries
    )
    rows["+ maxsim re-rank, stored vectors (fp16)"] = timed(stored_rerank(late_ms), queries)
    rows[f"+ joint TFLocal ({wide}) re-rank, {args.device}"] = timed(
        joint_rerank(HeadScorer(joint, "j", cache, **kw)), slow
    )
    if not args.device.startswith("cuda"):  # on a GPU the row above already runs under bf16 autocast
        rows[f"+ joint TFLocal ({wide}) re-rank, {args.device}, bf16"] = timed(
            joint_rerank(HeadScorer(joint, "j", cache, precision="bf16", **kw)), slow
        )
    rows[f"+ segments ({wide}) re-rank, towers recomputed"] = timed(
        joint_rerank(HeadScorer(seg_big, "s", cache, **kw)), slow
    )
    with torch.inference_mode():
        rows[f"  segments ({wide}) text side alone"] = timed(
            lambda q: seg_big.encode_text(full_text[int(q)].tokens, full_text[int(q)].token_mask), queries
        )
        seg_bf16 = low_precision_copy(seg_big, "bf16", args.device)
        with get_autocast("bf16", args.device):
            rows[f"  segments ({wide}) text side alone, bf16"] = timed(
                lambda q: seg_bf16.encode_text(full_text[int(q)].tokens, full_text[int(q)].token_mask),
                queries,
            )
    for head, label in ((seg_big, "mlp"), (seg_dual, "dual")):
        for prec in ("fp32", "bf16"):
            rows[f"+ segments ({wide}, {label} global) re-rank, image vectors given, {prec}"] = timed(
                given_rerank(head, queries, prec), queries
            )
    rows[f"+ segments ({narrow}) re-rank, towers recomputed"] = timed(
        joint_rerank(HeadScorer(seg, "s", cache, **kw)), queries
    )
    rows[f"+ segments ({narrow}) re-rank, stored vectors (fp16)"] = timed(stored_rerank(late_seg), queries)
    # the same index, the head under bf16 autocast (``--precision bf16`` of tflocal search)
    late_seg_bf16 = LateIndex(late_seg.store, HeadScorer(seg, "seg", cache, precision="bf16", **kw))
    rows[f"+ segments ({narrow}) re-rank, stored vectors (fp16), head in bf16"] = timed(
        stored_rerank(late_seg_bf16), queries
    )
    rows[f"+ segments ({narrow}, dual global) re-rank, stored vectors (fp16)"] = timed(
        stored_rerank(late_seg_dual), queries
    )

    recall, n_scored = {}, {}
    for key, late, n_cand in (
        ("maxsim", late_ms, args.candidates),
        ("maxsim_residual2", late_ms_res, args.candidates),
        (f"segments_{narrow.replace(' ', '')}", late_seg, args.seg_candidates),
        (f"segments_{narrow.replace(' ', '')}_bf16", late_seg_bf16, args.seg_candidates),
        (f"segments_{narrow.replace(' ', '')}_dual", late_seg_dual, args.seg_candidates),
    ):
        late.nprobe, late.n_candidates, late.refine = args.nprobe, n_cand, args.refine
        rows[f"late first stage, {key}, top 10"] = timed(
            lambda q, late=late: late.search(late.cached_caption(int(q)), k=10), queries
        )
        hits, ns = [], []
        # exhaustive scores from exact (fp16) vectors with the fp32 head
        truth = {"maxsim_residual2": late_ms, f"segments_{narrow.replace(' ', '')}_bf16": late_seg}.get(
            key, late
        )
        for q in queries[: min(len(queries), 20)]:
            want, _ = truth.exhaustive(truth.cached_caption(int(q)), k=10)
            got, _, k_scored = late.search(late.cached_caption(int(q)), k=10)
            hits.append(len(set(got.tolist()) & set(want.tolist())) / 10)
            ns.append(k_scored)
        recall[key], n_scored[key] = float(np.mean(hits)), float(np.mean(ns))

    # the first stage again at the end: the ratios' denominator is the median of both passes, so
    # a drift of the machine over the run moves it less (faiss's scan swings most with load)
    rows[first_name] += timed(first, queries)
    base = statistics.median(rows[first_name])
    print(
        f"\n{n:,} images, {args.queries} queries one at a time ({args.slow_queries} for per-query towers), "
        f"top {args.k_rerank}, {args.threads} CPU threads, device {args.device}"
    )
    print(f"{'':62s} {'median ms':>9s} {'p90 ms':>8s} {'added ms':>9s} {'x first':>8s}")
    med = {}
    for name, ts in rows.items():
        med[name] = m = statistics.median(ts)
        added = m - base if name.startswith("+") else m
        print(f"{name:62s} {m:9.2f} {np.percentile(ts, 90):8.2f} {added:9.2f} {added / base:8.2f}")
    for key in recall:
        print(
            f"late first stage {key}: recall@10 vs exhaustive {recall[key]:.3f}, {n_scored[key]:.0f} images scored exactly"
        )
    sizes = {
        "maxsim": late_ms,
        "maxsim_residual2": late_ms_res,
        f"segments_{narrow.replace(' ', '')}": late_seg,
        f"segments_{narrow.replace(' ', '')}_bf16": late_seg_bf16,
        f"segments_{narrow.replace(' ', '')}_dual": late_seg_dual,
    }
    for key, late in sizes.items():
        print(
            f"index {key}: {late.store.bytes_per_image():,.0f} bytes/image ({late.store.meta['dim']}-d, {late.store.meta['storage']})"
        )

    def added(name: str) -> float:
        return med[name] - base

    out = {
        "images": n,
        "k_rerank": args.k_rerank,
        "threads": args.threads,
        "device": args.device,
        "first_stage_ms": round(base, 3),
    }
    for name in rows:
        if name == first_name:
            continue
        key = name.strip("+ ").replace(" ", "_").replace(",", "").replace("(", "").replace(")", "")
        value = added(name) if name.startswith("+") else med[name]
        out[f"{key}_ms"] = round(value, 3)
        out[f"{key}_ratio_to_first_stage"] = round(value / base, 3)
    for key in recall:
        out[f"late_{key}_recall@10_vs_exhaustive"] = round(recall[key], 4)
        out[f"late_{key}_images_scored_exactly"] = n_scored[key]
        out[f"index_{key}_bytes_per_image"] = round(sizes[key].store.bytes_per_image(), 1)
    out["gpu_joint_ms"] = (
        None
        if not args.device.startswith("cuda")
        else out.get(f"joint_TFLocal_{wide.replace(' ', '_')}_re-rank_{args.device}_ms")
    )
    cache.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
