"""Inputs of a scorer for B (image, caption) pairs, read from a cache or encoded on the fly.

Both paths give the same numbers: on-the-fly patch and caption tokens are rounded to float16
exactly as the cache writer stores them, and global embeddings stay float32 as the model
returns them. Field names follow :class:`tflocal.models.PairBatch`; two extra inputs serve the
training-free SGI scorer: ``crops`` (global embeddings of the cached crop boxes) and
``captions`` (the caption strings).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from tflocal.concepts.layout import LAYOUT_FIELDS, layout_from_cache, layout_tensors
from tflocal.models.batch import PairBatch

IMAGE_FIELDS = ("patches", "patch_mask", "image_global", "crops")
TEXT_FIELDS = ("tokens", "token_mask", "text_global", "captions", *LAYOUT_FIELDS)


@dataclass
class Pairs:
    """B pairs: ``batch`` (PairBatch fields the scorer needs, others None),
    ``crops`` [B, C, D_gi] float32 or None, ``captions`` B strings or None."""

    batch: PairBatch
    crops: torch.Tensor | None = None
    captions: list[str] | None = None


def _f16(x: torch.Tensor) -> torch.Tensor:
    """Round to float16 (as cached) and come back to float32."""
    return x.detach().float().cpu().half().float()


def _pad(tokens: Sequence[torch.Tensor], dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """B tensors [T_i, D] -> ([B, T_max, D] zero-padded, [B, T_max] bool mask, True = real)."""
    t_max = max((len(t) for t in tokens), default=0)
    out = torch.zeros(len(tokens), t_max, dim)
    mask = torch.zeros(len(tokens), t_max, dtype=torch.bool)
    for i, t in enumerate(tokens):
        out[i, : len(t)] = t
        mask[i, : len(t)] = True
    return out, mask


def from_cache(cache: Any, image_idx: np.ndarray, text_idx: np.ndarray, needs: Sequence[str]) -> Pairs:
    """Pairs (image_idx[b], text_idx[b]) read from ``cache``; each distinct row is read once.

    image_idx, text_idx: [B] int cache rows. Patches/tokens come back as float32 tensors of the
    cached float16 values; ``patch_mask`` is all True (every cached patch is real).
    """
    needs = set(needs)
    fields: dict[str, torch.Tensor] = {}
    crops = None
    captions = None
    if needs & set(IMAGE_FIELDS):
        u, inv = np.unique(np.asarray(image_idx, dtype=np.int64), return_inverse=True)
        inv_t = torch.from_numpy(inv.reshape(-1))
        if needs & {"patches", "patch_mask"}:
            p = torch.from_numpy(cache.patches(u).astype(np.float32))[inv_t]
            fields["patches"] = p
            fields["patch_mask"] = torch.ones(p.shape[:2], dtype=torch.bool)
        if "image_global" in needs:
            fields["image_global"] = torch.from_numpy(cache.image_global(u))[inv_t]
        if "crops" in needs:
            crops = torch.from_numpy(cache.crops_global(u))[inv_t]
    if needs & set(TEXT_FIELDS):
        u, inv = np.unique(np.asarray(text_idx, dtype=np.int64), return_inverse=True)
        inv_t = torch.from_numpy(inv.reshape(-1))
        if needs & {"tokens", "token_mask"}:
            tok, mask = cache.padded_tokens(u)
            fields["tokens"] = torch.from_numpy(tok.astype(np.float32))[inv_t]
            fields["token_mask"] = torch.from_numpy(mask)[inv_t]
        if "text_global" in needs:
            fields["text_global"] = torch.from_numpy(cache.text_global(u))[inv_t]
        if needs & set(LAYOUT_FIELDS):
            n_tok = fields["tokens"].shape[1] if "tokens" in fields else None
            for name, value in layout_from_cache(cache, u, n_tok).items():
                fields[name] = value[inv_t]
        if "captions" in needs:
            captions = [str(s) for s in cache.strings[np.asarray(text_idx, dtype=np.int64)]]
    return Pairs(PairBatch(**fields), crops=crops, captions=captions)


@torch.inference_mode()
def encode_images(
    encoder: Any,
    images: Sequence[Any],
    needs: Sequence[str],
    crop_boxes: np.ndarray | None = None,
    batch_size: int = 64,
) -> dict[str, torch.Tensor]:
    """B PIL images -> {"patches" [B,P,D] (float16-rounded), "patch_mask" [B,P], "image_global" [B,D],
    "crops" [B,C,D]} (only the fields in ``needs``). Crops are cut as the cache writer cuts them:
    box fractions (x0, y0, x1, y1) of ``crop_boxes`` [C, 4] times the image size."""
    needs = set(needs)
    imgs = [im.convert("RGB") for im in images]
    pixels = torch.stack([encoder.preprocess(im) for im in imgs]).to(encoder.device)
    out = encoder.encode_images(pixels)
    res: dict[str, torch.Tensor] = {}
    if needs & {"patches", "patch_mask"}:
        res["patches"] = _f16(out.patches)
        res["patch_mask"] = torch.ones(res["patches"].shape[:2], dtype=torch.bool)
    if "image_global" in needs:
        res["image_global"] = out.global_.detach().float().cpu()
    if "crops" in needs:
        if crop_boxes is None or len(crop_boxes) == 0:
            raise ValueError("encode_images: crops asked for but no crop boxes given")
        cut = []
        for im in imgs:
            w, h = im.size
            cut += [
                encoder.preprocess(im.crop((x0 * w, y0 * h, x1 * w, y1 * h))) for x0, y0, x1, y1 in crop_boxes
            ]
        cut_t = torch.stack(cut).to(encoder.device)
        g = torch.cat(
            [
                encoder.encode_images(cut_t[i : i + batch_size]).global_
                for i in range(0, len(cut_t), batch_size)
            ]
        )
        res["crops"] = g.detach().float().cpu().reshape(len(imgs), len(crop_boxes), -1)
    return res


@torch.inference_mode()
def encode_texts(encoder: Any, captions: Sequence[str], needs: Sequence[str]) -> dict[str, Any]:
    """B strings -> {"tokens" [B,T,D] (float16-rounded, zero-padded), "token_mask" [B,T],
    "text_global" [B,D], "captions", and the layout fields "segments" [B,K,T], "relation_tokens"
    [B,R,T], "relations" [B,R,2]} (only the fields in ``needs``)."""
    needs = set(needs)
    res: dict[str, Any] = {}
    if needs & {"tokens", "token_mask", "text_global", *LAYOUT_FIELDS}:
        out = encoder.encode_texts(list(captions))
        if needs & {"tokens", "token_mask"}:
            res["tokens"], res["token_mask"] = _pad([_f16(t) for t in out.tokens], int(encoder.text_dim))
        if "text_global" in needs:
            res["text_global"] = out.global_.detach().float().cpu()
        if needs & set(LAYOUT_FIELDS):
            res.update(layout_tensors(list(captions), out.token_strings))
    if "captions" in needs:
        res["captions"] = list(captions)
    return res


def from_raw(
    encoder: Any,
    images: Sequence[Any],
    captions: Sequence[str],
    needs: Sequence[str],
    crop_boxes: np.ndarray | None = None,
) -> Pairs:
    """Pairs (images[b], captions[b]) encoded with ``encoder`` (see the module docstring)."""
    if len(images) != len(captions):
        raise ValueError(f"score_pairs: {len(images)} images but {len(captions)} captions")
    needs = set(needs)
    fields: dict[str, Any] = {}
    if needs & set(IMAGE_FIELDS):
        fields.update(encode_images(encoder, images, needs, crop_boxes))
    if needs & set(TEXT_FIELDS):
        fields.update(encode_texts(encoder, captions, needs))
    crops = fields.pop("crops", None)
    caps = fields.pop("captions", None)
    return Pairs(PairBatch(**fields), crops=crops, captions=caps)
