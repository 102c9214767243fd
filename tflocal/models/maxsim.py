"""MaxSim (FILIP / ColBERT late interaction): no parameters, joint-space caches only."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cache_tools.store.schema import CacheSpec
from tflocal.errors import UserError
from tflocal.models.base import Head
from tflocal.models.config import ModelConfig
from tflocal.pairs.batch import PairBatch


def maxsim_score(
    tokens: torch.Tensor, token_mask: torch.Tensor, patches: torch.Tensor, patch_mask: torch.Tensor
) -> torch.Tensor:
    """Each real caption token takes its best-matching real patch (cosine); the mean over tokens.

    tokens [B, T, D], token_mask [B, T] bool (True = real), patches [B, P, D], patch_mask [B, P] bool
    -> [B] float32. A pair with no real token scores 0.
    """
    B, T, D = tokens.shape
    assert token_mask.shape == (B, T), f"token_mask {tuple(token_mask.shape)} != {(B, T)}"
    assert patches.ndim == 3 and patches.shape[0] == B and patches.shape[2] == D, (
        f"patches {tuple(patches.shape)} do not match tokens {tuple(tokens.shape)}"
    )
    assert patch_mask.shape == patches.shape[:2], (
        f"patch_mask {tuple(patch_mask.shape)} != {tuple(patches.shape[:2])}"
    )
    q = F.normalize(tokens.float(), dim=-1)
    k = F.normalize(patches.float(), dim=-1)
    sim = torch.einsum("btd,bpd->btp", q, k)  # [B, T, P]
    sim = sim.masked_fill(~patch_mask[:, None, :], float("-inf"))
    best = sim.amax(dim=-1)  # [B, T]
    best = torch.where(token_mask, best, torch.zeros_like(best))
    n = token_mask.sum(dim=-1).clamp(min=1)
    return best.sum(dim=-1) / n


class MaxSimHead(Head):
    """Parameter-free late interaction over joint-space patch and caption tokens."""

    needs = ("patches", "patch_mask", "tokens", "token_mask")
    separable = True  # the unit-normalized patches: what the late-interaction index stores

    def __init__(self, cfg: ModelConfig | None = None, spec: CacheSpec | None = None):
        super().__init__()
        if spec is not None and not spec.joint_tokens:
            raise UserError(
                f"head 'maxsim' needs patch and caption tokens in one joint space, but cache encoder "
                f"{spec.encoder!r} has space={spec.space!r}, image_dim={spec.image_dim}, "
                f"text_dim={spec.text_dim}: use head 'tflocal' or 'global', or a joint-space encoder"
            )

    def forward(self, batch: PairBatch) -> torch.Tensor:
        """batch.tokens [B,T,D], batch.patches [B,P,D] (+ masks) -> [B]."""
        return maxsim_score(batch.tokens, batch.token_mask, batch.patches, batch.patch_mask)
