"""Random head inputs: the cache attributes of three encoder layouts, and a PairBatch of random
features for any of them.

``VIT``: hidden-space patches (768) and tokens (512) on a 7x7 grid with joint-space globals (512);
``JOINT``: everything in one 16-d joint space on a 2x3 grid; ``TOWERS``: two towers of different
widths (patches 40, tokens 12) on a 2x3 grid, no shared global space.
"""

from __future__ import annotations

import torch

from tflocal.models import PairBatch

VIT = dict(
    encoder="fake:vit", image_dim=768, text_dim=512, global_image_dim=512, global_text_dim=512,
    grid=[7, 7], context_length=77, space="hidden", global_space="joint",
)  # fmt: skip
JOINT = dict(
    VIT, image_dim=16, text_dim=16, global_image_dim=16, global_text_dim=16, grid=[2, 3], space="joint"
)
TOWERS = dict(
    VIT, image_dim=40, text_dim=12, global_image_dim=40, global_text_dim=12, grid=[2, 3], global_space="none"
)


def make_batch(attrs: dict, B: int = 3, T: int = 5, seed: int = 0) -> PairBatch:
    """``B`` pairs (at most 3) of random features shaped by ``attrs``: patches [B, P, image_dim]
    (P = grid cells, all real), tokens [B, T, text_dim] with rows of T, T - 2 and 1 real tokens,
    globals [B, global_image_dim] / [B, global_text_dim]; the same ``seed`` gives the same batch."""
    g = torch.Generator().manual_seed(seed)
    P = attrs["grid"][0] * attrs["grid"][1]
    lengths = torch.tensor([T, T - 2, 1][:B])
    token_mask = torch.arange(T)[None, :] < lengths[:, None]
    return PairBatch(
        patches=torch.randn(B, P, attrs["image_dim"], generator=g),
        patch_mask=torch.ones(B, P, dtype=torch.bool),
        tokens=torch.randn(B, T, attrs["text_dim"], generator=g),
        token_mask=token_mask,
        image_global=torch.randn(B, attrs["global_image_dim"], generator=g),
        text_global=torch.randn(B, attrs["global_text_dim"], generator=g),
    )


def with_layout(batch: PairBatch, counts: bool = False) -> PairBatch:
    """``batch`` (3 rows, T >= 5) with a caption layout: row 0 objects {0,1} and {3,4}, relation
    token 2 links them; row 1 one object {0,1,2}; row 2 no object (word-level fallback). With
    ``counts``, row 0's objects state 2 and 3 ("two ...", "three ...") and the others none."""
    B, T = batch.tokens.shape[:2]
    seg = torch.zeros(B, 2, T, dtype=torch.bool)
    seg[0, 0, [0, 1]] = seg[0, 1, [3, 4]] = True
    seg[1, 0, [0, 1, 2]] = True
    rel_tok = torch.zeros(B, 1, T, dtype=torch.bool)
    rel_tok[0, 0, 2] = True
    rel = torch.full((B, 1, 2), -1, dtype=torch.long)
    rel[0, 0] = torch.tensor([0, 1])
    batch.segments, batch.relation_tokens, batch.relations = seg, rel_tok, rel
    if counts:
        batch.counts = torch.tensor([[2, 3], [0, 0], [0, 0]])
    return batch
