"""The one path from records to a :class:`~tflocal.models.PairBatch`.

Training batches (:mod:`tflocal.pairs.candidates`), cache scoring and raw-input scoring
(:mod:`tflocal.scoring`) all build pairs the same way::

    cache rows ──read──────────────────────────┐
                                               ├─► ImageSide / TextSide ──pair_batch()──► PairBatch
    PIL images + strings ──cache_tools.write.encode──┘      (distinct rows)     (pair indices)

The raw path encodes with :mod:`cache_tools.write.encode`, the very functions the cache writer
uses, so cached and raw inputs agree by construction (patch and caption tokens rounded to
float16, global embeddings float32). Padding of captions is :func:`cache_tools.infra.padding.pad_tokens`
on both paths, and the caption layouts of the ``segments`` read-out are built here only.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import torch

from cache_tools.infra.padding import pad_tokens
from cache_tools.write.encode import EncodedImages, EncodedTexts, encode_images, encode_texts
from tflocal.concepts.layout import (
    LAYOUT_FIELDS,
    caption_layout_counts,
    layout_tensors,
    stack_layouts,
)
from tflocal.pairs.batch import PairBatch

IMAGE_FIELDS = ("patches", "patch_mask", "image_global", "crops")
TEXT_FIELDS = ("tokens", "token_mask", "text_global", "captions", *LAYOUT_FIELDS)


def map_tensors(obj: Any, fn: Any) -> Any:
    """A copy of dataclass ``obj`` with ``fn`` applied to every tensor field."""
    return replace(
        obj,
        **{f.name: fn(v) for f in fields(obj) for v in [getattr(obj, f.name)] if isinstance(v, torch.Tensor)},
    )


@dataclass
class ImageSide:
    """NI distinct images. patches: float16 [NI, P, D_img]; image_global: float32 [NI, D_gi];
    crops: float32 [NI, C, D_gi] (global embeddings of the crop boxes). Unneeded fields are None."""

    patches: torch.Tensor | None = None
    image_global: torch.Tensor | None = None
    crops: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> ImageSide:
        return map_tensors(self, lambda t: t.to(device, non_blocking=True))

    def pin_memory(self) -> ImageSide:
        return map_tensors(self, lambda t: t.pin_memory())


@dataclass
class TextSide:
    """NT distinct captions. tokens: float16 [NT, T, D_txt] zero-padded; token_mask: bool [NT, T];
    text_global: float32 [NT, D_gt]; segments: bool [NT, K, T]; relation_tokens: bool [NT, R, T];
    relations: long [NT, R, 2]; counts: long [NT, K]; number_tokens: bool [NT, K, T]
    (:mod:`tflocal.concepts.layout`); captions: NT strings. Unneeded fields are None."""

    tokens: torch.Tensor | None = None
    token_mask: torch.Tensor | None = None
    text_global: torch.Tensor | None = None
    segments: torch.Tensor | None = None
    relation_tokens: torch.Tensor | None = None
    relations: torch.Tensor | None = None
    counts: torch.Tensor | None = None
    number_tokens: torch.Tensor | None = None
    captions: list[str] | None = None

    def to(self, device: torch.device | str) -> TextSide:
        return map_tensors(self, lambda t: t.to(device, non_blocking=True))

    def pin_memory(self) -> TextSide:
        return map_tensors(self, lambda t: t.pin_memory())


def images_from_cache(cache: Any, rows: np.ndarray, needs: Sequence[str]) -> ImageSide:
    """Images ``rows`` [NI] of a cache (each read as stored)."""
    needs, rows = set(needs), np.asarray(rows, dtype=np.int64).reshape(-1)
    side = ImageSide()
    if needs & {"patches", "patch_mask"}:
        side.patches = torch.from_numpy(np.ascontiguousarray(cache.patches(rows)))
    if "image_global" in needs:
        side.image_global = torch.from_numpy(cache.image_global(rows))
    if "crops" in needs:
        side.crops = torch.from_numpy(cache.crops_global(rows))
    return side


def images_from_encoded(enc: EncodedImages, needs: Sequence[str]) -> ImageSide:
    """Images encoded by :func:`cache_tools.write.encode.encode_images`."""
    needs = set(needs)
    side = ImageSide()
    if needs & {"patches", "patch_mask"}:
        side.patches = torch.from_numpy(enc.patches)
    if "image_global" in needs:
        side.image_global = torch.from_numpy(enc.global_)
    if "crops" in needs:
        if enc.crops is None:
            raise ValueError("images_from_encoded: crops asked for but the images were encoded without boxes")
        side.crops = torch.from_numpy(enc.crops)
    return side


def _text_side(
    needs: set[str],
    tokens: Any,
    token_strings: Any,
    text_global: Any,
    captions: list[str],
    dim: int,
    max_tokens: int | None,
) -> TextSide:
    """Shared by both text paths; ``tokens`` / ``token_strings`` / ``text_global`` are callables
    so that only what is needed is read."""
    side = TextSide()
    n_tok = None
    if needs & {"tokens", "token_mask"}:
        tok, mask = pad_tokens(tokens(), dim)
        if max_tokens is not None and tok.shape[1] > max_tokens:
            tok, mask = tok[:, :max_tokens], mask[:, :max_tokens]
        side.tokens, side.token_mask = torch.from_numpy(tok), torch.from_numpy(mask)
        n_tok = tok.shape[1]
    if "text_global" in needs:
        side.text_global = torch.from_numpy(np.asarray(text_global(), dtype=np.float32))
    if needs & set(LAYOUT_FIELDS):
        for name, value in token_strings(n_tok).items():
            setattr(side, name, value)
    if "captions" in needs:
        side.captions = captions
    return side


_LAYOUTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""cache -> {text row: caption_layout_counts(...)}: each cached caption is parsed once per process,
not in every batch it appears in (parsing was most of a segments-head batch's build time)."""


def layouts_from_cache(cache: Any, rows: np.ndarray, n_tokens: int | None = None) -> dict[str, torch.Tensor]:
    """:func:`tflocal.concepts.layout.layout_tensors` of cache texts ``rows`` [N], the same
    tensors (``segments`` bool [N, K, n_tokens], ``relation_tokens`` bool [N, R, n_tokens],
    ``relations`` long [N, R, 2], ``counts`` long [N, K], ``number_tokens`` bool [N, K, n_tokens]),
    with each row's layout computed once per cache and reused."""
    memo = _LAYOUTS.setdefault(cache, {})
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    missing = [r for r in dict.fromkeys(rows.tolist()) if r not in memo]
    if missing:
        for r, toks in zip(missing, cache.token_strings_batch(np.asarray(missing, dtype=np.int64))):
            memo[r] = caption_layout_counts(str(cache.strings[r]), list(toks))
    layouts = [memo[r] for r in rows.tolist()]
    if n_tokens is None:
        n_tokens = max((layout[0].shape[1] for layout in layouts), default=0)
    return stack_layouts(layouts, n_tokens)


def texts_from_cache(
    cache: Any, rows: np.ndarray, needs: Sequence[str], max_tokens: int | None = None
) -> TextSide:
    """Captions ``rows`` [NT] of a cache; tokens cut to ``max_tokens`` when given."""
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    return _text_side(
        set(needs),
        lambda: cache.tokens(rows),
        lambda n_tok: layouts_from_cache(cache, rows, n_tok),
        lambda: cache.text_global(rows),
        [str(s) for s in cache.strings[rows]],
        int(cache.attrs["text_dim"]),
        max_tokens,
    )


def texts_from_encoded(
    enc: EncodedTexts, captions: Sequence[str], needs: Sequence[str], dim: int, max_tokens: int | None = None
) -> TextSide:
    """Captions encoded by :func:`cache_tools.write.encode.encode_texts` (``dim``: the token width)."""
    captions = list(captions)
    return _text_side(
        set(needs),
        lambda: enc.tokens,
        lambda n_tok: layout_tensors(captions, enc.token_strings, n_tok),
        lambda: enc.global_,
        captions,
        dim,
        max_tokens,
    )


def pair_batch(
    images: ImageSide,
    texts: TextSide,
    pair_image: torch.Tensor,
    pair_text: torch.Tensor,
    needs: Sequence[str] | None = None,
    dedup_images: bool = False,
) -> PairBatch:
    """Pairs (images[pair_image[n]], texts[pair_text[n]]) as a PairBatch of N.

    pair_image, pair_text: long [N]. ``needs``: the PairBatch fields to fill (None: all present).
    ``dedup_images``: keep patches per distinct image and set ``pair_image`` (heads with
    ``accepts_pair_image`` project each image once) instead of expanding them per pair. Text
    fields of a single caption are stride-0 views over the N pairs (read-only), not copies.
    """
    want = (lambda f: True) if needs is None else set(needs).__contains__
    n = int(pair_text.shape[0])

    def per_pair(x: torch.Tensor) -> torch.Tensor:
        # one caption for every pair (a query against candidates): a stride-0 view, not N copies
        return x.expand(n, *x.shape[1:]) if x.shape[0] == 1 else x[pair_text]

    out = PairBatch()
    if images.patches is not None and want("patches"):
        if dedup_images:
            out.patches, out.pair_image = images.patches, pair_image
        else:
            out.patches = images.patches[pair_image]
        out.patch_mask = torch.ones(out.patches.shape[:2], dtype=torch.bool, device=out.patches.device)
    if images.image_global is not None and want("image_global"):
        out.image_global = images.image_global[pair_image]
    if texts.tokens is not None and want("tokens"):
        out.tokens = per_pair(texts.tokens)
        out.token_mask = per_pair(texts.token_mask)
    if texts.text_global is not None and want("text_global"):
        out.text_global = per_pair(texts.text_global)
    for name in LAYOUT_FIELDS:
        value = getattr(texts, name)
        if value is not None and want(name):
            setattr(out, name, per_pair(value))
    return out


@dataclass
class Pairs:
    """What a scorer scores: ``batch`` (PairBatch fields the scorer needs, others None),
    ``crops`` [B, C, D_gi] float32 or None, ``captions`` B strings or None."""

    batch: PairBatch
    crops: torch.Tensor | None = None
    captions: list[str] | None = None


def make_pairs(
    images: ImageSide,
    texts: TextSide,
    pair_image: torch.Tensor,
    pair_text: torch.Tensor,
    needs: Sequence[str],
    dedup_images: bool = False,
) -> Pairs:
    """:func:`pair_batch` plus the scorer-only inputs (crops, caption strings) per pair."""
    return Pairs(
        pair_batch(images, texts, pair_image, pair_text, needs, dedup_images=dedup_images),
        crops=None if images.crops is None else images.crops[pair_image],
        captions=None if texts.captions is None else [texts.captions[j] for j in pair_text.tolist()],
    )


def _distinct(idx: Sequence[int] | np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
    """idx [B] -> (sorted distinct rows [U], long [B] position of each idx in them)."""
    u, inv = np.unique(np.asarray(idx, dtype=np.int64), return_inverse=True)
    return u, torch.from_numpy(inv.reshape(-1).astype(np.int64))


def from_cache(
    cache: Any, image_idx: np.ndarray, text_idx: np.ndarray, needs: Sequence[str], dedup_images: bool = False
) -> Pairs:
    """Pairs (image_idx[b], text_idx[b]) [B] of cache rows; each distinct row is read once.
    ``dedup_images``: patches stay one per distinct image, with ``pair_image`` (see :func:`pair_batch`)."""
    needs = set(needs)
    ui, pi = _distinct(image_idx)
    ut, pt = _distinct(text_idx)
    images = images_from_cache(cache, ui, needs) if needs & set(IMAGE_FIELDS) else ImageSide()
    texts = texts_from_cache(cache, ut, needs) if needs & set(TEXT_FIELDS) else TextSide()
    return make_pairs(images, texts, pi, pt, needs, dedup_images)


def encode_text_side(encoder: Any, captions: Sequence[str], needs: Sequence[str]) -> TextSide:
    """B strings encoded on the fly (as the cache writer encodes them) -> TextSide of B."""
    needs = set(needs)
    if not needs & set(TEXT_FIELDS):
        return TextSide()
    enc = (
        encode_texts(encoder, list(captions))
        if needs & {"tokens", "token_mask", "text_global", *LAYOUT_FIELDS}
        else EncodedTexts([], [], np.zeros((0, 0), np.float32), np.zeros(0, bool))
    )
    return texts_from_encoded(enc, captions, needs, int(encoder.text_dim))


def from_raw(
    encoder: Any,
    images: Sequence[Any],
    captions: Sequence[str],
    needs: Sequence[str],
    crop_boxes: np.ndarray | None = None,
) -> Pairs:
    """Pairs (images[b], captions[b]) of B PIL images and B strings, encoded with ``encoder``."""
    if len(images) != len(captions):
        raise ValueError(f"from_raw: {len(images)} images but {len(captions)} captions")
    needs = set(needs)
    side = ImageSide()
    if needs & set(IMAGE_FIELDS):
        boxes = crop_boxes if "crops" in needs else None
        if "crops" in needs and (boxes is None or len(boxes) == 0):
            raise ValueError("from_raw: crops asked for but no crop boxes given")
        side = images_from_encoded(encode_images(encoder, list(images), boxes), needs)
    texts = encode_text_side(encoder, captions, needs)
    index = torch.arange(len(images))
    return make_pairs(side, texts, index, index, needs)
