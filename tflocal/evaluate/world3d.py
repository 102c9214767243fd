"""The controlled 3D world: ShapesWorld's accuracy against text negatives, plus minimal pairs
scored as Winoground.

Text negatives: exactly :func:`tflocal.evaluate.shapesworld.evaluate_shapesworld`'s rows
(``<split>/all``, ``<split>/<op>``, ``<split>/<op>/<kind>``, ``<split>/depth<d>``,
``<split>/ordinary``; metric ``accuracy``).

Minimal pairs: two images of a test split share ``image_group`` (``<split>/pair<k>``), one with
image meta ``role`` = ``original`` (image 0) and one with ``role`` = ``negative`` (its twin,
image 1); caption k is the first caption of image k, and the two captions differ in one binding
(image meta ``category``: :data:`CATEGORIES`). With ``s(c, i)`` the score of caption c with
image i, as Winoground: text = s(c0,i0) > s(c1,i0) and s(c1,i1) > s(c0,i1); image = s(c0,i0) >
s(c0,i1) and s(c1,i1) > s(c1,i0); group = both. Rows ``<split>/groups`` (every pair),
``<split>/relation`` (the five relation categories together) and ``<split>/<category>``, each
with metrics ``text``, ``image`` and ``group``; n = the number of pairs. The split of a pair is
its original image's meta ``split``; as for the text negatives, only the test splits are
reported when the cache holds any. Rows come split by split (test_id, test_ood, test_novel,
then any other, sorted): the text-negative rows, then
``groups``, ``relation`` and the categories in :data:`CATEGORIES` order (a category ``depth``
is the in-front-of / behind relation; composition depths are ``depth<d>``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tflocal.evaluate.common import context, image_meta_column
from tflocal.evaluate.groups import group_items, score_groups
from tflocal.evaluate.metrics import mean, winoground_correct
from tflocal.evaluate.report import Row
from tflocal.evaluate.shapesworld import TEST_SPLITS, evaluate_shapesworld

ATTRIBUTE_CATEGORIES = ("color", "material", "size", "quantity")
"""Minimal pairs that change one attribute binding (or a count)."""
RELATION_CATEGORIES = ("plane", "depth", "support", "comparative", "equality")
"""Minimal pairs that change one relation: plane = left of / right of / above / below; depth =
in front of / behind; support = on top of; comparative = bigger / smaller than; equality = same
color as. Reported together as ``<split>/relation``."""
CATEGORIES = (*ATTRIBUTE_CATEGORIES, *RELATION_CATEGORIES)
GROUP_METRICS = ("text", "image", "group")


def minimal_pairs(cache: Any) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """The cache's minimal pairs -> (images [N, 2] rows (original, negative), captions [N, 2]
    text rows (caption k describes image k), splits [N], categories [N]); N = 0 when no image
    has a group. Pairs whose two images are not one ``original`` and one ``negative`` are skipped
    (named on stdout), and so are pairs outside the test splits when the cache holds any."""
    empty = np.zeros((0, 2), np.int64)
    if not any(str(g) for g in cache.image_group):
        return empty, empty, [], []
    images, captions, ids = group_items(cache)
    roles = [[str(cache.image_meta(int(i)).get("role", "")) for i in row] for row in images]
    ok = np.asarray([r == ["original", "negative"] for r in roles], dtype=bool)
    if not ok.all():
        bad = [g for g, good in zip(ids, ok) if not good]
        print(
            f"tflocal eval: {len(bad)} minimal pairs without one 'original' and one 'negative' image "
            f"skipped (e.g. {bad[0]!r})"
        )
    images, captions = images[ok], captions[ok]
    splits = [str(s or "") for s in image_meta_column(cache, images[:, 0], "split", "")]
    cats = [str(c or "") for c in image_meta_column(cache, images[:, 0], "category", "")]
    if any(s in TEST_SPLITS for s in splits):
        keep = np.asarray([s in TEST_SPLITS for s in splits], dtype=bool)
        images, captions = images[keep], captions[keep]
        splits = [s for s, k in zip(splits, keep) if k]
        cats = [c for c, k in zip(cats, keep) if k]
    return images, captions, splits, cats


def pair_metric(
    s: np.ndarray, splits: list[str], categories: list[str]
) -> dict[str, dict[str, tuple[float, int]]]:
    """s [N, 2, 2] (``s[n, c, i]`` = score of caption c with image i), splits [N], categories [N]
    -> {subset: {"text"|"image"|"group": (accuracy, n)}} with the subsets of the module docstring,
    split by split (sorted), each as ``groups``, ``relation``, then the categories."""
    correct = winoground_correct(s) if len(s) else {m: np.zeros(0, bool) for m in GROUP_METRICS}
    splits_a = np.asarray(splits, dtype=object).astype(str)
    cats_a = np.asarray(categories, dtype=object).astype(str)
    out: dict[str, dict[str, tuple[float, int]]] = {}

    def put(name: str, m: np.ndarray) -> None:
        if m.any():
            out[name] = {k: (mean(correct[k][m]), int(m.sum())) for k in GROUP_METRICS}

    for sp in sorted(set(splits_a.tolist())):
        ms = splits_a == sp
        put(f"{sp}/groups", ms)
        put(f"{sp}/relation", ms & np.isin(cats_a, RELATION_CATEGORIES))
        present = set(cats_a[ms].tolist())
        for cat in [*[c for c in CATEGORIES if c in present], *sorted(present - set(CATEGORIES) - {""})]:
            put(f"{sp}/{cat}", ms & (cats_a == cat))
    return out


def _split_of(subset: str) -> str:
    return subset.split("/", 1)[0]


def evaluate_world3d(cache: Any, scorer: Any, benchmark: str = "world3d") -> list[Row]:
    """Rows of the module docstring for ``scorer`` over a ``world3d:`` cache."""
    ctx = context(benchmark, cache, scorer)
    rows = evaluate_shapesworld(cache, scorer, benchmark=benchmark)
    images, captions, splits, cats = minimal_pairs(cache)
    if len(images):
        res = pair_metric(score_groups(scorer, images, captions), splits, cats)
        rows += [ctx.row(sub, m, *v[m]) for sub, v in res.items() for m in GROUP_METRICS]
    splits_seen = {_split_of(r.subset) for r in rows}
    ranked = dict.fromkeys([*[s for s in TEST_SPLITS if s in splits_seen], *sorted(splits_seen)])
    order = {sp: k for k, sp in enumerate(ranked)}
    return sorted(rows, key=lambda r: order[_split_of(r.subset)])  # stable: within a split, as made
