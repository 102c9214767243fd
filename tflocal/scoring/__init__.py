"""Scorers: one number per (image, caption) pair. See :mod:`tflocal.scoring.load` for ``load_scorer``."""

from __future__ import annotations

from tflocal.pairs.assemble import Pairs
from tflocal.scoring.base import Scorer
from tflocal.scoring.head import CosineScorer, HeadScorer, checkpoint_scorer, maxsim_scorer
from tflocal.scoring.sgi import SGIScorer, sgi_combine, sgi_score

__all__ = [
    "CosineScorer",
    "HeadScorer",
    "Pairs",
    "SGIScorer",
    "Scorer",
    "checkpoint_scorer",
    "maxsim_scorer",
    "sgi_combine",
    "sgi_score",
]
