"""Building blocks of the TFLocal head: a pre-norm transformer block with key-padding masks and
position tables (learned or sinusoidal; 2-D for patches, 1-D for caption tokens)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    """Pre-norm transformer block: x + Attn(LN(x)), then x + MLP(LN(x)).

    x [B, S, d], key_mask [B, S] bool (True = real key) -> [B, S, d]. Masked keys get exactly
    zero attention weight, so padding never changes the outputs at real positions.
    """

    def __init__(
        self, width: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0, init: str = "default"
    ):
        """``init`` 'zero': the attention and feed-forward output projections start at 0, so the
        block starts as the identity; 'default': PyTorch's initialization."""
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.ln1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.ln2 = nn.LayerNorm(width)
        hidden = int(round(width * mlp_ratio))
        self.mlp = nn.Sequential(
            nn.Linear(width, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, width),
            nn.Dropout(dropout),
        )
        if init == "zero":
            for out in (self.proj, self.mlp[3]):
                nn.init.zeros_(out.weight)
                nn.init.zeros_(out.bias)

    def attention_weights(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """The attention probabilities of this block's forward: x [B, S, d] -> [B, heads, S, S]
        (masked keys get 0)."""
        B, S, d = x.shape
        q, k, _ = self.qkv(self.ln1(x)).view(B, S, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        logits = (q @ k.transpose(-1, -2)) / math.sqrt(d // self.heads)
        logits = logits.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        return torch.softmax(logits, dim=-1)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        B, S, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(B, S, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn = F.scaled_dot_product_attention(
            q, k, v, attn_mask=key_mask[:, None, None, :], dropout_p=self.dropout if self.training else 0.0
        )  # [B, h, S, d/h]
        x = x + F.dropout(self.proj(attn.transpose(1, 2).reshape(B, S, d)), self.dropout, self.training)
        return x + self.mlp(self.ln2(x))

    def forward_packed(self, x: torch.Tensor, real: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """The same block on the real positions only: x [N, d], the rows ``real`` [N] (long,
        ascending) of a flattened [B, S] whose mask is ``key_mask`` [B, S] -> [N, d]. Every step
        but attention works on the N real rows; attention runs on them scattered into [B, S]
        (padded keys get zero weight, padded queries are dropped), so the outputs are those of
        :meth:`forward` at the real positions, for less work where much of [B, S] is padding."""
        B, S = key_mask.shape
        d = x.shape[1]
        qkv = self.qkv(self.ln1(x))  # [N, 3d]
        spread = qkv.new_zeros(B * S, 3 * d).index_copy(0, real, qkv)
        q, k, v = spread.view(B, S, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn = F.scaled_dot_product_attention(
            q, k, v, attn_mask=key_mask[:, None, None, :], dropout_p=self.dropout if self.training else 0.0
        )  # [B, h, S, d/h]
        attn = gather_rows(attn.transpose(1, 2).reshape(B * S, d), real)  # [N, d]
        x = x + F.dropout(self.proj(attn), self.dropout, self.training)
        return x + self.mlp(self.ln2(x))


def norm_linear(seq: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """``seq(x)`` for ``seq`` = Sequential(LayerNorm(D), Linear(D, d)) and x [..., D] -> [..., d],
    written as ``Linear(W * gamma, b + W @ beta)`` of the normalized x: the same function, whose
    backward needs no gradient of the normalized input when x needs none (frozen features: the
    [rows, D] product and the norm's backward are skipped). Otherwise ``seq(x)`` as it is."""
    norm, lin = seq[0], seq[1]
    if x.requires_grad or norm.weight is None or norm.bias is None:
        return seq(x)
    normalized = F.layer_norm(x, norm.normalized_shape, None, None, norm.eps)
    bias = lin.weight @ norm.bias if lin.bias is None else lin.bias + lin.weight @ norm.bias
    return F.linear(normalized, lin.weight * norm.weight, bias)


def sinusoid_table(n: int, width: int) -> torch.Tensor:
    """[n, width] fixed sin/cos position table (Vaswani et al.)."""
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    half = width // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / max(half, 1))
    table = torch.zeros(n, width)
    table[:, 0 : 2 * half : 2] = torch.sin(pos * freq)
    table[:, 1 : 2 * half : 2] = torch.cos(pos * freq)
    return table


def gather_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[index]`` along dim 0 for a long ``index`` of any shape -> [*index.shape, *x.shape[1:]],
    with a backward that sums the gradient of repeated rows in a fixed order.

    Plain ``x[index]`` is not reproducible in training on a CPU with several threads: its backward
    (``index_put_`` with accumulate) adds the rows of repeated indices with atomic adds from all
    threads once the gradient has 32768 elements or more, in an order that changes run to run, so
    two runs with the same seed drift apart by rounding (then by points of accuracy). This goes
    through ``F.embedding`` instead: its CPU backward gives each weight row to one thread, which
    adds that row's gradients in index order, and its CUDA backward sorts the indices (where
    ``index_select``'s backward, ``index_add_``, adds atomically on CUDA)."""
    rows = F.embedding(index.reshape(-1), x.reshape(x.shape[0], -1))
    return rows.reshape(*index.shape, *x.shape[1:])


class PositionTable(nn.Module):
    """Positions 0..n-1 -> [n, width] vectors, learned (small random init) or sinusoidal (fixed)."""

    def __init__(self, n: int, width: int, kind: str = "learned"):
        super().__init__()
        self.n = n
        if kind == "learned":
            self.table = nn.Parameter(torch.randn(n, width) * 0.02)
        else:
            self.register_buffer("table", sinusoid_table(n, width), persistent=False)

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        """index: long tensor of any shape, values in [0, n) -> [..., width]."""
        return gather_rows(self.table, index)


class GridPositions(nn.Module):
    """2-D patch positions over a [grid_h, grid_w] grid, patches row-major. ``forward(P)`` ->
    [P, width]; patches past grid_h*grid_w (padding) get zeros.

    learned: row table + column table (each [n, width]); sinusoidal: the MAE 2-D sin-cos layout,
    a row code in the first half of the channels and a column code in the second half (a sum of
    two equal 1-D tables would give (r, c) and (c, r) the same vector)."""

    def __init__(self, grid: tuple[int, int], width: int, kind: str = "learned"):
        super().__init__()
        self.grid_h, self.grid_w = int(grid[0]), int(grid[1])
        if kind == "learned":
            self.rows = PositionTable(self.grid_h, width, kind)
            self.cols = PositionTable(self.grid_w, width, kind)
        else:
            half = width // 2
            rows = torch.cat([sinusoid_table(self.grid_h, half), torch.zeros(self.grid_h, width - half)], 1)
            cols = torch.cat([torch.zeros(self.grid_w, half), sinusoid_table(self.grid_w, width - half)], 1)
            self.rows = PositionTable(self.grid_h, width, kind)
            self.cols = PositionTable(self.grid_w, width, kind)
            self.rows.table, self.cols.table = rows, cols  # fixed buffers

    def forward(self, n_patches: int) -> torch.Tensor:
        n_grid = self.grid_h * self.grid_w
        idx = torch.arange(min(n_patches, n_grid), device=self.rows.table.device)
        pos = self.rows(idx // self.grid_w) + self.cols(idx % self.grid_w)
        if n_patches > n_grid:
            pos = torch.cat([pos, pos.new_zeros(n_patches - n_grid, pos.shape[1])])
        return pos


def once_per_caption(fn, *xs: torch.Tensor):
    """``fn(*xs)`` where every x [B, ...] repeats one row with stride 0 over dim 0 (one caption
    against B images, as :func:`tflocal.pairs.assemble.pair_batch` builds a query's pairs): computed on
    the first row and expanded to B (a view, no copy); otherwise ``fn(*xs)`` as is. ``fn`` returns
    a tensor [1|B, ...] or a tuple of them."""
    B = int(xs[0].shape[0])
    if B < 2 or any(x.stride(0) != 0 or x.shape[0] != B for x in xs):
        return fn(*xs)
    out = fn(*(x[:1] for x in xs))
    if isinstance(out, tuple):
        return tuple(o.expand(B, *o.shape[1:]) for o in out)
    return out.expand(B, *out.shape[1:])
