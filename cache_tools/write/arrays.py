"""Writing a complete cache from in-memory arrays: parts of a run, synthetic caches and tests."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from cache_tools import __version__
from cache_tools.encoders.images import crop_boxes
from cache_tools.store.h5io import chunk_rows, create, dumps, extend
from cache_tools.store.schema import FORMAT_VERSION, STR, encode_attr
from cache_tools.store.shards import completed_attrs, rebased, row_bases
from cache_tools.write.arena import plain_empty


def write_arrays(path: str | Path | h5py.File, *args: Any, **kwargs: Any) -> Path:
    """Write a complete, valid cache directly from arrays (tests, synthetic caches, parts).

    Args:
        path: the file to write (through a temporary name, atomically), or an empty h5py file
            open for writing to write into.
        args, kwargs: the columns, as :func:`columns` takes them.
    """
    path = path if isinstance(path, h5py.File) else Path(path)
    full_attrs, images, captions = columns(*args, **kwargs)
    return _write_file(path, full_attrs, images, captions, kwargs.get("skipped", ()))


def columns(
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
    *,
    skipped: Sequence[tuple[str, str]] = (),
) -> tuple[dict[str, Any], ImageColumns, TextColumns]:
    """One cache's rows checked and completed: (root attributes, image columns, caption columns),
    indices local to these rows.

    Args:
        attrs: root attributes; must include the encoder keys of ``schema.ENCODER_KEYS``,
            ``space`` and ``global_space`` at least (missing dims are inferred from the arrays).
        patches: [N_img, P, D_img]; image_global: [N_img, D_gi].
        tokens: N_txt arrays [T_t, D_txt]; text_global: [N_txt, D_gt].
        image_index, positive_index: [N_txt] (see ``cache_tools.store.schema``).
        crops_global: optional [N_img, C, D_gi] for the boxes of :func:`crop_boxes`.
        skipped: (item, reason) rows; counted in the attributes.
    """
    _require_spaces(attrs)
    patches = np.asarray(patches, dtype=np.float16)
    d_txt = next((t.shape[1] for t in tokens), int(attrs.get("text_dim", 0)))
    n_img, n_txt = len(image_ids), len(texts)
    if patches.shape[0] != n_img or len(image_global) != n_img:
        raise ValueError("patches / image_global rows must match image_ids")
    if len(tokens) != n_txt or len(text_global) != n_txt or len(image_index) != n_txt:
        raise ValueError("tokens / text_global / image_index rows must match texts")
    lengths, offsets = _offsets(tokens)
    image_global = np.asarray(image_global, dtype=np.float32).reshape(n_img, -1)
    text_global = np.asarray(text_global, dtype=np.float32).reshape(n_txt, -1)
    token_strings = _token_strings(token_strings, lengths)
    full_attrs = _full_attrs(
        attrs, patches, d_txt, image_global, text_global, int(offsets[-1]), truncated, skipped
    )
    images = ImageColumns(
        ids=list(image_ids),
        patches=patches,
        global_=image_global,
        group=list(image_group) if image_group is not None else [""] * n_img,
        meta=_meta(image_meta, n_img),
        box=_box(image_box, n_img),
        crops_global=None if crops_global is None else np.asarray(crops_global, dtype=np.float32),
    )
    captions = TextColumns(
        strings=list(texts),
        tokens=list(tokens),
        d_txt=int(d_txt),
        offsets=offsets,
        token_strings=token_strings,
        global_=text_global,
        image_index=np.asarray(image_index, dtype=np.int64),
        positive_index=np.asarray(positive_index, dtype=np.int64),
        op=list(op) if op is not None else [""] * n_txt,
        kind=list(kind) if kind is not None else [""] * n_txt,
        truncated=np.asarray(truncated if truncated is not None else [False] * n_txt, bool),
        meta=_meta(text_meta, n_txt),
    )
    return full_attrs, images, captions


@dataclass(frozen=True)
class ImageColumns:
    """The image rows of one cache as they are written, N_img rows each.

    ids, group: N_img strings; meta: N_img JSON objects; patches: [N_img, P, D_img] float16;
    global_: [N_img, D_gi] float32; box: [N_img, 4] float32 (NaN: no box);
    crops_global: [N_img, C, D_gi] float32 for the boxes of :func:`crop_boxes`, or None.
    """

    ids: list[str]
    patches: np.ndarray
    global_: np.ndarray
    group: list[str]
    meta: list[str]
    box: np.ndarray
    crops_global: np.ndarray | None


@dataclass(frozen=True)
class TextColumns:
    """The caption rows of one cache as they are written, N_txt rows each.

    strings, op, kind: N_txt strings; meta: N_txt JSON objects; token_strings: N_txt JSON lists;
    tokens: N_txt arrays [T_t, D_txt], stored packed as float16 [sum of T_t, D_txt], caption t at
    rows ``offsets[t]:offsets[t + 1]``; d_txt: D_txt; offsets: [N_txt + 1] int64;
    global_: [N_txt, D_gt] float32;
    image_index, positive_index: [N_txt] int64; truncated: [N_txt] bool.
    """

    strings: list[str]
    tokens: list[np.ndarray]
    d_txt: int
    offsets: np.ndarray
    token_strings: list[str]
    global_: np.ndarray
    image_index: np.ndarray
    positive_index: np.ndarray
    op: list[str]
    kind: list[str]
    truncated: np.ndarray
    meta: list[str]


def _offsets(tokens: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """N_txt arrays [T_t, D_txt] -> lengths [N_txt] int64 and offsets [N_txt + 1] int64."""
    lengths = np.asarray([len(t) for t in tokens], dtype=np.int64)
    offsets = np.zeros(len(tokens) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return lengths, offsets


PACK_BLOCK_BYTES = 32 << 20
"""Bytes of caption tokens gathered per write when they are packed into ``texts/tokens``."""


def _create_tokens(txt: h5py.Group, captions: TextColumns) -> None:
    """``texts/tokens``: the captions' arrays packed as float16 [sum of T_t, D_txt], chunked as
    ``create`` chunks one array, written by :func:`_pack_tokens` (no packed copy in RAM)."""
    n_tok, d = int(captions.offsets[-1]), captions.d_txt
    if n_tok == 0:
        create(txt, "tokens", np.zeros((0, d), np.float16))
        return
    dset = txt.create_dataset(
        "tokens", shape=(n_tok, d), dtype=np.float16, chunks=(chunk_rows(2 * d, n_tok), d), maxshape=(None, d)
    )
    _pack_tokens(dset, captions.tokens, 0)


def _pack_tokens(dset: h5py.Dataset, tokens: Sequence[np.ndarray], pos: int) -> None:
    """Write caption arrays ``tokens`` (each [T_t, D_txt]) one after another into ``dset`` from row
    ``pos`` on (rows already there), gathered ``PACK_BLOCK_BYTES`` a write."""
    d = dset.shape[1]
    total = sum(len(t) for t in tokens)
    if total == 0:
        return
    buf = plain_empty((min(max(1, PACK_BLOCK_BYTES // (2 * d)), total), d), np.float16)
    group: list[np.ndarray] = []
    rows = 0  # rows gathered in ``group``
    for t in [*tokens, None]:
        n = 0 if t is None else len(t)
        if group and (t is None or rows + n > len(buf)):
            if rows:
                np.concatenate(group, axis=0, out=buf[:rows])
                dset[pos : pos + rows] = buf[:rows]
            pos, rows, group = pos + rows, 0, []
        if t is None:
            break
        if n > len(buf):  # a caption longer than a block: written alone
            dset[pos : pos + n] = np.asarray(t, np.float16)
            pos += n
        else:
            group.append(t)
            rows += n


def append_arrays(f: h5py.File, *args: Any, **kwargs: Any) -> None:
    """Append one cache's rows (the columns as :func:`columns` takes them, indices local to
    them) to the cache open read-write in ``f``, which has the same datasets: index columns
    rebased, the root attributes' counts and creation time updated, the others kept."""
    _, images, captions = columns(*args, **kwargs)
    img_base, txt_base = f["images/ids"].shape[0], f["texts/strings"].shape[0]
    tok = f["texts/tokens"]
    tok_base = tok.shape[0]
    rows = _rows(images, captions, kwargs.get("skipped", ()))
    rows["texts/offsets"] = (captions.offsets[1:] + tok_base, None)
    rows["texts/image_index"] = (rebased(captions.image_index, img_base), None)
    rows["texts/positive_index"] = (rebased(captions.positive_index, txt_base), None)
    for name, (data, dtype) in rows.items():
        if name == "texts/tokens":
            tok.resize((tok_base + int(captions.offsets[-1]), tok.shape[1]))
            _pack_tokens(tok, captions.tokens, tok_base)
        elif data is not None:
            extend(f[name], np.asarray(data, dtype=object) if dtype is STR else data)
    for k, v in completed_attrs(f, *row_bases([f])).items():
        f.attrs[k] = encode_attr(v)


def _require_spaces(attrs: dict[str, Any]) -> None:
    missing = [k for k in ("space", "global_space") if not attrs.get(k)]
    if missing:
        raise ValueError(
            f"write_arrays: attrs must say {' and '.join(missing)} ('joint' or 'hidden' / 'none'): "
            "what the embeddings are is never assumed"
        )


def _token_strings(token_strings: Sequence[Sequence[str] | str] | None, lengths: np.ndarray) -> list[str]:
    """N_txt JSON lists of token strings; the token positions when none are given."""
    if token_strings is None:
        token_strings = [json.dumps([str(i) for i in range(n)]) for n in lengths]
    return [s if isinstance(s, str) else json.dumps(list(s)) for s in token_strings]


def _meta(items: Sequence[dict | str] | None, n: int) -> list[str]:
    if items is None:
        return ["{}"] * n
    return [m if isinstance(m, str) else dumps(m) for m in items]


def _box(image_box: np.ndarray | None, n_img: int) -> np.ndarray:
    """[N_img, 4] float32 boxes; all NaN when none are given."""
    box = np.full((n_img, 4), np.nan, np.float32) if image_box is None else np.asarray(image_box, np.float32)
    return box.reshape(n_img, 4)


def _full_attrs(
    attrs: dict[str, Any],
    patches: np.ndarray,
    d_txt: int,
    image_global: np.ndarray,
    text_global: np.ndarray,
    n_tokens: int,
    truncated: Sequence[bool] | None,
    skipped: Sequence[tuple[str, str]],
) -> dict[str, Any]:
    """The root attributes: the derived ones, then ``attrs``, then the counts (which win)."""
    d_img = patches.shape[2] if patches.ndim == 3 else int(attrs.get("image_dim", 0))
    return {
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
        "n_images": len(image_global),
        "n_texts": len(text_global),
        "n_tokens": n_tokens,
        "n_skipped": len(skipped),
        "n_truncated": int(np.sum(truncated)) if truncated is not None else 0,
        "complete": True,
    }


def _write_file(
    path: Path | h5py.File,
    attrs: dict[str, Any],
    images: ImageColumns,
    captions: TextColumns,
    skipped: Sequence[tuple[str, str]],
) -> Path:
    """Write the cache to ``path`` through a temporary name, atomically (or into an open file)."""
    if isinstance(path, h5py.File):
        _fill(path, attrs, images, captions, skipped)
        return Path(path.filename)
    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        _fill(f, attrs, images, captions, skipped)
    os.replace(tmp, path)
    return path


def _fill(
    f: h5py.File,
    attrs: dict[str, Any],
    images: ImageColumns,
    captions: TextColumns,
    skipped: Sequence[tuple[str, str]],
) -> None:
    for k, v in attrs.items():
        f.attrs[k] = encode_attr(v)
    for name, (data, dtype) in _rows(images, captions, skipped).items():
        if name == "texts/tokens":
            _create_tokens(f.require_group("texts"), captions)
        elif data is not None:
            group, _, leaf = name.rpartition("/")
            create(f.require_group(group), leaf, data, dtype)
    if images.crops_global is not None:
        f["images/crops"].create_dataset("boxes", data=crop_boxes())


def _rows(
    images: ImageColumns, captions: TextColumns, skipped: Sequence[tuple[str, str]]
) -> dict[str, tuple[Any, Any]]:
    """Every dataset of a cache with rows -> (its rows, ``STR`` for strings or None), in the
    order they are created; ``texts/tokens`` (packed from ``captions.tokens``) has None rows, as
    ``images/crops/global`` has when there are no crops."""
    return {
        "images/ids": (images.ids, STR),
        "images/patches": (images.patches.astype(np.float16, copy=False), None),
        "images/global": (images.global_, None),
        "images/group": (images.group, STR),
        "images/meta": (images.meta, STR),
        "images/box": (images.box, None),
        "images/crops/global": (images.crops_global, None),
        "texts/strings": (captions.strings, STR),
        "texts/tokens": (None, None),
        "texts/offsets": (captions.offsets, None),
        "texts/token_strings": (captions.token_strings, STR),
        "texts/global": (captions.global_, None),
        "texts/image_index": (captions.image_index, None),
        "texts/positive_index": (captions.positive_index, None),
        "texts/op": (captions.op, STR),
        "texts/kind": (captions.kind, STR),
        "texts/truncated": (captions.truncated, None),
        "texts/meta": (captions.meta, STR),
        "skipped/item": ([s[0] for s in skipped], STR),
        "skipped/reason": ([s[1] for s in skipped], STR),
    }
