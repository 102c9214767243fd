"""ShapesWorld: accuracy (positive strictly above its negative) per test split, operator, kind
and composition depth.

Subsets are named ``<split>/all``, ``<split>/<op>``, ``<split>/<op>/<kind>`` and
``<split>/depth<d>`` (e.g. ``test_ood/swap/attribute``, ``test_ood/depth2``, ``test_id/all``),
``<split>/chain/<chain>`` (the operators applied, in order: ``test_ood/chain/replace>swap``; a
chain's depth is its length; from the negative's text meta ``chain``, absent in caches made
before negatives recorded it, and then no chain rows),
plus ``<split>/ordinary``: a caption against the caption of another image of the same split
(the ordinary pairs a global-cosine model already gets right);
the split is the image meta ``split`` (``test_id`` / ``test_ood`` / ``test_novel``; other splits
are ignored when those exist), the depth the negative's text meta ``depth`` (number of operators applied).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tflocal.evaluate.common import (
    context,
    image_meta_column,
    negative_pairs,
    score_pairs_of,
    text_meta_column,
)
from tflocal.evaluate.metrics import mean, pair_correct
from tflocal.evaluate.report import Row

TEST_SPLITS = ("test_id", "test_ood", "test_novel")


def shapes_metric(
    pos: np.ndarray,
    neg: np.ndarray,
    splits: list[str],
    ops: list[str],
    kinds: list[str],
    depths: list[int | None],
    chains: list[str | None] | None = None,
) -> dict[str, tuple[float, int]]:
    """All arrays [N] -> {subset: (accuracy, n)} with the subset names of the module docstring;
    ``chains`` [N] (None, or None/"" entries: no chain rows for those pairs)."""
    correct = pair_correct(pos, neg)
    splits_a = np.asarray(splits, dtype=object).astype(str)
    ops_a = np.asarray(ops, dtype=object).astype(str)
    kinds_a = np.asarray(kinds, dtype=object).astype(str)
    depth_a = np.asarray([-1 if d is None else int(d) for d in depths])
    chain_a = np.asarray([str(c or "") for c in (chains if chains is not None else [""] * len(depth_a))])
    out: dict[str, tuple[float, int]] = {}

    def put(name: str, m: np.ndarray) -> None:
        if m.any():
            out[name] = (mean(correct[m]), int(m.sum()))

    for sp in sorted(set(splits_a.tolist())):
        ms = splits_a == sp
        put(f"{sp}/all", ms)
        for op in sorted(set(ops_a[ms].tolist())):
            mo = ms & (ops_a == op)
            put(f"{sp}/{op or 'none'}", mo)
            for kind in sorted(set(kinds_a[mo].tolist())):
                if kind:
                    put(f"{sp}/{op or 'none'}/{kind}", mo & (kinds_a == kind))
        for d in sorted(set(depth_a[ms].tolist())):
            if d >= 0:
                put(f"{sp}/depth{d}", ms & (depth_a == d))
        for c in sorted(set(chain_a[ms].tolist())):
            if c:
                put(f"{sp}/chain/{c}", ms & (chain_a == c))
    return out


def ordinary_pairs(
    cache: Any, splits_of_image: dict[int, str], seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For each positive caption of an image in ``splits_of_image``, the first positive caption of
    another image of the same split (a seeded derangement). Returns (image, pos, other, split) [N]."""
    rng = np.random.default_rng(seed)
    pos = np.flatnonzero((cache.positive_index < 0) & (cache.image_index >= 0))
    pos = pos[np.isin(cache.image_index[pos], list(splits_of_image))]
    out = [], [], [], []
    for sp in sorted(set(splits_of_image.values())):
        t = pos[[splits_of_image[int(i)] == sp for i in cache.image_index[pos]]]
        imgs = np.unique(cache.image_index[t])
        if len(imgs) < 2:
            continue
        first = {int(i): int(t[cache.image_index[t] == i][0]) for i in imgs}
        shift = rng.permutation(len(imgs))
        other_img = {int(a): int(imgs[shift[(k + 1) % len(imgs)]]) for k, a in enumerate(imgs[shift])}
        for tt in t:
            i = int(cache.image_index[tt])
            out[0].append(i)
            out[1].append(int(tt))
            out[2].append(first[other_img[i]])
            out[3].append(sp)
    return tuple(np.asarray(x) for x in out)  # type: ignore[return-value]


def evaluate_shapesworld(cache: Any, scorer: Any, benchmark: str = "shapesworld") -> list[Row]:
    ctx = context(benchmark, cache, scorer)
    image, pos, neg = negative_pairs(cache)
    splits = np.asarray([str(s or "") for s in image_meta_column(cache, image, "split", "")], dtype=object)
    if any(s in TEST_SPLITS for s in splits):
        keep = np.isin(splits.astype(str), TEST_SPLITS)
        image, pos, neg, splits = image[keep], pos[keep], neg[keep], splits[keep]
    depths = text_meta_column(cache, neg, "depth", None)
    chains = text_meta_column(cache, neg, "chain", None)
    s_pos, s_neg = score_pairs_of(scorer, image, pos, neg)
    res = shapes_metric(
        s_pos,
        s_neg,
        list(splits),
        [str(o) for o in cache.op[neg]],
        [str(k) for k in cache.kind[neg]],
        depths,
        chains,
    )
    all_splits = [str(sp or "") for sp in image_meta_column(cache, np.arange(cache.n_images), "split", "")]
    use = set(TEST_SPLITS) if any(sp in TEST_SPLITS for sp in all_splits) else set(all_splits)
    wanted = {i: sp for i, sp in enumerate(all_splits) if sp in use}
    o_img, o_pos, o_other, o_split = ordinary_pairs(cache, wanted)
    if len(o_img):
        o_s_pos, o_s_other = score_pairs_of(scorer, o_img, o_pos, o_other)
        correct = pair_correct(o_s_pos, o_s_other)
        for sp in sorted(set(o_split.tolist())):
            m = o_split == sp
            res[f"{sp}/ordinary"] = (mean(correct[m]), int(m.sum()))
    return [ctx.row(k, "accuracy", *v) for k, v in res.items()]
