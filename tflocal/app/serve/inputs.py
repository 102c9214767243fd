"""Scorer inputs for the search engine, as dicts of PairBatch fields (batch dimension first).

The one place :mod:`tflocal.app.serve` touches the feature layer: images are read through the
cache's public reader (``patches``, ``image_global``), and query captions / uploaded images are
encoded through :mod:`tflocal.pairs.assemble` (ImageSide / TextSide). The engine checks its
scores against :meth:`Scorer.score_text_query` when it loads (see ``SearchEngine._preload``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

import tflocal.pairs.assemble as _F
from cache_tools.write.encode import encode_images
from tflocal.pairs.batch import PairBatch

IMAGE_FIELDS: tuple[str, ...] = tuple(_F.IMAGE_FIELDS)
TEXT_FIELDS: tuple[str, ...] = tuple(_F.TEXT_FIELDS)
Pairs = _F.Pairs


def _side_dict(side: Any) -> dict[str, Any]:
    out = {k: v for k, v in vars(side).items() if v is not None}
    if "patches" in out:
        out["patches"] = out["patches"].float()
        out.setdefault("patch_mask", torch.ones(out["patches"].shape[:2], dtype=torch.bool))
    if "tokens" in out:
        out["tokens"] = out["tokens"].float()
    return out


def image_inputs(cache: Any, rows: np.ndarray, needs: Sequence[str]) -> dict[str, torch.Tensor]:
    """Cached images ``rows`` [N] -> {"patches" [N,P,D] float32, "patch_mask" [N,P], "image_global"
    [N,D]} (only those in ``needs``; crops are not served from here)."""
    needs, rows = set(needs), np.asarray(rows, dtype=np.int64).reshape(-1)
    out: dict[str, torch.Tensor] = {}
    if needs & {"patches", "patch_mask"}:
        p = torch.from_numpy(np.ascontiguousarray(cache.patches(rows)).astype(np.float32))
        out["patches"], out["patch_mask"] = p, torch.ones(p.shape[:2], dtype=torch.bool)
    if "image_global" in needs:
        out["image_global"] = torch.from_numpy(np.asarray(cache.image_global(rows), dtype=np.float32))
    return out


def query_inputs(encoder: Any, caption: str, needs: Sequence[str]) -> dict[str, Any]:
    """One caption encoded on the fly -> its text fields with batch dimension 1 (+ "captions")."""
    needs = [n for n in needs if n in TEXT_FIELDS]
    return _side_dict(_F.encode_text_side(encoder, [caption], needs))


def cached_text_inputs(cache: Any, rows: np.ndarray, needs: Sequence[str]) -> dict[str, Any]:
    """Cached captions ``rows`` [N] -> their text fields (+ "captions")."""
    needs = [n for n in needs if n in TEXT_FIELDS]
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    return _side_dict(_F.texts_from_cache(cache, rows, needs))


def encoded_image_inputs(
    encoder: Any, image: Any, needs: Sequence[str], crop_boxes: np.ndarray | None
) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """One PIL image encoded on the fly -> (its image fields, batch dimension 1; crops or None)."""
    needs = [n for n in needs if n in IMAGE_FIELDS]
    boxes = crop_boxes if "crops" in needs else None
    out = _side_dict(_F.images_from_encoded(encode_images(encoder, [image], boxes), needs))
    crops = out.pop("crops", None)
    return {k: v for k, v in out.items() if k in needs or k == "patch_mask"}, crops


def pairs(per_row: dict[str, Any], once: dict[str, Any], n: int, crops: torch.Tensor | None = None) -> Any:
    """A Pairs of ``n``: ``per_row`` fields [n, ...] as they are, ``once`` fields (batch 1, the
    query side) repeated n times; "captions" from either side; ``crops`` [1, C, D] repeated."""
    f = {k: v for k, v in per_row.items() if k != "captions"}
    f.update({k: v.expand(n, *v.shape[1:]) for k, v in once.items() if k != "captions"})
    caps = per_row.get("captions")
    if caps is None and once.get("captions") is not None:
        caps = list(once["captions"]) * n
    return Pairs(
        PairBatch(**f),
        crops=None if crops is None else crops.expand(n, *crops.shape[1:]),
        captions=None if caps is None else list(caps),
    )
