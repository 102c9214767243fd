"""The training loss: cross-entropy over candidate sets (the positive in column 0)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tflocal.pairs.candidates import CandidateBatch


def candidate_loss(
    scores: torch.Tensor, batch: CandidateBatch, temperature: float, t2i_weight: float = 1.0
) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy over each candidate set (target: column 0). scores [N] -> (scalar loss, stats)."""
    loss, logits = set_cross_entropy(scores, batch, temperature, t2i_weight)
    acc = (logits[: batch.n_i2t].argmax(dim=1) == 0).float().mean()
    return loss, {"acc": float(acc)}


def set_cross_entropy(
    scores: torch.Tensor, batch: CandidateBatch, temperature: float, t2i_weight: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """scores [N] -> (mean cross-entropy of the image->text sets + t2i_weight x that of the
    text->image sets, logits [S, C])."""
    logits = batch.score_matrix(scores.float()) / temperature  # [S, C]
    ce = F.cross_entropy(
        logits, torch.zeros(batch.n_sets, dtype=torch.long, device=logits.device), reduction="none"
    )
    loss = ce[: batch.n_i2t].mean()
    if batch.n_sets > batch.n_i2t:
        loss = loss + t2i_weight * ce[batch.n_i2t :].mean()
    return loss, logits
