"""The record encoder: images and captions -> the arrays a cache stores, exactly as stored.

The cache writer and raw-input scoring both call these functions, so a pair scored from the
cache and the same pair scored from a PIL image and a string see the same numbers by
construction: patch and caption tokens are rounded to float16 (the cache's dtype), global
embeddings stay float32 as the model returns them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from cache_tools.encoders.base import Encoder
from cache_tools.encoders.images import cut_crops


@dataclass
class EncodedImages:
    """B images: patches float16 [B, P, D_img]; global_ float32 [B, D_gi];
    crops float32 [B, C, D_gi] (global embeddings of the crop boxes) or None."""

    patches: np.ndarray
    global_: np.ndarray
    crops: np.ndarray | None = None


@dataclass
class EncodedTexts:
    """B captions: tokens B float16 arrays [T_i, D_txt]; token_strings B lists of T_i strings;
    global_ float32 [B, D_gt]; truncated bool [B] (longer than the encoder's context)."""

    tokens: list[np.ndarray]
    token_strings: list[list[str]]
    global_: np.ndarray
    truncated: np.ndarray


def preprocess_image(
    encoder: Encoder, img: Image.Image, boxes: np.ndarray | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """An RGB image -> (pixels [3, H, W], crop pixels [C, 3, H, W] for ``boxes`` [C, 4] or None)."""
    pixels = encoder.preprocess(img)
    if boxes is None or len(boxes) == 0:
        return pixels, None
    return pixels, torch.stack([encoder.preprocess(c) for c in cut_crops(img, boxes)])


Alloc = Callable[[tuple[int, ...], type], np.ndarray]
"""``alloc(shape, dtype)`` -> an uninitialized array to encode into (``np.empty``, or a view of
reused memory: :class:`cache_tools.write.arena.Arena`'s ``take``)."""


@torch.inference_mode()
def encode_pixels(
    encoder: Encoder,
    pixels: torch.Tensor,
    crop_pixels: torch.Tensor | None = None,
    batch_size: int = 64,
    alloc: Alloc | None = None,
) -> EncodedImages:
    """pixels [B, 3, H, W] (one forward) and crop pixels [B*C, 3, H, W] (forwards of
    ``batch_size``) -> :class:`EncodedImages`; the patches are written into
    ``alloc((B, P, D_img), np.float16)`` (default a new array)."""
    out = encoder.encode_images(pixels.to(encoder.device))
    patches = _fp16(out.patches, alloc(tuple(out.patches.shape), np.float16) if alloc else None)
    global_ = out.global_.float().cpu().numpy()
    crops = None
    if crop_pixels is not None:
        g = torch.cat(
            [
                encoder.encode_images(crop_pixels[i : i + batch_size].to(encoder.device)).global_
                for i in range(0, len(crop_pixels), batch_size)
            ]
        )
        crops = g.float().cpu().numpy().reshape(len(pixels), -1, g.shape[-1])
    return EncodedImages(patches, global_, crops)


def encode_images(
    encoder: Encoder, images: Sequence[Image.Image], boxes: np.ndarray | None = None, batch_size: int = 64
) -> EncodedImages:
    """B PIL images -> :class:`EncodedImages`, in forwards of ``batch_size`` images."""
    parts: list[EncodedImages] = []
    for s in range(0, len(images), batch_size):
        pre = [preprocess_image(encoder, im.convert("RGB"), boxes) for im in images[s : s + batch_size]]
        crop_pixels = torch.cat([c for _, c in pre]) if boxes is not None and len(boxes) else None
        parts.append(encode_pixels(encoder, torch.stack([p for p, _ in pre]), crop_pixels, batch_size))
    if not parts:
        raise ValueError("encode_images: no images given")
    return EncodedImages(
        np.concatenate([p.patches for p in parts]),
        np.concatenate([p.global_ for p in parts]),
        None if parts[0].crops is None else np.concatenate([p.crops for p in parts]),
    )


def _fp16(x: torch.Tensor, out: np.ndarray | None = None) -> np.ndarray:
    """A tensor of any float dtype on any device -> float16 array of its shape (``out`` if given,
    else a new one), with the values of converting it to float32 and then float16 (a float16
    tensor is copied as it is, never kept: the encoder may reuse its output buffer)."""
    x = x.detach().cpu()
    if out is None:
        out = np.empty(tuple(x.shape), np.float16)
    elif out.shape != tuple(x.shape) or out.dtype != np.float16:
        raise ValueError(f"expected a float16 array of shape {tuple(x.shape)}, got {out.dtype} {out.shape}")
    np.copyto(out, x.numpy() if x.dtype == torch.float16 else x.float().numpy(), casting="unsafe")
    return out


def _tokens_fp16(tokens: Sequence[torch.Tensor], alloc: Alloc | None = None) -> list[np.ndarray]:
    """B token tensors [T_i, D] (any float dtype, any device) -> B float16 arrays [T_i, D].

    The same values as converting each tensor to float32 and then float16, in one concatenation
    and one device transfer: row views into one [sum of T_i, D] array from ``alloc`` (default
    ``np.empty``; float16 tensors are copied, never converted; float16 -> float32 -> float16 is
    exact).
    """
    if not tokens:
        return []
    alloc = alloc or np.empty
    first = tokens[0]
    if not all(t.ndim == 2 and t.dtype == first.dtype and t.shape[1] == first.shape[1] for t in tokens):
        return [_fp16(t, alloc(tuple(t.shape), np.float16)) for t in tokens]
    lengths = [t.shape[0] for t in tokens]
    arr = alloc((sum(lengths), first.shape[1]), np.float16)
    if first.dtype == torch.float16 and all(t.device.type == "cpu" for t in tokens):
        np.concatenate([t.detach().numpy() for t in tokens], out=arr)
    else:
        _fp16(torch.cat([t.to(first.device) for t in tokens]), arr)
    return np.split(arr, np.cumsum(lengths)[:-1])


TEXT_CALL_BATCHES = 16
"""An encoder that sorts and sub-batches captions itself (``sorts_texts``) gets this many
batches of distinct captions per call."""


@torch.inference_mode()
def encode_texts(
    encoder: Encoder,
    texts: Sequence[str],
    batch_size: int = 64,
    on_batch: Callable[[int, int], None] | None = None,
    alloc: Alloc | None = None,
) -> EncodedTexts:
    """B captions -> :class:`EncodedTexts`. Each distinct string is encoded once. The distinct
    strings go to the encoder shortest first (by characters; ties in order of first appearance,
    so the order is deterministic), in calls of ``batch_size`` strings, or of
    ``TEXT_CALL_BATCHES * batch_size`` for an encoder that sorts by tokens and sub-batches
    itself: batches of like lengths pad less and need fewer forwards. ``on_batch(done, total)``
    reports progress over the distinct strings; ``alloc`` gives the memory the tokens are
    written into (default ``np.empty``)."""
    alloc = alloc or np.empty
    unique = sorted(dict.fromkeys(texts), key=len)  # stable: ties keep first appearance
    step = batch_size * (TEXT_CALL_BATCHES if getattr(encoder, "sorts_texts", False) else 1)
    encoded: dict[str, tuple[np.ndarray, list[str], np.ndarray, bool]] = {}
    for i in range(0, len(unique), step):
        chunk = unique[i : i + step]
        if on_batch is not None:
            on_batch(i, len(unique))
        out = encoder.encode_texts(chunk)
        g = out.global_.float().cpu().numpy()
        tokens = _tokens_fp16(out.tokens, alloc)
        for s, tok, ts, gl, tr in zip(chunk, tokens, out.token_strings, g, out.truncated):
            encoded[s] = (tok, list(ts), gl, bool(tr))
    if on_batch is not None:
        on_batch(len(unique), len(unique))
    rows = [encoded[s] for s in texts]
    dim = int(encoder.global_text_dim)
    return EncodedTexts(
        tokens=[r[0] for r in rows],
        token_strings=[r[1] for r in rows],
        global_=np.stack([r[2] for r in rows], out=alloc((len(rows), dim), np.float32))
        if rows
        else np.zeros((0, dim), np.float32),
        truncated=np.asarray([r[3] for r in rows], dtype=bool),
    )
