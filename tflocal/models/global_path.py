"""The global path of every TFLocal read-out: the global head inside the localized one.

``score = w_global · g + (the read-out's localized terms, each with its own learned weight)``

where ``g`` is exactly what the standalone global head of the same config (``model.global_form``:
:class:`~tflocal.models.global_head.GlobalHead` or ``DualGlobalHead``) computes from the two
frozen global embeddings. ``g`` enters the mixed score *detached*: the global path is trained on
its own candidate-set loss (the training loop adds it, see :meth:`GlobalPath.auxiliary_scores`),
the same loss the standalone global head is trained on, so it becomes the same function; the
mixed loss trains only the mix weight and the localized terms. Hence where the localized terms
are constant (no parsed structure, and their weight left at its initial 0 where that applies)
the read-out ranks exactly as its global head does, and the localized terms can only add what
they earn on the mixed loss. Built first in a read-out's ``__init__``, the global path starts
from the same weights as a standalone global head under the same seed.
"""

from __future__ import annotations

import torch
from torch import nn

from cache_tools.store.schema import CacheSpec
from tflocal.models.config import ModelConfig
from tflocal.models.global_head import global_head
from tflocal.pairs.batch import PairBatch

GLOBAL_NEEDS = ("image_global", "text_global")


class GlobalPath(nn.Module):
    """image_global [B, D_gi], text_global [B, D_gt] -> ``w_global · g.detach()`` [B]; in training
    mode it keeps ``g`` [B] (with its graph) for :meth:`auxiliary_scores`."""

    def __init__(self, cfg: ModelConfig, spec: CacheSpec):
        super().__init__()
        self.head = global_head(cfg, spec)
        self.weight = nn.Parameter(torch.tensor(1.0))
        self.local_loss = cfg.local_loss
        self._pending: dict[str, torch.Tensor] = {}

    def forward(self, batch: PairBatch, local: torch.Tensor | None = None) -> torch.Tensor:
        """``w_global · g.detach()`` [B] (+ ``local`` [B], the read-out's localized score, when given;
        with ``local_loss`` it is also kept for a loss of its own)."""
        g = self.head(batch)
        self._pending = {}
        if self.training and torch.is_grad_enabled():
            self._pending["global"] = g
            if local is not None and self.local_loss:
                self._pending["local"] = local
        out = self.weight.float() * g.detach()
        return out if local is None else out + local

    def auxiliary_scores(self) -> dict[str, torch.Tensor]:
        """{'global': g [B](, 'local': [B])} from the last training-mode forward (then forgotten), else {}."""
        out, self._pending = self._pending, {}
        return out


def add_global_needs(needs: tuple[str, ...], cfg: ModelConfig) -> tuple[str, ...]:
    """A read-out's PairBatch fields plus the two global embeddings when it has a global path."""
    return (*needs, *GLOBAL_NEEDS) if cfg.global_path else needs
