"""Alignment heads: every head maps a :class:`PairBatch` of B (image, caption) pairs to B scores.

``HEADS`` names them; ``build_head(name, cfg, cache_attrs)`` builds one for a cache's dimensions;
each head's ``needs`` lists the PairBatch fields it reads (so scorers load only those).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from tflocal.config import from_dict
from tflocal.errors import UserError
from tflocal.models.batch import PAIR_FIELDS, PairBatch
from tflocal.models.config import ModelConfig
from tflocal.models.cosine import CosineHead, cosine_score
from tflocal.models.global_head import GlobalHead
from tflocal.models.maxsim import MaxSimHead, maxsim_score
from tflocal.models.segment_head import SegmentHead
from tflocal.models.tflocal_head import TFLocalHead

HEADS: dict[str, type[nn.Module]] = {
    "tflocal": TFLocalHead,
    "global": GlobalHead,
    "maxsim": MaxSimHead,
    "cosine": CosineHead,
}
TRAINABLE = ("tflocal", "global")


def build_head(name: str, cfg: ModelConfig | dict[str, Any] | None, cache_attrs: dict[str, Any]) -> nn.Module:
    """Head ``name`` sized for a cache (``cache_attrs``: image_dim, text_dim, global dims, grid,
    context_length, space, global_space). ``cfg``: a ModelConfig, its dict, or None for defaults."""
    if name not in HEADS:
        raise UserError(f"unknown head {name!r}; choices: {', '.join(HEADS)}")
    if cfg is None:
        cfg = ModelConfig()
    elif isinstance(cfg, dict):
        cfg = from_dict(ModelConfig, cfg, prefix="model.")
    if name == "tflocal" and cfg.readout == "segments":
        return SegmentHead(cfg, cache_attrs)
    return HEADS[name](cfg, cache_attrs)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = [
    "HEADS",
    "PAIR_FIELDS",
    "TRAINABLE",
    "CosineHead",
    "GlobalHead",
    "MaxSimHead",
    "ModelConfig",
    "PairBatch",
    "SegmentHead",
    "TFLocalHead",
    "build_head",
    "cosine_score",
    "count_parameters",
    "maxsim_score",
]
