"""Scorers: one number per (image, caption) pair. See :mod:`tflocal.scoring` for ``load_scorer``."""

from __future__ import annotations

from tflocal.features import Pairs
from tflocal.scorers.base import Scorer
from tflocal.scorers.head import CosineScorer, HeadScorer, checkpoint_scorer, maxsim_scorer
from tflocal.scorers.sgi import SGIScorer, sgi_score

__all__ = [
    "CosineScorer",
    "HeadScorer",
    "Pairs",
    "SGIScorer",
    "Scorer",
    "checkpoint_scorer",
    "maxsim_scorer",
    "sgi_score",
]
