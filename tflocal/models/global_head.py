"""Global head: the same training and budget as TFLocal, but it sees only the two global vectors."""

from __future__ import annotations

import torch
from torch import nn

from cache_tools.schema import CacheSpec
from tflocal.models.batch import PairBatch
from tflocal.models.config import ModelConfig


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


class GlobalHead(nn.Module):
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
        w = self.image_in[1].weight
        a = self.image_in(batch.image_global.to(w.dtype))
        b = self.text_in(batch.text_global.to(w.dtype))
        x = self.mix(torch.cat([a, b, a * b, (a - b).abs()], dim=-1))
        return self.score(self.norm(self.blocks(x))).squeeze(-1).float()
