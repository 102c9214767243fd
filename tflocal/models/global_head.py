"""Global head: the same training and budget as TFLocal, but it sees only the two global vectors.

Two forms (``model.global_form``): ``mlp`` (:class:`GlobalHead`, residual MLP blocks over both
vectors jointly, the default) and ``dual`` (:class:`DualGlobalHead`, one tower per vector and a
cosine: separable, so retrieval stores the image side once)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cache_tools.store.schema import CacheSpec
from tflocal.models.base import Head
from tflocal.models.config import GLOBAL_FORMS, ModelConfig
from tflocal.models.layers import once_per_caption
from tflocal.pairs.batch import PairBatch


class ResidualMLP(nn.Module):
    """x + W2 GELU(W1 LN(x)): x [B, d] -> [B, d]."""

    def __init__(self, width: int, ratio: float, dropout: float):
        super().__init__()
        hidden = int(round(width * ratio))
        self.net = nn.Sequential(
            nn.LayerNorm(width),
            nn.Linear(width, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, width),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class GlobalHead(Head):
    """a = P_img(image_global), b = P_txt(text_global) (LayerNorm + Linear to ``width``), then
    ``depth`` residual MLP blocks over Linear([a, b, a*b, |a-b|]) and a linear score.

    image_global [B, D_gi], text_global [B, D_gt] -> [B]. The two widths may differ (unaligned
    towers), so for those caches it is the learned dual-encoder baseline. With the defaults
    (global_mlp_ratio 6) each block has 12·d² weights like a TFLocal layer: about the same budget.
    """

    needs = ("image_global", "text_global")

    def __init__(self, cfg: ModelConfig, spec: CacheSpec):
        super().__init__()
        d = cfg.width
        self.cfg, self.spec = cfg, spec
        dgi, dgt = spec.global_image_dim, spec.global_text_dim
        self.image_in = nn.Sequential(nn.LayerNorm(dgi), nn.Linear(dgi, d))
        self.text_in = nn.Sequential(nn.LayerNorm(dgt), nn.Linear(dgt, d))
        self.mix = nn.Linear(4 * d, d)
        self.blocks = nn.Sequential(
            *[ResidualMLP(d, cfg.global_mlp_ratio, cfg.dropout) for _ in range(cfg.depth)]
        )
        self.norm = nn.LayerNorm(d)
        self.score = nn.Linear(d, 1)

    def forward(self, batch: PairBatch) -> torch.Tensor:
        """image_global [B, D_gi], text_global [B, D_gt] -> scores [B] float32."""
        w = self.image_in[1].weight
        a = self.image_in(batch.image_global.to(w.dtype))
        b = self.text_in(batch.text_global.to(w.dtype))
        x = self.mix(torch.cat([a, b, a * b, (a - b).abs()], dim=-1))
        return self.score(self.norm(self.blocks(x))).squeeze(-1).float()


class DualGlobalHead(Head):
    """The separable global head (``model.global_form: dual``): each global embedding through a
    tower of its own (LayerNorm + Linear to ``width``, one residual MLP block, LayerNorm + Linear,
    unit norm), score = ``scale`` · cosine of the two.

    image_global [B, D_gi], text_global [B, D_gt] -> [B]. ``encode_image_global`` [N, D_gi] ->
    [N, d] depends on the image alone, so an index stores it (:mod:`tflocal.retrieval`) and scoring K
    candidates of a caption costs one text tower row and K dot products, where the ``mlp`` form
    runs its residual blocks once per pair. Precomputed image vectors are read from
    ``PairBatch.image_global_vectors`` [B, d] when given; a caption repeated with stride 0 over
    the batch runs its tower once.
    """

    needs = ("image_global", "text_global")
    separable = True

    def __init__(self, cfg: ModelConfig, spec: CacheSpec):
        super().__init__()
        self.cfg, self.spec = cfg, spec
        d = cfg.width

        def tower(dim_in: int) -> nn.Sequential:
            return nn.Sequential(
                nn.LayerNorm(dim_in),
                nn.Linear(dim_in, d),
                ResidualMLP(d, cfg.global_mlp_ratio, cfg.dropout),
                nn.LayerNorm(d),
                nn.Linear(d, d),
            )

        self.image_tower = tower(spec.global_image_dim)
        self.text_tower = tower(spec.global_text_dim)
        self.scale = nn.Parameter(torch.tensor(10.0))

    @staticmethod
    def _encode(tower: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(tower(x.to(tower[1].weight.dtype)).float(), dim=-1)

    def encode_image_global(self, image_global: torch.Tensor) -> torch.Tensor:
        """image_global [N, D_gi] -> unit vectors [N, d] (what an index stores)."""
        return self._encode(self.image_tower, image_global)

    def encode_text_global(self, text_global: torch.Tensor) -> torch.Tensor:
        """text_global [N, D_gt] -> unit vectors [N, d] (a row repeated with stride 0 runs once)."""
        return once_per_caption(lambda x: self._encode(self.text_tower, x), text_global)

    def forward(self, batch: PairBatch) -> torch.Tensor:
        """image_global [B, D_gi] (or image_global_vectors [B, d]), text_global [B, D_gt] -> [B] float32."""
        a = batch.image_global_vectors
        a = self.encode_image_global(batch.image_global) if a is None else a.float()
        return self.scale.float() * (a * self.encode_text_global(batch.text_global)).sum(-1)


GLOBAL_HEADS: dict[str, type[Head]] = dict(zip(GLOBAL_FORMS, (GlobalHead, DualGlobalHead)))
"""``model.global_form`` -> the global head class (standalone ``global`` head and every global path)."""


def global_head(cfg: ModelConfig, spec: CacheSpec) -> Head:
    """The global head of ``cfg.global_form`` for a cache's spec."""
    return GLOBAL_HEADS[cfg.global_form](cfg, spec)
