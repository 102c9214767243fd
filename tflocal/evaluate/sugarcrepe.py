"""SugarCrepe: per-subset accuracy (positive strictly above its negative) and the micro-average."""

from __future__ import annotations

from typing import Any

import numpy as np

from tflocal.evaluate.common import context, negative_pairs, score_pairs_of, text_meta_column
from tflocal.evaluate.metrics import mean, pair_correct, per_group
from tflocal.evaluate.report import Row

SUBSETS = ("add_att", "add_obj", "replace_att", "replace_obj", "replace_rel", "swap_att", "swap_obj")


def sugarcrepe_metric(pos: np.ndarray, neg: np.ndarray, subsets: list[str]) -> dict[str, tuple[float, int]]:
    """pos, neg [N] scores, subsets [N] names -> {subset: (accuracy, n)} plus "all" (micro-average)."""
    correct = pair_correct(pos, neg)
    out = per_group(correct, subsets)
    out["all"] = (mean(correct), int(correct.size))
    return out


def evaluate_sugarcrepe(cache: Any, scorer: Any, benchmark: str = "sugarcrepe") -> list[Row]:
    """Items: every negative text with its positive (text meta ``subset``)."""
    ctx = context(benchmark, cache, scorer)
    image, pos, neg = negative_pairs(cache)
    subsets = [str(s) for s in text_meta_column(cache, neg, "subset", "unknown")]
    s_pos, s_neg = score_pairs_of(scorer, image, pos, neg)
    res = sugarcrepe_metric(s_pos, s_neg, subsets)
    ordered = [s for s in SUBSETS if s in res] + [s for s in res if s not in SUBSETS and s != "all"] + ["all"]
    return [ctx.row(s, "accuracy", *res[s]) for s in ordered]
