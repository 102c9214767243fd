"""Scorers backed by a head module: global cosine, MaxSim, or a trained checkpoint.

A head is a :class:`tflocal.models.base.Head` mapping a :class:`tflocal.models.PairBatch` to
``[B]`` scores, with a ``needs`` tuple naming the PairBatch fields it reads (see :mod:`tflocal.models`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cache_tools.store.schema import CacheSpec
from tflocal.errors import UserError
from tflocal.models.base import Head
from tflocal.models.checkpoint import load_head
from tflocal.models.cosine import CosineHead
from tflocal.models.maxsim import MaxSimHead
from tflocal.pairs.assemble import Pairs, from_cache
from tflocal.scoring.base import Scorer


def _spec(cache: Any, encoder: Any) -> CacheSpec | None:
    """The spec of the cache (or of the encoder's output, for raw inputs only), if any."""
    if cache is not None:
        return cache.spec
    return CacheSpec.from_attrs(encoder.metadata()) if encoder is not None else None


def check_caption_length(head: Head, name: str, token_mask: torch.Tensor | None) -> None:
    """UserError when a caption (token_mask [B, T], True = real token) has more tokens than the
    head's ``max_text`` (its text position table): one line naming the scorer and the fix."""
    max_text = head.max_text
    if max_text is None or token_mask is None:
        return
    n_tok = token_mask.sum(dim=1)
    if bool((n_tok > max_text).any()):
        b = int(torch.argmax(n_tok))
        raise UserError(
            f"scorer {name!r}: a caption has {int(n_tok[b])} tokens, more than the {max_text} "
            "this head was trained for: shorten it, or retrain with a larger model.max_text_tokens"
        )


def low_precision_copy(head: torch.nn.Module, precision: str, device: Any) -> torch.nn.Module:
    """The module a scorer's forwards run: ``head`` itself, or under bf16 (fp16 on CUDA) a copy
    with its weights cast once. Autocast alone casts every weight on every call, which for one
    caption through a w512 d4 text tower costs more than the products (``bench/rerank.py``).
    Every head feeds its first layer in that layer's weight dtype and returns float32;
    ``head`` stays float32 (what an index fingerprints)."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    if dtype is None or (dtype == torch.float16 and torch.device(device).type != "cuda"):
        return head  # fp32, or fp16 on a CPU (which runs fp32)
    if not any(p.is_floating_point() for p in head.parameters()):
        return head
    return copy.deepcopy(head).to(dtype).eval()


class HeadScorer(Scorer):
    """Scores pairs with ``head(PairBatch) -> [B]`` (eval mode, no gradients)."""

    def __init__(
        self,
        head: Head,
        name: str,
        cache: Any = None,
        encoder: Any = None,
        batch_size: int = 256,
        device: str = "cpu",
        checkpoint: str = "",
        progress: bool = True,
        precision: str = "fp32",
    ):
        if not isinstance(head, Head):
            raise TypeError(f"scorer {name!r}: {type(head).__name__} is not a tflocal.models.base.Head")
        super().__init__(cache, encoder, batch_size, device, progress, precision)
        self.head = head.to(self.device).eval()
        self.run_head = low_precision_copy(self.head, self.precision, self.device)
        self.name = name
        self.needs = tuple(head.needs)
        self.checkpoint = checkpoint
        # heads that take PairBatch.pair_image run their image side once per distinct image
        self.dedup_images = bool(head.accepts_pair_image)

    def score_pairs_batch(self, pairs: Pairs) -> torch.Tensor:
        """Pairs of B -> [B] float32."""
        check_caption_length(self.head, self.name, pairs.batch.token_mask)
        with self.autocast():
            out = self.run_head(pairs.batch.to(self.device))
        if out.shape != (len(pairs.batch),):
            raise RuntimeError(
                f"head {self.name!r} returned shape {tuple(out.shape)}, expected ({len(pairs.batch)},)"
            )
        return out.float().cpu()

    def word_region_attention(self, image_idx: Sequence[int], text_idx: Sequence[int]) -> list[np.ndarray]:
        """For B pairs, how much each caption token attends to each patch: B arrays [T_b, P].

        Uses the head's own ``word_region_attention(PairBatch) -> [B, T, P]`` when it has one;
        otherwise the softmax over patches of token-patch cosine similarity (joint-space caches
        only), which is what a parameter-free MaxSim looks at.
        """
        cache = self._require_cache()
        pairs = from_cache(
            cache,
            np.asarray(image_idx),
            np.asarray(text_idx),
            tuple({"patches", "patch_mask", "tokens", "token_mask", *self.needs} - {"captions", "crops"}),
        )
        b = pairs.batch
        with torch.inference_mode():
            if self.head.word_maps:
                att = self.head.word_region_attention(b.to(self.device)).float().cpu()
            else:
                att = token_patch_attention(b.tokens, b.patches, cache.spec)
        lengths = b.token_mask.sum(1).tolist()
        return [att[i, : lengths[i]].numpy() for i in range(att.shape[0])]


def token_patch_attention(
    tokens: torch.Tensor, patches: torch.Tensor, spec: CacheSpec, temperature: float = 0.05
) -> torch.Tensor:
    """tokens [B, T, D], patches [B, P, D] in one joint space -> [B, T, P], rows sum to 1:
    softmax over patches of cosine / temperature."""
    if not spec.joint_tokens or tokens.shape[-1] != patches.shape[-1]:
        raise UserError(
            f"alignment maps from token-patch similarity need a joint-space cache; encoder {spec.encoder!r} "
            f"has space={spec.space!r}: use a trained checkpoint whose head provides word_region_attention"
        )
    sim = torch.einsum(
        "btd,bpd->btp", F.normalize(tokens.float(), dim=-1), F.normalize(patches.float(), dim=-1)
    )
    return torch.softmax(sim / temperature, dim=-1)


class CosineScorer(HeadScorer):
    """The frozen model's own global cosine; ``score_matrix`` is one normalized matrix product."""

    def __init__(self, cache: Any = None, encoder: Any = None, **kw: Any):
        """``kw``: batch_size, device, progress (see :class:`Scorer`)."""
        super().__init__(CosineHead(None, _spec(cache, encoder)), "cosine", cache, encoder, **kw)

    def score_matrix(
        self, image_idx: Sequence[int] | np.ndarray, text_idx: Sequence[int] | np.ndarray
    ) -> np.ndarray:
        """image_idx [I], text_idx [J] -> [I, J] cosine of the global embeddings."""
        cache = self._require_cache()
        a = F.normalize(torch.from_numpy(cache.image_global(np.asarray(image_idx, dtype=np.int64))), dim=-1)
        b = F.normalize(torch.from_numpy(cache.text_global(np.asarray(text_idx, dtype=np.int64))), dim=-1)
        return (a @ b.T).numpy()


def maxsim_scorer(cache: Any = None, encoder: Any = None, **kw: Any) -> HeadScorer:
    """Parameter-free late interaction over joint-space patch and caption tokens. ``kw``:
    batch_size, device, progress, precision (see :class:`Scorer`)."""
    return HeadScorer(MaxSimHead(None, _spec(cache, encoder)), "maxsim", cache, encoder, **kw)


GENERIC_STEMS = ("last", "best", "final", "checkpoint", "model")
"""Checkpoint file names that say nothing: the scorer is then named ``<run folder>/<stem>``."""


def checkpoint_label(path: str | Path) -> str:
    """A checkpoint's name in reports: its stem, or ``<run folder>/<stem>`` for a generic stem."""
    p = Path(path)
    return f"{p.parent.name}/{p.stem}" if p.stem in GENERIC_STEMS and p.parent.name else p.stem


def checkpoint_scorer(
    path: str, cache: Any = None, encoder: Any = None, device: str = "cpu", **kw: Any
) -> HeadScorer:
    """A trained head from ``tflocal train``; refuses a cache from another embedding space.
    ``kw``: batch_size, progress, precision (see :class:`Scorer`)."""
    model, _info = load_head(path, cache=cache, device=device)
    return HeadScorer(
        model, checkpoint_label(path), cache, encoder, device=device, checkpoint=str(path), **kw
    )
