"""ARO (Yuksekgonul et al.): VG-Relation, VG-Attribution, COCO-Order, Flickr30k-Order.

As ARO's own code computes them: VG-Relation is the mean over relations of the per-relation
accuracy, symmetric relations excluded (the list of ARO's ``main_aro.py``); VG-Attribution the
mean over attribute pairs seen at least 25 times; a VG item is correct when the true caption
scores strictly higher. The order sets score each true caption against its perturbations;
precision@1 counts a tie with the true caption as correct (``argmax`` of ``[true, ...]``).
Order rows are comparable with published numbers only when every perturbation was made by
ARO's own procedure (text meta ``procedure == "aro"``); otherwise the row's subset reads
:data:`NOT_COMPARABLE`.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from tflocal.evaluate.common import context, negative_pairs, score_pairs_of, text_meta_column
from tflocal.evaluate.metrics import macro_accuracy, mean, pair_correct, precision_at_1
from tflocal.evaluate.report import Row

# fmt: off
SYMMETRIC_RELATIONS = frozenset([
    "adjusting", "attached to", "between", "bigger than", "biting", "boarding", "brushing", "chewing", "cleaning",
    "climbing", "close to", "coming from", "coming out of", "contain", "crossing", "dragging", "draped over",
    "drinking", "drinking from", "driving", "driving down", "driving on", "eating from", "eating in", "enclosing",
    "exiting", "facing", "filled with", "floating in", "floating on", "flying", "flying above", "flying in",
    "flying over", "flying through", "full of", "going down", "going into", "going through", "grazing in",
    "growing in", "growing on", "guiding", "hanging from", "hanging in", "hanging off", "hanging over",
    "higher than", "holding onto", "hugging", "in between", "jumping off", "jumping on", "jumping over", "kept in",
    "larger than", "leading", "leaning over", "leaving", "licking", "longer than", "looking in", "looking into",
    "looking out", "looking over", "looking through", "lying next to", "lying on top of", "making", "mixed with",
    "mounted on", "moving", "on the back of", "on the edge of", "on the front of", "on the other side of",
    "opening", "painted on", "parked at", "parked beside", "parked by", "parked in", "parked in front of",
    "parked near", "parked next to", "perched on", "petting", "piled on", "playing", "playing in", "playing on",
    "playing with", "pouring", "reaching for", "reading", "reflected on", "riding on", "running in", "running on",
    "running through", "seen through", "sitting behind", "sitting beside", "sitting by", "sitting in front of",
    "sitting near", "sitting next to", "sitting under", "skiing down", "skiing on", "sleeping in", "sleeping on",
    "smiling at", "sniffing", "splashing", "sprinkled on", "stacked on", "standing against", "standing around",
    "standing behind", "standing beside", "standing in front of", "standing near", "standing next to",
    "staring at", "stuck in", "surrounding", "swimming in", "swinging", "talking to", "topped with", "touching",
    "traveling down", "traveling on", "tying", "typing on", "underneath", "wading in", "waiting for",
    "walking across", "walking by", "walking down", "walking next to", "walking through", "working in",
    "working on", "worn on", "wrapped around", "wrapped in", "by", "of", "near", "next to", "with", "beside",
    "on the side of", "around",
])
# fmt: on
"""Relations ARO's evaluation drops from the VG-Relation macro-average."""

NOT_COMPARABLE = "all (tflocal perturbations, not comparable to published)"
"""Subset label of an order row whose negatives are not all ARO's own."""

VGA_MIN_COUNT = 25
"""VG-Attribution: attribute pairs with fewer items are left out of the macro-average."""


def _macro_micro(
    pos: np.ndarray, neg: np.ndarray, keys: list[str], **rule: Any
) -> tuple[float, int, float, int]:
    correct = pair_correct(pos, neg)
    macro, kept = macro_accuracy(correct, keys, **rule)
    return macro, len(kept), mean(correct), int(correct.size)


def vg_relation_metric(
    pos: np.ndarray, neg: np.ndarray, relations: list[str]
) -> tuple[float, int, float, int]:
    """-> (macro accuracy over non-symmetric relations, relations kept, micro accuracy, n items)."""
    return _macro_micro(pos, neg, relations, exclude=SYMMETRIC_RELATIONS)


def vg_attribution_metric(
    pos: np.ndarray, neg: np.ndarray, attributes: list[str]
) -> tuple[float, int, float, int]:
    """attributes: [N] keys ``"attr0_attr1"`` -> (macro over pairs seen >= 25 times, pairs kept, micro, n)."""
    return _macro_micro(pos, neg, attributes, min_count=VGA_MIN_COUNT)


def _attribute_key(value: Any) -> str:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return f"{value[0]}_{value[1]}"
    return str(value)


def _vg_rows(benchmark: str, cache: Any, scorer: Any, key: str) -> list[Row]:
    ctx = context(benchmark, cache, scorer)
    image, pos, neg = negative_pairs(cache)
    s_pos, s_neg = score_pairs_of(scorer, image, pos, neg)
    if key == "relation_name":
        labels = [str(v) for v in text_meta_column(cache, neg, key, "")]
        macro, groups, micro, n = vg_relation_metric(s_pos, s_neg, labels)
    else:
        labels = [_attribute_key(v) for v in text_meta_column(cache, neg, key, "")]
        macro, groups, micro, n = vg_attribution_metric(s_pos, s_neg, labels)
    return [ctx.row("all", "macro_accuracy", macro, groups), ctx.row("all", "accuracy", micro, n)]


def evaluate_vg_relation(cache: Any, scorer: Any, benchmark: str = "vg_relation") -> list[Row]:
    return _vg_rows(benchmark, cache, scorer, "relation_name")


def evaluate_vg_attribution(cache: Any, scorer: Any, benchmark: str = "vg_attribution") -> list[Row]:
    return _vg_rows(benchmark, cache, scorer, "attributes")


def order_items(cache: Any) -> tuple[np.ndarray, np.ndarray]:
    """-> (images [N], captions [N, 1 + K]: the true caption then its perturbations, -1 padded)."""
    perturbations: dict[int, list[int]] = defaultdict(list)
    for t in np.flatnonzero(cache.positive_index >= 0):
        perturbations[int(cache.positive_index[t])].append(int(t))
    trues = [
        t
        for t in np.flatnonzero((cache.positive_index < 0) & (cache.image_index >= 0))
        if int(t) in perturbations
    ]
    k = max((len(v) for v in perturbations.values()), default=0)
    caps = np.full((len(trues), 1 + k), -1, dtype=np.int64)
    for r, t in enumerate(trues):
        caps[r, 0] = t
        caps[r, 1 : 1 + len(perturbations[int(t)])] = perturbations[int(t)]
    return cache.image_index[np.asarray(trues, dtype=np.int64)].astype(np.int64), caps


def evaluate_order(cache: Any, scorer: Any, benchmark: str = "coco_order") -> list[Row]:
    """COCO-Order / Flickr30k-Order: precision@1 of each true caption among its perturbations."""
    ctx = context(benchmark, cache, scorer)
    images, caps = order_items(cache)
    valid = caps >= 0
    img_rep = np.repeat(images[:, None], caps.shape[1], axis=1)
    scores = np.full(caps.shape, -np.inf)
    scores[valid] = scorer.score(img_rep[valid], caps[valid])
    correct = precision_at_1(scores, true_col=0)
    negs = caps[:, 1:][caps[:, 1:] >= 0]
    official = bool(len(negs)) and all(p == "aro" for p in text_meta_column(cache, negs, "procedure", ""))
    return [ctx.row("all" if official else NOT_COMPARABLE, "precision@1", mean(correct), correct.size)]
