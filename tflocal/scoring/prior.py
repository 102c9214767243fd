"""A caption prior taken out of a scorer: ``s'(i, c) = s(i, c) - prior(c)``, with ``prior(c)`` the
mean score of caption c over a fixed sample of reference images of the cache.

A learned scorer gives part of its score to the caption alone (its words, its length, how often
its kind of statement was true in training). When two captions are compared on one image (the
text side of a minimal pair, a caption against its hard negatives), that part decides whenever
it is larger than what the image adds, and on captions unlike the training ones it often is.
Subtracting each caption's expected score over images leaves what the image says about it: the
discriminative form of a pointwise mutual information, the same normalization as querybank
normalization and CSLS in cross-modal retrieval. It uses no labels; the reference images are a
seeded sample of the evaluated cache's images. For one caption the images keep their order
(text-to-image ranking and the image side of a pair are unchanged).

Scorer names: ``prior@SPEC`` or ``prior:N@SPEC`` (N reference images, default
:data:`DEFAULT_REFERENCES`), SPEC any other scorer name (a checkpoint path, ``maxsim``, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tflocal.errors import UserError
from tflocal.scoring.base import Scorer

DEFAULT_REFERENCES = 64
"""Reference images per caption prior: its standard error is the score's spread over images / 8."""
PREFIX = "prior"


def is_prior(name: str) -> bool:
    """``name`` asks for a caption prior: ``prior@SPEC`` or ``prior:N@SPEC``."""
    return str(name).startswith((f"{PREFIX}@", f"{PREFIX}:"))


def strip_prior(name: str) -> str:
    """The scorer a caption prior is taken out of (``name`` itself when it asks for none)."""
    return parse_prior(name)[1] if is_prior(name) else str(name)


def parse_prior(name: str) -> tuple[int, str]:
    """``prior@SPEC`` / ``prior:N@SPEC`` -> (N, SPEC); a UserError naming the form otherwise."""
    head, at, spec = str(name).partition("@")
    count = head[len(PREFIX) + 1 :] if head.startswith(f"{PREFIX}:") else ""
    try:
        n = int(count) if count else DEFAULT_REFERENCES
    except ValueError:
        n = 0
    if not at or not spec.strip() or n < 1 or head not in (PREFIX, f"{PREFIX}:{count}"):
        raise UserError(
            f"scorer {name!r}: write prior@SCORER or prior:N@SCORER (N reference images, a positive "
            f"integer, default {DEFAULT_REFERENCES}), e.g. prior:64@runs/tflocal/best.pt"
        )
    return n, spec


class CaptionPriorScorer(Scorer):
    """``base``'s score minus each caption's mean score over ``references`` images of the cache.

    Args:
        base: a scorer over a cache (its ``score`` is called with cache rows).
        references: number of reference images (all of the cache's when it holds fewer).
        seed: draws the reference images (the same cache and seed give the same sample).
    """

    def __init__(self, base: Scorer, references: int = DEFAULT_REFERENCES, seed: int = 0):
        cache = base._require_cache()
        super().__init__(cache, base._encoder, base.batch_size, str(base.device), base.progress, base.precision)
        self.base = base
        self.name = f"{base.name} - caption prior"
        self.needs = base.needs
        self.checkpoint = base.checkpoint
        n = int(cache.n_images)
        if n < 1:
            raise UserError(f"cache {getattr(cache, 'path', '')}: a caption prior needs images, and it has none")
        rng = np.random.default_rng(seed)
        self.references = np.sort(rng.choice(n, size=min(int(references), n), replace=False)).astype(np.int64)
        self._prior: dict[int, float] = {}

    def __getattr__(self, item: str) -> Any:  # word_region_attention, model, ... of the base scorer
        if item == "base":
            raise AttributeError(item)
        return getattr(self.base, item)

    def prior(self, text_idx: Sequence[int] | np.ndarray) -> np.ndarray:
        """text_idx [B] cache rows -> [B] float32 mean score of each caption over the reference
        images (computed once per distinct caption)."""
        text_idx = np.asarray(text_idx, dtype=np.int64).reshape(-1)
        new = [int(t) for t in np.unique(text_idx) if int(t) not in self._prior]
        if new:
            k = self.references.size
            s = self.base.score(np.tile(self.references, len(new)), np.repeat(np.asarray(new, np.int64), k))
            for t, m in zip(new, s.reshape(len(new), k).mean(axis=1)):
                self._prior[t] = float(m)
        return np.asarray([self._prior[int(t)] for t in text_idx], dtype=np.float32)

    def score(self, image_idx: Sequence[int] | np.ndarray, text_idx: Sequence[int] | np.ndarray) -> np.ndarray:
        """image_idx [B], text_idx [B] -> [B] float32: the base score minus the caption's prior."""
        return self.base.score(image_idx, text_idx) - self.prior(text_idx)

    def score_matrix(
        self, image_idx: Sequence[int] | np.ndarray, text_idx: Sequence[int] | np.ndarray
    ) -> np.ndarray:
        """image_idx [I], text_idx [J] -> [I, J]: the base matrix minus each column's prior."""
        return self.base.score_matrix(image_idx, text_idx) - self.prior(text_idx)[None, :]

    def score_pairs_batch(self, pairs: Any) -> Any:
        raise UserError(
            f"scorer {self.name!r} scores cache rows only (its caption prior needs the cache's reference "
            "images and each caption's row): build a cache of the inputs, or score with the base scorer"
        )

    def score_pairs(self, images: Sequence[Any], captions: Sequence[str]) -> np.ndarray:
        return self.score_pairs_batch(None)
