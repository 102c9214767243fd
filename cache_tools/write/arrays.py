"""Writing a complete cache from in-memory arrays: parts of a run, synthetic caches and tests."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from cache_tools import __version__
from cache_tools.encoders.images import crop_boxes
from cache_tools.store.h5io import create, dumps
from cache_tools.store.schema import FORMAT_VERSION, STR, encode_attr


def write_arrays(
    path: str | Path,
    attrs: dict[str, Any],
    image_ids: Sequence[str],
    patches: np.ndarray,
    image_global: np.ndarray,
    texts: Sequence[str],
    tokens: Sequence[np.ndarray],
    text_global: np.ndarray,
    image_index: Sequence[int],
    positive_index: Sequence[int],
    op: Sequence[str] | None = None,
    kind: Sequence[str] | None = None,
    text_meta: Sequence[dict | str] | None = None,
    image_meta: Sequence[dict | str] | None = None,
    image_group: Sequence[str] | None = None,
    token_strings: Sequence[Sequence[str] | str] | None = None,
    truncated: Sequence[bool] | None = None,
    image_box: np.ndarray | None = None,
    crops_global: np.ndarray | None = None,
    skipped: Sequence[tuple[str, str]] = (),
) -> Path:
    """Write a complete, valid cache directly from arrays (tests, synthetic caches, parts).

    Args:
        attrs: root attributes; must include the encoder keys of ``schema.ENCODER_KEYS``,
            ``space`` and ``global_space`` at least (missing dims are inferred from the arrays).
        patches: [N_img, P, D_img]; image_global: [N_img, D_gi].
        tokens: N_txt arrays [T_t, D_txt]; text_global: [N_txt, D_gt].
        image_index, positive_index: [N_txt] (see ``cache_tools.store.schema``).
        crops_global: optional [N_img, C, D_gi] for the boxes of :func:`crop_boxes`.
    """
    path = Path(path)
    missing = [k for k in ("space", "global_space") if not attrs.get(k)]
    if missing:
        raise ValueError(
            f"write_arrays: attrs must say {' and '.join(missing)} ('joint' or 'hidden' / 'none'): "
            "what the embeddings are is never assumed"
        )
    n_img, n_txt = len(image_ids), len(texts)
    patches = np.asarray(patches, dtype=np.float16)
    d_img = patches.shape[2] if patches.ndim == 3 else int(attrs.get("image_dim", 0))
    d_txt = next((t.shape[1] for t in tokens), int(attrs.get("text_dim", 0)))
    if patches.shape[0] != n_img or len(image_global) != n_img:
        raise ValueError("patches / image_global rows must match image_ids")
    if len(tokens) != n_txt or len(text_global) != n_txt or len(image_index) != n_txt:
        raise ValueError("tokens / text_global / image_index rows must match texts")
    lengths = np.asarray([len(t) for t in tokens], dtype=np.int64)
    offsets = np.zeros(n_txt + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    packed = np.concatenate(tokens, axis=0) if n_txt else np.zeros((0, d_txt))
    image_global = np.asarray(image_global, dtype=np.float32).reshape(n_img, -1)
    text_global = np.asarray(text_global, dtype=np.float32).reshape(n_txt, -1)

    def _meta(items: Sequence[dict | str] | None, n: int) -> list[str]:
        if items is None:
            return ["{}"] * n
        return [m if isinstance(m, str) else dumps(m) for m in items]

    if token_strings is None:
        token_strings = [json.dumps([str(i) for i in range(n)]) for n in lengths]
    token_strings = [s if isinstance(s, str) else json.dumps(list(s)) for s in token_strings]
    full_attrs = {
        "format_version": FORMAT_VERSION,
        "image_dim": int(d_img),
        "text_dim": int(d_txt),
        "global_image_dim": int(image_global.shape[1]),
        "global_text_dim": int(text_global.shape[1]),
        "grid": attrs.get("grid") or [1, int(patches.shape[1])],
        "dtype": "float16",
        "package_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **attrs,
        "n_images": n_img,
        "n_texts": n_txt,
        "n_tokens": int(offsets[-1]),
        "n_skipped": len(skipped),
        "n_truncated": int(np.sum(truncated)) if truncated is not None else 0,
        "complete": True,
    }
    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        for k, v in full_attrs.items():
            f.attrs[k] = encode_attr(v)
        img = f.create_group("images")
        create(img, "ids", list(image_ids), STR)
        create(img, "patches", patches.astype(np.float16))
        create(img, "global", image_global)
        create(img, "group", list(image_group) if image_group is not None else [""] * n_img, STR)
        create(img, "meta", _meta(image_meta, n_img), STR)
        box = (
            np.full((n_img, 4), np.nan, np.float32)
            if image_box is None
            else np.asarray(image_box, np.float32)
        )
        create(img, "box", box.reshape(n_img, 4))
        if crops_global is not None:
            crops = img.create_group("crops")
            create(crops, "global", np.asarray(crops_global, dtype=np.float32))
            crops.create_dataset("boxes", data=crop_boxes())
        txt = f.create_group("texts")
        create(txt, "strings", list(texts), STR)
        create(txt, "tokens", packed.astype(np.float16))
        create(txt, "offsets", offsets)
        create(txt, "token_strings", token_strings, STR)
        create(txt, "global", text_global)
        create(txt, "image_index", np.asarray(image_index, dtype=np.int64))
        create(txt, "positive_index", np.asarray(positive_index, dtype=np.int64))
        create(txt, "op", list(op) if op is not None else [""] * n_txt, STR)
        create(txt, "kind", list(kind) if kind is not None else [""] * n_txt, STR)
        create(txt, "truncated", np.asarray(truncated if truncated is not None else [False] * n_txt, bool))
        create(txt, "meta", _meta(text_meta, n_txt), STR)
        sk = f.create_group("skipped")
        create(sk, "item", [s[0] for s in skipped], STR)
        create(sk, "reason", [s[1] for s in skipped], STR)
    os.replace(tmp, path)
    return path
