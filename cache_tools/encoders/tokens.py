"""Helpers shared by the adapters: cutting padded token states into real tokens, and
turning tokenizer pieces into readable strings."""

from __future__ import annotations

import torch

PIECE_MARKS = ("▁", "Ġ")  # sentencepiece / byte-level BPE word-start marks
_WORD_END = "</w>"  # CLIP BPE word-end mark


def clean_piece(piece: str) -> str:
    """A tokenizer piece as a person reads it: ``'cat</w>'`` -> ``'cat'``, ``'▁cat'`` -> ``'cat'``,
    ``'##at'`` stays (WordPiece continuation is informative); special tokens are kept as is.
    A piece that is only a mark (``'▁'``) stays unchanged so no token string is empty."""
    out = piece
    if out.endswith(_WORD_END) and len(out) > len(_WORD_END):
        out = out[: -len(_WORD_END)]
    for mark in PIECE_MARKS:
        if out.startswith(mark) and len(out) > len(mark):
            out = out[len(mark) :]
    return out


def split_real(states: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
    """states [B, L, D], mask [B, L] (True/1 = real token) -> B tensors [T_i, D] (float32, CPU),
    the real tokens of each row in order."""
    assert states.dim() == 3 and mask.shape == states.shape[:2], (states.shape, mask.shape)
    states = states.float().cpu()
    mask = mask.bool().cpu()
    return [states[i][mask[i]] for i in range(states.shape[0])]


def lengths_to_mask(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """lengths [B] -> mask [B, width] with True in the first lengths[i] positions."""
    return torch.arange(width, device=lengths.device)[None, :] < lengths[:, None]
