"""SGI: structured inference over the frozen encoder's own global embeddings.

A caption is split into segments by the concept parser (each object with its attributes; each
relation). Each segment is encoded as a text; it is matched to its best region among the whole
image and the cached crops; the segment matches are averaged and optionally mixed with the
caption's global score::

    sgi(i, c) = (1 - w) * mean_s max_r g(seg_s, region_r) + w * g(image_i, caption_c)

``g`` is the cosine of the two global embeddings when the cache's image and text globals share
one space (``spec.joint_globals``, e.g. CLIP: training-free), or a trained global head's score
(:mod:`tflocal.models.global_head`, scorer ``sgi@CKPT`` / ``sgi:W@CKPT``) where they do not (two
unaligned towers): the head scores a region's image global with a segment's text global as it
scores an image with a caption. A caption without segments scores ``g(image, caption)``. Needs a
cache built with crops and an encoder (segments are not cached; their embeddings are memoized per
string). The head runs in fp32, as the other built-in scorers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from tflocal.concepts import segments
from tflocal.errors import UserError
from tflocal.models.base import Head
from tflocal.models.global_head import GLOBAL_HEADS
from tflocal.pairs.assemble import Pairs
from tflocal.pairs.batch import PairBatch
from tflocal.scoring.base import Scorer
from tflocal.scoring.head import checkpoint_label


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
    return sgi_combine(sim, segment_mask, global_score, weight)


def sgi_combine(
    sim: torch.Tensor, segment_mask: torch.Tensor, global_score: torch.Tensor, weight: float
) -> torch.Tensor:
    """sim [B, S, R] (score of segment s with region r), segment_mask [B, S] (True = real),
    global_score [B] -> [B]: (1 - w) * mean over real segments of the best region score
    + w * global_score; rows without segments get global_score."""
    B, S, _ = sim.shape
    assert segment_mask.shape == (B, S) and global_score.shape == (B,), "sgi_combine shapes"
    sim, global_score = sim.float(), global_score.float()
    best = sim.amax(-1).masked_fill(~segment_mask, 0.0)
    n = segment_mask.sum(-1)
    seg = best.sum(-1) / n.clamp(min=1)
    mixed = (1.0 - weight) * seg + weight * global_score
    return torch.where(n > 0, mixed, global_score)


def global_head_pairs(head: Head, image_global: torch.Tensor, text_global: torch.Tensor) -> torch.Tensor:
    """A global head's score of every (region, segment) combination: image_global [B, R, D_gi],
    text_global [B, S, D_gt] -> [B, S, R] float32 (pair (b, s, r) = head(region r, segment s))."""
    B, R, Dgi = image_global.shape
    S, Dgt = text_global.shape[1], text_global.shape[2]
    assert text_global.shape[0] == B, "global_head_pairs shapes"
    img = image_global.float()[:, None, :, :].expand(B, S, R, Dgi).reshape(-1, Dgi)
    txt = text_global.float()[:, :, None, :].expand(B, S, R, Dgt).reshape(-1, Dgt)
    return head(PairBatch(image_global=img, text_global=txt)).float().reshape(B, S, R)


class SGIScorer(Scorer):
    """See the module docstring. ``weight``: share of the global score (0 = segments only);
    ``head``: a trained global head (:data:`tflocal.models.global_head.GLOBAL_HEADS`) scoring
    every (segment, region) and the (image, caption) global pair, or None for the cosine of the
    globals (joint-globals caches only); ``checkpoint``: the file it was loaded from, for labels."""

    needs = ("image_global", "text_global", "crops", "captions")

    def __init__(
        self,
        cache: Any = None,
        encoder: Any = None,
        weight: float = 0.0,
        segmenter: Callable[[str], list[str]] | None = None,
        head: Head | None = None,
        checkpoint: str = "",
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
        if head is not None and not isinstance(head, tuple(GLOBAL_HEADS.values())):
            what = f"checkpoint {checkpoint}" if checkpoint else "the head given"
            raise UserError(
                f"scorer 'sgi': {what} holds a {type(head).__name__}, not a global head; give a checkpoint "
                "of `tflocal train --head global` (sgi@CKPT)"
            )
        if cache is not None and head is None and not cache.spec.joint_globals:
            raise UserError(
                f"scorer 'sgi' needs comparable image/text global embeddings, and cache {cache.path} "
                f"(encoder {cache.spec.encoder!r}, global_space={cache.spec.global_space!r}) has none: "
                "give a trained global head, sgi@CKPT or sgi:W@CKPT (CKPT from `tflocal train --head global`)"
            )
        self.weight = float(weight)
        self.head = None if head is None else head.to(self.device).eval()
        self.checkpoint = str(checkpoint)
        base = "sgi" if weight == 0 else f"sgi:{weight:g}"
        if head is not None:
            base += f"@{checkpoint_label(checkpoint) if checkpoint else 'head'}"
        self.name = base
        self.segmenter = segmenter or default_segmenter()
        self._memo: dict[str, torch.Tensor] = {}

    def segment_embeddings(self, texts: list[str]) -> torch.Tensor:
        """Global text embeddings [len(texts), D_gt] of segment strings (memoized)."""
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
        """Pairs of B -> [B] float32. Reads image_global [B, D_gi], text_global [B, D_gt] and
        crops [B, C, D_gi]; segments [B, S, D_gt] are encoded here."""
        b = pairs.batch
        assert pairs.captions is not None and pairs.crops is not None
        segs = [list(self.segmenter(c)) for c in pairs.captions]
        S = max((len(s) for s in segs), default=0)
        B, D = b.text_global.shape
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
        regions = torch.cat([b.image_global[:, None, :], pairs.crops], dim=1)  # [B, 1 + C, D_gi]
        if self.head is not None:
            dev = self.device
            whole = PairBatch(image_global=b.image_global.float(), text_global=b.text_global.float())
            glob = self.head(whole.to(dev))
            sim = global_head_pairs(self.head, regions.to(dev), seg_t.to(dev))
            return sgi_combine(sim.cpu(), mask, glob.float().cpu(), self.weight)
        glob = (F.normalize(b.image_global.float(), dim=-1) * F.normalize(b.text_global.float(), dim=-1)).sum(
            -1
        )
        return sgi_score(seg_t, mask, regions, glob, self.weight)
