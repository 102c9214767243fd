"""TFLocal's joint read-outs (``readout: summary`` / ``summary+align``): a small cross-encoder
transformer over one (image, caption) pair at a time. The default read-out is ``segments``
(:mod:`tflocal.models.segment_head`).

With ``global_path`` (the default) the score is ``w_global · g + w_summary · summary read-out
(+ align_scale · alignment)``, g the global head's score (:mod:`tflocal.models.global_path`).
"""

from __future__ import annotations

import torch
from torch import nn

from cache_tools.store.schema import CacheSpec
from tflocal.models.base import Head
from tflocal.models.config import ModelConfig
from tflocal.models.global_path import GlobalPath, add_global_needs
from tflocal.models.layers import Block, GridPositions, PositionTable, gather_rows
from tflocal.models.maxsim import maxsim_score
from tflocal.pairs.batch import PairBatch


class TFLocalHead(Head):
    """Sequence ``[summary, patches (+2-D position), caption tokens (+position)]``, each part with a
    modality embedding, through ``depth`` pre-norm blocks with key-padding masks; the score is a
    linear read-out of the summary token.

    Inputs: patches [B, P, D_img], patch_mask [B, P], tokens [B, T, D_txt], token_mask [B, T]
    (+ image_global [B, D_gi], text_global [B, D_gt] with the global path) -> [B].
    D_img and D_txt may differ: each modality has its own LayerNorm + Linear projection to ``width``.
    """

    needs = ("patches", "patch_mask", "tokens", "token_mask")
    accepts_pair_image = True  # PairBatch.pair_image: patches projected once per distinct image
    word_maps = True

    def __init__(self, cfg: ModelConfig, spec: CacheSpec):
        super().__init__()
        self.cfg, self.spec = cfg, spec
        # first, so that it starts from the weights a standalone global head gets under the same seed
        self.global_path = GlobalPath(cfg, spec) if cfg.global_path else None
        self.needs = add_global_needs(TFLocalHead.needs, cfg)
        d = cfg.width
        grid = spec.grid
        self.max_text = int(cfg.max_text_tokens)
        self.patch_in = nn.Sequential(nn.LayerNorm(spec.image_dim), nn.Linear(spec.image_dim, d))
        self.token_in = nn.Sequential(nn.LayerNorm(spec.text_dim), nn.Linear(spec.text_dim, d))
        self.patch_pos = GridPositions((grid[0], grid[1]), d, cfg.pos)
        self.token_pos = PositionTable(self.max_text, d, cfg.pos)
        self.modality = nn.Parameter(torch.randn(2, d) * 0.02)  # 0: image, 1: text
        self.summary = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(d, cfg.heads, cfg.mlp_ratio, cfg.dropout, cfg.block_init) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(d)
        self.score = nn.Linear(d, 1)
        self.align = None
        if cfg.readout == "summary+align":
            self.align = nn.ModuleDict(
                {"text": nn.Linear(d, d, bias=False), "image": nn.Linear(d, d, bias=False)}
            )
            self.align_scale = nn.Parameter(torch.tensor(10.0))
        if self.global_path is not None:
            self.summary_scale = nn.Parameter(torch.tensor(1.0))

    def forward(self, batch: PairBatch) -> torch.Tensor:
        """PairBatch of B (``needs``) -> scores [B] float32."""
        x, key_mask, (P, T) = self._encode(batch, upto=len(self.blocks))
        x = self.norm(x)
        score = self.score(x[:, 0]).squeeze(-1).float()
        if self.global_path is not None:
            score = self.summary_scale.float() * score
        if self.align is not None:
            score = score + self.align_scale.float() * self._alignment(x, key_mask, P, T)
        return score if self.global_path is None else self.global_path(batch, score)

    def mix_weights(self) -> dict[str, float]:
        """The learned weights of the score's terms (logged during training)."""
        out = {} if self.align is None else {"mix/align": float(self.align_scale.detach())}
        if self.global_path is not None:
            out.update(
                {
                    "mix/global": float(self.global_path.weight.detach()),
                    "mix/summary": float(self.summary_scale.detach()),
                }
            )
        return out

    def auxiliary_scores(self) -> dict[str, torch.Tensor]:
        """Scores [B] of the last training forward that get their own loss ({'global': g} or {})."""
        return {} if self.global_path is None else self.global_path.auxiliary_scores()

    def global_path_head(self) -> Head | None:
        """The global head inside the global path (None without ``global_path``)."""
        return None if self.global_path is None else self.global_path.head

    def _alignment(self, x: torch.Tensor, key_mask: torch.Tensor, P: int, T: int) -> torch.Tensor:
        """Word-region alignment of the final states x [B, S, d]: MaxSim (each real caption
        token's best cosine over real patches, averaged over tokens) of the projected states -> [B]."""
        img, txt = self.align["image"](x[:, 1 : 1 + P]), self.align["text"](x[:, 1 + P : 1 + P + T])
        return maxsim_score(txt, key_mask[:, 1 + P : 1 + P + T], img, key_mask[:, 1 : 1 + P])

    def word_region_attention(self, batch: PairBatch) -> torch.Tensor:
        """Which patch each caption token attends to in the last block: [B, T, P], the attention
        of text-token queries over patch keys averaged over heads and renormalized over patches
        (rows of padded tokens are 0)."""
        x, key_mask, (P, T) = self._encode(batch, upto=len(self.blocks) - 1)
        att = self.blocks[-1].attention_weights(x, key_mask).mean(1)  # [B, S, S]
        tp = att[:, 1 + P : 1 + P + T, 1 : 1 + P]
        tp = tp / tp.sum(-1, keepdim=True).clamp_min(1e-12)
        return tp * key_mask[:, 1 + P : 1 + P + T, None]

    def _encode(self, batch: PairBatch, upto: int) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
        """Embed the pair sequence and run the first ``upto`` blocks: (x [B, S, d], key_mask [B, S], (P, T))."""
        patches, pmask, tokens, tmask = batch.patches, batch.patch_mask, batch.tokens, batch.token_mask
        pair_image = batch.pair_image
        B, P = (len(batch), patches.shape[1])
        T = tokens.shape[1]
        rows = patches.shape[0] if pair_image is not None else B
        assert pmask.shape == (rows, P) and tmask.shape == (B, T) and tokens.shape[0] == B, (
            "PairBatch shapes disagree"
        )
        if T > self.max_text:
            if bool(tmask[:, self.max_text :].any()):
                raise ValueError(
                    f"caption with more than {self.max_text} real tokens: raise model.max_text_tokens and retrain"
                )
            tokens, tmask, T = tokens[:, : self.max_text], tmask[:, : self.max_text], self.max_text
        w = self.patch_in[1].weight
        x_img = self.patch_in(patches.to(w.dtype)) + self.patch_pos(P) + self.modality[0]
        if pair_image is not None:  # [U, P, d] distinct images -> [B, P, d] per pair
            x_img, pmask = gather_rows(x_img, pair_image), pmask[pair_image]
        t_idx = torch.arange(T, device=tokens.device)
        x_txt = self.token_in(tokens.to(w.dtype)) + self.token_pos(t_idx) + self.modality[1]
        x = torch.cat([self.summary.expand(B, 1, -1).to(x_img.dtype), x_img, x_txt], dim=1)
        key_mask = torch.cat([pmask.new_ones(B, 1), pmask, tmask], dim=1)
        x = self.drop(x)
        for block in self.blocks[:upto]:
            x = block(x, key_mask)
        return x, key_mask, (P, T)
