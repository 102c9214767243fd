"""The one input every head scores: a batch of (image, caption) pairs."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch


@dataclass
class PairBatch:
    """B (image, caption) pairs; fields a head does not read may be None.

    patches: [B, P, D_img] patch tokens; patch_mask: [B, P] bool, True = real patch.
    tokens: [B, T, D_txt] caption tokens; token_mask: [B, T] bool, True = real token.
    image_global: [B, D_gi]; text_global: [B, D_gt] (the frozen model's own global embeddings).
    """

    patches: torch.Tensor | None = None
    patch_mask: torch.Tensor | None = None
    tokens: torch.Tensor | None = None
    token_mask: torch.Tensor | None = None
    image_global: torch.Tensor | None = None
    text_global: torch.Tensor | None = None

    def to(self, device: torch.device | str, non_blocking: bool = False) -> PairBatch:
        """A copy with every present tensor on ``device``."""
        return PairBatch(
            **{
                f.name: (None if v is None else v.to(device, non_blocking=non_blocking))
                for f in fields(self)
                for v in [getattr(self, f.name)]
            }
        )

    def __len__(self) -> int:
        for f in fields(self):
            v = getattr(self, f.name)
            if v is not None:
                return int(v.shape[0])
        return 0

    def select(self, index: torch.Tensor) -> PairBatch:
        """Rows ``index`` (a [B'] long tensor) of every present field."""
        return PairBatch(
            **{
                f.name: (None if v is None else v[index])
                for f in fields(self)
                for v in [getattr(self, f.name)]
            }
        )


PAIR_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(PairBatch))
