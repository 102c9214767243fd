"""Tiny synthetic worlds for the segments read-out's terms: D-dim unit vectors on a 4x4 grid,
a tiny head whose text projections start equal to its image ones (image and caption vectors
share one space here, so a test is about reading counts and relations, not about learning that
alignment), PairBatches of N images with C candidate captions each, and the training loop."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from helpers.pair_batches import TOWERS
from tflocal.models import PairBatch, SegmentHead, build_head

D, GRID = 16, (4, 4)
P = GRID[0] * GRID[1]
SPEC = dict(TOWERS, image_dim=D, text_dim=D, global_image_dim=D, global_text_dim=D, grid=list(GRID))
TINY = dict(width=32, depth=0, heads=4, readout="segments", global_path=False)


def unit(g: torch.Generator, *shape: int) -> torch.Tensor:
    """Random unit vectors [*shape, D]."""
    return F.normalize(torch.randn(*shape, D, generator=g), dim=-1)


def tiny(name: str = "tflocal", **over) -> torch.nn.Module:
    """A tiny head (seed 0); a segments head starts with its text projections equal to its image ones."""
    torch.manual_seed(0)
    head = build_head(name, {**TINY, **over}, SPEC)
    if isinstance(head, SegmentHead):
        head.token_in.load_state_dict(head.patch_in.state_dict())
        head.text_out.load_state_dict(head.image_out.state_dict())
    return head


def caption_batch(
    patches: torch.Tensor,
    tokens: torch.Tensor,
    segments: torch.Tensor,
    relations: torch.Tensor,
    rel_tokens: torch.Tensor,
    counts: torch.Tensor,
    numbers: torch.Tensor | None = None,
) -> PairBatch:
    """N images [N, P, D] each paired with its C captions [N, C, T, D] -> PairBatch of N*C pairs
    (global embeddings: the mean patch and the mean token, what a pooled encoder would give;
    ``numbers`` [N, C, K, T]: the phrases' number tokens, when given)."""
    N, C, T, _ = tokens.shape
    rep = lambda x: x[:, None].expand(N, C, *x.shape[1:]).reshape(N * C, *x.shape[1:])  # noqa: E731
    flat = lambda x: x.reshape(N * C, *x.shape[2:])  # noqa: E731
    return PairBatch(
        patches=rep(patches),
        patch_mask=torch.ones(N * C, P, dtype=torch.bool),
        tokens=flat(tokens),
        token_mask=torch.ones(N * C, T, dtype=torch.bool),
        image_global=rep(patches.mean(1)),
        text_global=flat(tokens.mean(2)),
        segments=flat(segments),
        relation_tokens=flat(rel_tokens),
        relations=flat(relations),
        counts=flat(counts),
        number_tokens=None if numbers is None else flat(numbers),
    )


def train(head: torch.nn.Module, world, steps: int = 300, n: int = 32) -> torch.nn.Module:
    """Train ``head`` on ``world(n, seed)``'s candidate sets of 3 captions per image (the true one
    first), Adam 3e-3, one fresh world a step, plus the head's auxiliary losses as the training
    loop adds them; returns it in eval mode."""
    opt = torch.optim.Adam(head.parameters(), lr=3e-3)
    head.train()
    positive = (torch.arange(3 * n) % 3) == 0
    for step in range(steps):
        scores = head(world(n, seed=1000 + step)).view(n, 3)
        loss = F.cross_entropy(scores, torch.zeros(n, dtype=torch.long))
        loss = loss + sum(head.auxiliary_losses(positive).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return head.eval()
