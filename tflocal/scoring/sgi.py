"""SGI: structured, training-free inference over the frozen encoder's own global embeddings.

A caption is split into segments by the concept parser (each object with its attributes; each
relation). Each segment is encoded as a text; it is matched to its best region among the whole
image and the cached crops (cosine of global embeddings); the segment matches are averaged and
optionally mixed with the caption's global score::

    sgi(i, c) = (1 - w) * mean_s max_r cos(seg_s, region_r) + w * cos(image_i, caption_c)

A caption without segments scores its global cosine. Needs a cache built with crops and an
encoder (segments are not cached; their embeddings are memoized per string).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from tflocal.concepts import segments
from tflocal.errors import UserError
from tflocal.pairs.assemble import Pairs
from tflocal.scoring.base import Scorer


def default_segmenter() -> Callable[[str], list[str]]:
    return segments


def sgi_score(
    segments: torch.Tensor,
    segment_mask: torch.Tensor,
    regions: torch.Tensor,
    global_score: torch.Tensor,
    weight: float,
) -> torch.Tensor:
    """segments [B, S, D] (segment_mask [B, S] True = real), regions [B, R, D], global_score [B]
    -> [B]: (1 - w) * mean over real segments of the best region cosine + w * global_score;
    rows without segments get global_score."""
    B, S, D = segments.shape
    assert segment_mask.shape == (B, S) and regions.shape[0] == B and regions.shape[2] == D, (
        "sgi_score shapes"
    )
    sim = torch.einsum(
        "bsd,brd->bsr", F.normalize(segments.float(), dim=-1), F.normalize(regions.float(), dim=-1)
    )
    best = sim.amax(-1).masked_fill(~segment_mask, 0.0)
    n = segment_mask.sum(-1)
    seg = best.sum(-1) / n.clamp(min=1)
    mixed = (1.0 - weight) * seg + weight * global_score
    return torch.where(n > 0, mixed, global_score)


class SGIScorer(Scorer):
    """See the module docstring. ``weight``: share of the global score (0 = segments only)."""

    needs = ("image_global", "text_global", "crops", "captions")

    def __init__(
        self,
        cache: Any = None,
        encoder: Any = None,
        weight: float = 0.0,
        segmenter: Callable[[str], list[str]] | None = None,
        **kw: Any,
    ):
        """``kw``: batch_size, device, progress (see :class:`Scorer`)."""
        super().__init__(cache, encoder, **kw)
        if not 0.0 <= weight <= 1.0:
            raise UserError(f"scorer 'sgi': global weight {weight} must lie in [0, 1] (e.g. sgi:0.3)")
        if cache is not None and not cache.has_crops:
            raise UserError(
                f"scorer 'sgi' needs crops: rebuild cache {cache.path} with `tflocal cache --crops`"
            )
        if cache is not None and not cache.spec.joint_globals:
            raise UserError(
                f"scorer 'sgi' needs comparable image/text global embeddings; cache {cache.path} has none"
            )
        self.weight = float(weight)
        self.name = "sgi" if weight == 0 else f"sgi:{weight:g}"
        self.segmenter = segmenter or default_segmenter()
        self._memo: dict[str, torch.Tensor] = {}

    def segment_embeddings(self, texts: list[str]) -> torch.Tensor:
        """Global text embeddings [len(texts), D] of segment strings (memoized)."""
        todo = [t for t in dict.fromkeys(texts) if t not in self._memo]
        for s in range(0, len(todo), self.batch_size):
            chunk = todo[s : s + self.batch_size]
            with torch.inference_mode():
                g = self.encoder.encode_texts(chunk).global_.detach().float().cpu()
            for t, v in zip(chunk, g):
                self._memo[t] = v
        if not texts:
            return torch.zeros(0, int(self.encoder.global_text_dim))
        return torch.stack([self._memo[t] for t in texts])

    def score_pairs_batch(self, pairs: Pairs) -> torch.Tensor:
        """Pairs of B -> [B] float32."""
        b = pairs.batch
        assert pairs.captions is not None and pairs.crops is not None
        segs = [list(self.segmenter(c)) for c in pairs.captions]
        S = max((len(s) for s in segs), default=0)
        B, D = b.image_global.shape
        seg_t = torch.zeros(B, max(S, 1), D)
        mask = torch.zeros(B, max(S, 1), dtype=torch.bool)
        flat = [t for s in segs for t in s]
        if flat:
            emb = self.segment_embeddings(flat)
            k = 0
            for i, s in enumerate(segs):
                seg_t[i, : len(s)] = emb[k : k + len(s)]
                mask[i, : len(s)] = True
                k += len(s)
        regions = torch.cat([b.image_global[:, None, :], pairs.crops], dim=1)  # [B, 1 + C, D]
        glob = (F.normalize(b.image_global.float(), dim=-1) * F.normalize(b.text_global.float(), dim=-1)).sum(
            -1
        )
        return sgi_score(seg_t, mask, regions, glob, self.weight)
