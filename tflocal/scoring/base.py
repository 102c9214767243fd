"""The Scorer interface: one number per (image, caption) pair, over a cache or raw inputs.

A scorer states the inputs it ``needs`` (PairBatch field names, plus ``crops`` / ``captions``)
and implements :meth:`Scorer.score_pairs_batch` on a :class:`Pairs` batch; the base class reads
those inputs from the cache (``score``, ``score_matrix``) or encodes them on the fly from PIL
images and strings (``score_pairs``), in batches.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from cache_tools.encoders import load_encoder
from cache_tools.encoders.images import crop_boxes
from cache_tools.infra.precision import check_precision, get_autocast
from cache_tools.infra.progress import progress
from tflocal.errors import UserError
from tflocal.pairs.assemble import (
    IMAGE_FIELDS,
    Pairs,
    TextSide,
    encode_text_side,
    from_cache,
    from_raw,
    images_from_cache,
    make_pairs,
)


class Scorer(ABC):
    """Scores (image, caption) pairs.

    Attributes:
        name: label used in reports (``cosine``, ``maxsim``, ``sgi``, a checkpoint's name).
        needs: inputs read per pair.
        cache: the cache the indices of ``score`` / ``score_matrix`` refer to (may be None for
            ``score_pairs`` only).
        encoder: used by ``score_pairs`` (loaded from the cache's ``encoder`` attribute when
            first needed, if not given).
        checkpoint: path of the checkpoint the scorer was loaded from ("" if none).
        precision: ``fp32`` | ``bf16`` | ``fp16``: the head's forward runs a copy of it with its
            weights cast once, under autocast (trained heads, see ``HeadScorer.run_head``;
            ``fp16`` runs fp32 on a CPU). bf16 is faster for a wide head on CPUs with native
            bf16 (``bench/rerank.py`` measures it; see docs/results/performance.md).
        dedup_images: batches keep one copy of each distinct image's patches plus
            ``PairBatch.pair_image`` instead of a copy per pair (for heads that accept it).
    """

    name: str = "scorer"
    needs: tuple[str, ...] = ()
    checkpoint: str = ""
    dedup_images: bool = False

    def __init__(
        self,
        cache: Any = None,
        encoder: Any = None,
        batch_size: int = 256,
        device: str = "cpu",
        progress: bool = True,
        precision: str = "fp32",
    ):
        self.cache = cache
        self._encoder = encoder
        self.precision = check_precision(precision)
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        self.progress = progress

    def autocast(self) -> Any:
        """``precision`` on ``device`` as an autocast context (a no-op for fp32, and for fp16 on a
        CPU): what every forward of this scorer's head runs under."""
        return get_autocast(self.precision, self.device)

    # -- to implement ---------------------------------------------------------------------
    @abstractmethod
    def score_pairs_batch(self, pairs: Pairs) -> torch.Tensor:
        """Pairs of B (image, caption) -> [B] float32 scores (CPU)."""

    # -- shared machinery -----------------------------------------------------------------
    @property
    def encoder(self) -> Any:
        if self._encoder is None:
            name = (self.cache.attrs.get("encoder") if self.cache is not None else None) or ""
            if not name:
                raise UserError(
                    f"scorer {self.name!r} needs an encoder to score raw images and captions: pass encoder="
                )
            self._encoder = load_encoder(name)
        return self._encoder

    def _require_cache(self) -> Any:
        if self.cache is None:
            raise UserError(f"scorer {self.name!r} has no cache: load it with load_scorer(name, cache=...)")
        return self.cache

    def score(
        self, image_idx: Sequence[int] | np.ndarray, text_idx: Sequence[int] | np.ndarray
    ) -> np.ndarray:
        """image_idx [B], text_idx [B] cache rows -> [B] float32 scores of pairs (image_idx[b], text_idx[b])."""
        cache = self._require_cache()
        image_idx = np.asarray(image_idx, dtype=np.int64).reshape(-1)
        text_idx = np.asarray(text_idx, dtype=np.int64).reshape(-1)
        if image_idx.shape != text_idx.shape:
            raise ValueError(f"score: {image_idx.shape[0]} image rows vs {text_idx.shape[0]} text rows")
        if image_idx.size and (image_idx.min() < 0 or image_idx.max() >= cache.n_images):
            raise UserError(
                f"image rows must lie in [0, {cache.n_images}); got {image_idx.min()}..{image_idx.max()}"
            )
        if text_idx.size and (text_idx.min() < 0 or text_idx.max() >= cache.n_texts):
            raise UserError(
                f"text rows must lie in [0, {cache.n_texts}); got {text_idx.min()}..{text_idx.max()}"
            )
        out = np.empty(image_idx.shape[0], dtype=np.float32)
        starts = range(0, image_idx.shape[0], self.batch_size)
        bar = progress(
            starts,
            desc=f"scoring ({self.name})",
            unit="batch",
            leave=False,
            disable=not self.progress or len(starts) < 20,
        )
        with torch.inference_mode():
            for s in bar:
                sl = slice(s, s + self.batch_size)
                pairs = from_cache(cache, image_idx[sl], text_idx[sl], self.needs, self.dedup_images)
                out[sl] = self.score_pairs_batch(pairs).float().cpu().numpy()
        return out

    def score_matrix(
        self, image_idx: Sequence[int] | np.ndarray, text_idx: Sequence[int] | np.ndarray
    ) -> np.ndarray:
        """image_idx [I], text_idx [J] -> [I, J] float32 scores of every image with every text."""
        image_idx = np.asarray(image_idx, dtype=np.int64).reshape(-1)
        text_idx = np.asarray(text_idx, dtype=np.int64).reshape(-1)
        n_img, n_txt = image_idx.size, text_idx.size
        return self.score(np.repeat(image_idx, n_txt), np.tile(text_idx, n_img)).reshape(n_img, n_txt)

    def score_pairs(self, images: Sequence[Any], captions: Sequence[str]) -> np.ndarray:
        """B PIL images and B strings -> [B] float32 scores, encoding with the cache's encoder.

        Gives the same numbers as :meth:`score` on a cache built from the same inputs.
        """
        if len(images) != len(captions):
            raise UserError(
                f"score_pairs: {len(images)} images but {len(captions)} captions; pass one caption per image"
            )
        out = np.empty(len(images), dtype=np.float32)
        boxes = self._crop_boxes()
        with torch.inference_mode():
            for s in range(0, len(images), self.batch_size):
                sl = slice(s, s + self.batch_size)
                pairs = from_raw(self.encoder, images[sl], captions[sl], self.needs, boxes)
                out[sl] = self.score_pairs_batch(pairs).float().cpu().numpy()
        return out

    def score_text_query(self, caption: str | TextSide, image_idx: Sequence[int] | np.ndarray) -> np.ndarray:
        """One new caption against cached images image_idx [K] -> [K] float32. ``caption``: a
        string (encoded here) or its :class:`~tflocal.pairs.assemble.TextSide` of 1, already encoded
        with at least this scorer's text inputs."""
        cache = self._require_cache()
        image_idx = np.asarray(image_idx, dtype=np.int64).reshape(-1)
        texts = (
            caption
            if isinstance(caption, TextSide)
            else encode_text_side(self.encoder, [caption], self.needs)
        )
        out = np.empty(image_idx.size, dtype=np.float32)
        with torch.inference_mode():
            for s in range(0, image_idx.size, self.batch_size):
                rows, pair_image = np.unique(image_idx[s : s + self.batch_size], return_inverse=True)
                images = images_from_cache(cache, rows, [n for n in self.needs if n in IMAGE_FIELDS])
                pair_image = torch.from_numpy(pair_image.reshape(-1).astype(np.int64))
                pairs = make_pairs(
                    images, texts, pair_image, torch.zeros_like(pair_image), self.needs, self.dedup_images
                )
                out[s : s + len(pair_image)] = self.score_pairs_batch(pairs).float().cpu().numpy()
        return out

    def _crop_boxes(self) -> np.ndarray | None:
        if "crops" not in self.needs:
            return None
        if self.cache is not None and self.cache.has_crops:
            return self.cache.crop_boxes
        return crop_boxes()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, needs={self.needs})"
