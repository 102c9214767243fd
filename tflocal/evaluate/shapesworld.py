"""ShapesWorld: accuracy (positive strictly above its negative) per test split, operator, kind
and composition depth.

Subsets are named ``<split>/all``, ``<split>/<op>``, ``<split>/<op>/<kind>`` and
``<split>/depth<d>`` (e.g. ``test_ood/swap/attribute``, ``test_ood/depth2``, ``test_id/all``);
the split is the image meta ``split`` (``test_id`` / ``test_ood``; other splits are ignored when
those exist), the depth the negative's text meta ``depth`` (number of operators applied).
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

TEST_SPLITS = ("test_id", "test_ood")


def shapes_metric(
    pos: np.ndarray,
    neg: np.ndarray,
    splits: list[str],
    ops: list[str],
    kinds: list[str],
    depths: list[int | None],
) -> dict[str, tuple[float, int]]:
    """All arrays [N] -> {subset: (accuracy, n)} with the subset names of the module docstring."""
    correct = pair_correct(pos, neg)
    splits_a = np.asarray(splits, dtype=object).astype(str)
    ops_a = np.asarray(ops, dtype=object).astype(str)
    kinds_a = np.asarray(kinds, dtype=object).astype(str)
    depth_a = np.asarray([-1 if d is None else int(d) for d in depths])
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
    return out


def evaluate_shapesworld(cache: Any, scorer: Any, benchmark: str = "shapesworld") -> list[Row]:
    ctx = context(benchmark, cache, scorer)
    image, pos, neg = negative_pairs(cache)
    splits = np.asarray([str(s or "") for s in image_meta_column(cache, image, "split", "")], dtype=object)
    if any(s in TEST_SPLITS for s in splits):
        keep = np.isin(splits.astype(str), TEST_SPLITS)
        image, pos, neg, splits = image[keep], pos[keep], neg[keep], splits[keep]
    depths = text_meta_column(cache, neg, "depth", None)
    s_pos, s_neg = score_pairs_of(scorer, image, pos, neg)
    res = shapes_metric(
        s_pos, s_neg, list(splits), [str(o) for o in cache.op[neg]], [str(k) for k in cache.kind[neg]], depths
    )
    return [ctx.row(k, "accuracy", *v) for k, v in res.items()]
