"""The frozen model's own global cosine (the baseline every head is compared with)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cache_tools.store.schema import CacheSpec
from tflocal.errors import UserError
from tflocal.models.base import Head
from tflocal.models.config import ModelConfig
from tflocal.pairs.batch import PairBatch


def cosine_score(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine: a [B, D], b [B, D] -> [B] float32."""
    assert a.ndim == 2 and a.shape == b.shape, (
        f"cosine_score: shapes {tuple(a.shape)} and {tuple(b.shape)} differ"
    )
    return (F.normalize(a.float(), dim=-1) * F.normalize(b.float(), dim=-1)).sum(dim=-1)


class CosineHead(Head):
    """cos(image_global, text_global); needs a cache whose global_space is 'joint'."""

    needs = ("image_global", "text_global")

    def __init__(self, cfg: ModelConfig | None = None, spec: CacheSpec | None = None):
        super().__init__()
        if spec is not None and not spec.joint_globals:
            raise UserError(
                f"head 'cosine' needs comparable image and text global embeddings, but cache encoder "
                f"{spec.encoder!r} has global_space={spec.global_space!r}: "
                "train head 'global' (the dual-encoder baseline for unaligned towers) instead"
            )

    def forward(self, batch: PairBatch) -> torch.Tensor:
        """batch.image_global [B, D], batch.text_global [B, D] -> [B]."""
        return cosine_score(batch.image_global, batch.text_global)
