"""Right-padding of variable-length token arrays: the one place a batch of captions is padded."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pad_tokens(
    tokens: Sequence[np.ndarray], dim: int, max_len: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """B arrays [T_i, D] -> (float16 [B, T, D] zero-padded, bool mask [B, T], True = real token).

    ``T`` is the longest array, or ``max_len`` when given (longer arrays are cut).
    """
    t_max = max((len(t) for t in tokens), default=0) if max_len is None else int(max_len)
    out = np.zeros((len(tokens), t_max, dim), dtype=np.float16)
    mask = np.zeros((len(tokens), t_max), dtype=bool)
    for i, t in enumerate(tokens):
        n = min(len(t), t_max)
        out[i, :n] = t[:n]
        mask[i, :n] = True
    return out, mask
