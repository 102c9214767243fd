"""VALSE: pairwise accuracy (caption strictly above foil) over valid items, per piece and overall.

An item is valid when at least 2 of 3 annotators chose the caption (text meta ``valid``, set by
the source from ``mturk``); items without votes (``valid`` None) are kept, explicit ``False``
are dropped. Rows: per piece, ``all`` (micro over valid pairs) and ``all/macro_accuracy`` (mean
over pieces).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tflocal.evaluate.common import context, negative_pairs, score_pairs_of, text_meta_column
from tflocal.evaluate.metrics import macro_accuracy, mean, pair_correct, per_group
from tflocal.evaluate.report import Row


def valse_metric(
    pos: np.ndarray, neg: np.ndarray, pieces: list[str], valid: list[bool | None]
) -> dict[str, tuple[float, int]]:
    """pos, neg [N] scores, pieces [N], valid [N] -> {piece: (acc, n)}, "all": micro, "macro": mean over pieces."""
    keep = np.array([v is not False for v in valid], dtype=bool)
    correct = pair_correct(np.asarray(pos)[keep], np.asarray(neg)[keep])
    kept_pieces = np.asarray(pieces, dtype=object)[keep]
    out = per_group(correct, kept_pieces)
    macro, groups = macro_accuracy(correct, kept_pieces)
    out["all"] = (mean(correct), int(correct.size))
    out["macro"] = (macro, len(groups))
    return out


def evaluate_valse(cache: Any, scorer: Any, benchmark: str = "valse") -> list[Row]:
    ctx = context(benchmark, cache, scorer)
    image, pos, neg = negative_pairs(cache)
    pieces = [str(p) for p in text_meta_column(cache, neg, "piece", "unknown")]
    valid = text_meta_column(cache, neg, "valid", None)
    s_pos, s_neg = score_pairs_of(scorer, image, pos, neg)
    res = valse_metric(s_pos, s_neg, pieces, valid)
    rows = [ctx.row(p, "accuracy", *res[p]) for p in res if p not in ("all", "macro")]
    rows.append(ctx.row("all", "accuracy", *res["all"]))
    rows.append(ctx.row("all", "macro_accuracy", *res["macro"]))
    return rows
