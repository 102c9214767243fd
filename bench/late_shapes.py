"""ShapesWorld text -> image retrieval over test_ood: a global first stage versus the
late-interaction first stage, with the quickstart's trained heads (frozen EfficientNet-Lite0 +
MiniLM towers: no cosine, the global head is the learned dual-encoder baseline).

Corpus: the test_ood images of a quickstart test cache (copied to a cache of their own under
``--work``). Queries: their positive captions. Rankings compared:

* ``global``: the global head's score over all images (what its first stage ranks);
* ``global top K + segments``: the global head's top ``--k-rerank`` re-ranked by the segments head;
* ``late + segments``: the late-interaction first stage of the segments head's index
  (:mod:`tflocal.retrieval`), scored exactly by the head;
* ``segments exhaustive``: the segments head over every image (the reference).

R@k counts a query as found when its own image is among the first k (``own``) and, since a
ShapesWorld caption can be true of other images too, when any image whose scene graph
satisfies the caption is (``any true``; :func:`tflocal.shapesworld.truth.caption_true_for_scene`).
"Unreachable" queries have their own image outside the global top K: no re-ranking can find it.
The last line is a JSON object of the figures.

    python bench/late_shapes.py --run runs/quickstart
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def ood_cache(src, out: Path):
    """The test_ood images of ``src`` and their positive captions, as a cache of their own."""
    from cache_tools.store.reader import open_cache
    from cache_tools.write.arrays import write_arrays
    from tflocal.evaluate.common import image_meta_column

    if out.is_file():
        return open_cache(out)
    split = np.asarray([str(s) for s in image_meta_column(src, np.arange(src.n_images), "split", "")])
    img = np.flatnonzero(split == "test_ood")
    new = {int(i): j for j, i in enumerate(img)}
    txt = np.flatnonzero((src.positive_index == -1) & np.isin(src.image_index, img))
    write_arrays(
        out,
        dict(src.attrs),
        [str(src.image_ids[i]) for i in img],
        src.patches(img),
        src.image_global(img),
        [str(s) for s in src.strings[txt]],
        src.tokens(txt),
        src.text_global(txt),
        [new[int(i)] for i in src.image_index[txt]],
        [-1] * txt.size,
        image_meta=[src.image_meta(int(i)) for i in img],
        token_strings=src.token_strings_batch(txt),
    )
    return open_cache(out)


def recall(ranked: np.ndarray, relevant: list[set[int]], ks=(1, 5, 10)) -> dict[str, float]:
    return {
        f"R@{k}": float(np.mean([bool(set(r[:k].tolist()) & rel) for r, rel in zip(ranked, relevant)]))
        for k in ks
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", default="runs/quickstart", help="a quickstart output folder (read only)")
    p.add_argument("--work", default="/tmp/tflocal_late_shapes", help="where the sub-cache and index go")
    p.add_argument("--k-rerank", type=int, default=20, dest="k_rerank")
    p.add_argument("--nprobe", type=int, default=8)
    p.add_argument("--candidates", type=int, default=50)
    p.add_argument("--centroids", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()

    import torch

    from cache_tools.store.reader import open_cache
    from tflocal.retrieval import LateIndex, build_late_index
    from tflocal.scoring.load import load_scorer
    from tflocal.shapesworld.captions import from_text
    from tflocal.shapesworld.truth import caption_true_for_scene

    torch.set_num_threads(args.threads)
    run, work = Path(args.run), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    with open_cache(run / "caches" / "test.h5") as src:
        cache = ood_cache(src, work / "test_ood.h5")
    n, Q = cache.n_images, cache.n_texts
    seg = load_scorer(str(run / "runs" / "tflocal" / "best.pt"), cache, progress=False)
    glob = load_scorer(str(run / "runs" / "global" / "best.pt"), cache, progress=False)
    t0 = time.perf_counter()
    store = build_late_index(
        cache,
        seg.head,
        work / "segments.index",
        n_centroids=args.centroids,
        name=seg.name,
        checkpoint=seg.checkpoint,
        progress=False,
    )
    t_build = time.perf_counter() - t0
    late = LateIndex(store, seg, nprobe=args.nprobe, n_candidates=args.candidates)

    own = [{int(i)} for i in cache.image_index]
    scenes = [cache.image_meta(i)["scene"] for i in range(n)]
    true = []
    for t in range(Q):
        struct = from_text(str(cache.strings[t]))
        true.append(
            {i for i in range(n) if struct is not None and caption_true_for_scene(struct, scenes[i])} | own[t]
        )

    g = glob.score_matrix(np.arange(n), np.arange(Q)).T  # [Q, n]
    g_rank = np.argsort(-g, axis=1, kind="stable")
    K = args.k_rerank
    rer, lat, exh, n_scored, t_late = [], [], [], [], []
    for t in range(Q):
        texts = late.cached_caption(t)
        cand = g_rank[t, :K]
        s = late.score(texts, cand)
        rer.append(np.r_[cand[np.argsort(-s, kind="stable")], g_rank[t, K:]])
        t1 = time.perf_counter()
        ids, _, m = late.search(texts, k=10)
        t_late.append(1000 * (time.perf_counter() - t1))
        lat.append(np.r_[ids, -np.ones(10 - ids.size, np.int64)])
        n_scored.append(m)
        exh.append(late.exhaustive(texts, k=10)[0])
    rankings = {
        "global": g_rank[:, :10],
        f"global top {K} + segments": np.stack(rer)[:, :10],
        "late + segments": np.stack(lat),
        "segments exhaustive": np.stack(exh),
    }
    unreachable = np.array([cache.image_index[t] not in set(g_rank[t, :K].tolist()) for t in range(Q)])
    late_found = np.array([cache.image_index[t] in set(lat[t].tolist()) for t in range(Q)])
    late_vs_exh = float(np.mean([len(set(a.tolist()) & set(b.tolist())) / 10 for a, b in zip(lat, exh)]))

    print(
        f"ShapesWorld test_ood: {n} images, {Q} positive captions as queries; index {store.meta['dim']}-d "
        f"x {store.meta['n_patches']} per image, built in {t_build:.1f} s, "
        f"{store.bytes_per_image():,.0f} bytes/image"
    )
    print(
        f"{'':28s} {'own R@1':>8s} {'R@5':>6s} {'R@10':>6s}   {'any true R@1':>12s} {'R@5':>6s} {'R@10':>6s}"
    )
    out = {"images": n, "queries": Q, "k_rerank": K}
    for name, r in rankings.items():
        a, b = recall(r, own), recall(r, true)
        print(
            f"{name:28s} {a['R@1']:8.3f} {a['R@5']:6.3f} {a['R@10']:6.3f}   {b['R@1']:12.3f} {b['R@5']:6.3f} {b['R@10']:6.3f}"
        )
        key = name.replace(" ", "_").replace("+", "plus")
        out.update({f"{key}_own_{k}": round(v, 4) for k, v in a.items()})
        out.update({f"{key}_any_true_{k}": round(v, 4) for k, v in b.items()})
    print(
        f"own image outside the global top {K} (unreachable by re-ranking): "
        f"{unreachable.sum()} of {Q} queries; "
        f"the late first stage puts {int((unreachable & late_found).sum())} of them in its top 10"
    )
    print(
        f"late first stage: recall@10 vs exhaustive {late_vs_exh:.3f}, {np.mean(n_scored):.0f} images scored "
        f"exactly, {np.median(t_late):.1f} ms/query median"
    )
    out.update(
        unreachable_by_global=int(unreachable.sum()),
        unreachable_found_by_late_top10=int((unreachable & late_found).sum()),
        late_recall10_vs_exhaustive=round(late_vs_exh, 4),
        late_images_scored=float(np.mean(n_scored)),
        late_ms_median=round(float(np.median(t_late)), 2),
        index_bytes_per_image=round(store.bytes_per_image(), 1),
    )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
