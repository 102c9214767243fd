"""What every benchmark evaluator shares: row labels, and items rebuilt from the cache arrays.

A benchmark's items are recoverable from the cache: a negative text ``t`` (``positive_index[t]
>= 0``) is paired with its positive ``positive_index[t]`` on image ``image_index[t]``; images of
one multi-image item share ``image_group``; benchmark fields live in the text/image meta.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tflocal.evaluate.report import Row


@dataclass
class Context:
    """Labels written into every row of one (benchmark, cache, scorer) evaluation."""

    benchmark: str
    scorer: str
    encoder: str = ""
    cache: str = ""
    checkpoint: str = ""

    def row(self, subset: str, metric: str, value: float, n: int) -> Row:
        return Row(
            self.benchmark,
            subset,
            metric,
            float(value),
            int(n),
            self.scorer,
            self.encoder,
            self.cache,
            self.checkpoint,
        )


def context(benchmark: str, cache: Any, scorer: Any) -> Context:
    return Context(
        benchmark=benchmark,
        scorer=str(getattr(scorer, "name", "")),
        encoder=str(cache.attrs.get("encoder", "")),
        cache=str(getattr(cache, "path", "")),
        checkpoint=str(getattr(scorer, "checkpoint", "") or ""),
    )


def text_meta_column(cache: Any, rows: np.ndarray, key: str, default: Any = None) -> list[Any]:
    """``text_meta(t).get(key, default)`` for each text row in ``rows`` [M]."""
    return [cache.text_meta(int(t)).get(key, default) for t in rows]


def image_meta_column(cache: Any, rows: np.ndarray, key: str, default: Any = None) -> list[Any]:
    """``image_meta(i).get(key, default)`` for each image row in ``rows`` [M]."""
    return [cache.image_meta(int(i)).get(key, default) for i in rows]


def negative_pairs(cache: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (image, positive, negative) triple of the cache: three int64 arrays [M], where the
    negatives are the texts with ``positive_index >= 0`` on an image, in text order."""
    neg = np.flatnonzero((cache.positive_index >= 0) & (cache.image_index >= 0)).astype(np.int64)
    return cache.image_index[neg].astype(np.int64), cache.positive_index[neg].astype(np.int64), neg


def score_pairs_of(
    scorer: Any, image: np.ndarray, pos: np.ndarray, neg: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Scores [M] of (image, pos) and [M] of (image, neg), in one scorer call."""
    m = len(image)
    s = scorer.score(np.concatenate([image, image]), np.concatenate([pos, neg]))
    return s[:m], s[m:]
