"""Winoground and BiVLC: 2 images x 2 captions per item; text, image and group scores.

Items are rebuilt from the cache: the two images of an item share ``image_group``; image 0 is
the one whose meta ``image`` is 0 (Winoground) or whose ``role`` is ``original`` (BiVLC); caption
k is the first positive text of image k. BiVLC also reports each score per item ``type`` (text
meta ``type``: replace / swap / add); Winoground per ``collapsed_tag`` (Object / Relation / Both,
as the paper's table does).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from tflocal.errors import UserError
from tflocal.evaluate.common import context
from tflocal.evaluate.metrics import mean, winoground_correct
from tflocal.evaluate.report import Row

ROLE_ORDER = {"original": 0, "positive": 0, "negative": 1, "negative_image": 1}


def _image_rank(meta: dict[str, Any]) -> int:
    if "image" in meta:
        return int(meta["image"])
    return ROLE_ORDER.get(str(meta.get("role", "")), 2)


def group_items(cache: Any) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """-> (images [N, 2], captions [N, 2] text rows, group ids [N]); caption k describes image k."""
    first_pos: dict[int, int] = {}
    for t in np.flatnonzero((cache.positive_index < 0) & (cache.image_index >= 0)):
        first_pos.setdefault(int(cache.image_index[t]), int(t))
    members: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(cache.image_group):
        if g:
            members[str(g)].append(i)
    images, captions, ids = [], [], []
    bad = []
    for g, imgs in members.items():
        if len(imgs) != 2 or any(i not in first_pos for i in imgs):
            bad.append(g)
            continue
        imgs = sorted(imgs, key=lambda i: _image_rank(cache.image_meta(i)))
        images.append(imgs)
        captions.append([first_pos[i] for i in imgs])
        ids.append(g)
    if not ids:
        raise UserError(
            f"cache {getattr(cache, 'path', '')} holds no 2-image items (images sharing a group, each with a caption): "
            "build it from a winoground: or bivlc: source"
        )
    if bad:
        print(f"tflocal eval: {len(bad)} groups without exactly 2 captioned images skipped (e.g. {bad[0]!r})")
    return np.asarray(images, np.int64).reshape(-1, 2), np.asarray(captions, np.int64).reshape(-1, 2), ids


def score_groups(scorer: Any, images: np.ndarray, captions: np.ndarray) -> np.ndarray:
    """images, captions [N, 2] -> s [N, 2, 2] with s[n, c, i] = score(caption c, image i)."""
    n = len(images)
    c_idx = np.repeat(captions[:, :, None], 2, axis=2)  # [N, c, i]
    i_idx = np.repeat(images[:, None, :], 2, axis=1)
    return scorer.score(i_idx.ravel(), c_idx.ravel()).reshape(n, 2, 2)


def group_metric(s: np.ndarray, types: list[str] | None = None) -> dict[str, dict[str, tuple[float, int]]]:
    """s [N, 2, 2] -> {"all": {"text"|"image"|"group": (acc, n)}, <type>: {...}} (types [N] optional)."""
    correct = winoground_correct(s)
    out = {"all": {k: (mean(v), int(v.size)) for k, v in correct.items()}}
    if types is not None:
        types_a = np.asarray(types, dtype=object).astype(str)
        for t in sorted(set(types_a.tolist()) - {""}):
            m = types_a == t
            out[t] = {k: (mean(v[m]), int(m.sum())) for k, v in correct.items()}
    return out


def _rows(benchmark: str, cache: Any, scorer: Any, type_key: str | None) -> list[Row]:
    ctx = context(benchmark, cache, scorer)
    images, captions, _ = group_items(cache)
    s = score_groups(scorer, images, captions)
    types = [str(cache.text_meta(int(c)).get(type_key, "")) for c in captions[:, 0]] if type_key else None
    res = group_metric(s, types)
    rows = []
    for subset in ["all", *[k for k in res if k != "all"]]:
        for metric in ("text", "image", "group"):
            rows.append(ctx.row(subset, metric, *res[subset][metric]))
    return rows


def evaluate_winoground(cache: Any, scorer: Any, benchmark: str = "winoground") -> list[Row]:
    return _rows(benchmark, cache, scorer, "collapsed_tag")


def evaluate_bivlc(cache: Any, scorer: Any, benchmark: str = "bivlc") -> list[Row]:
    return _rows(benchmark, cache, scorer, "type")
