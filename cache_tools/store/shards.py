"""Concatenating caches: parts into one file (copy), or shards into one logical cache (virtual).

``concat_caches(paths, out, attrs, virtual=...)`` stacks caches along their first axis and
rebases the index datasets (``texts/offsets``, ``texts/image_index``, ``texts/positive_index``).
With ``virtual=True`` the large payload datasets (patches, tokens, global embeddings, crops)
become HDF5 virtual datasets that point into the source files (stored by relative path, so the
folder can be moved as a whole); only the small index and string datasets are copied.
:func:`shard_layout` reads back which rows of such a cache each shard file holds, and
:func:`partition_shards` splits shards among processes, balanced by a count (images, pairs).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from cache_tools import __version__
from cache_tools.errors import CacheFormatError
from cache_tools.store.h5io import chunk_rows, create
from cache_tools.store.schema import FORMAT_VERSION, STR, decode_attrs, encode_attr

PAYLOAD = (
    "images/patches",
    "images/global",
    "images/crops/global",
    "texts/tokens",
    "texts/global",
)
COPIED = (
    "images/ids",
    "images/group",
    "images/meta",
    "images/box",
    "texts/strings",
    "texts/token_strings",
    "texts/op",
    "texts/kind",
    "texts/truncated",
    "texts/meta",
    "skipped/item",
    "skipped/reason",
)


def _virtual(out: h5py.File, name: str, files: list[h5py.File], out_dir: Path) -> None:
    shapes = [f[name].shape for f in files]
    total = sum(s[0] for s in shapes)
    tail = shapes[0][1:]
    layout = h5py.VirtualLayout(shape=(total, *tail), dtype=files[0][name].dtype)
    pos = 0
    for f, shape in zip(files, shapes):
        if shape[0] == 0:
            continue
        rel = os.path.relpath(os.path.abspath(f.filename), os.path.abspath(out_dir))
        layout[pos : pos + shape[0]] = h5py.VirtualSource(rel, name, shape=shape)
        pos += shape[0]
    out.create_virtual_dataset(name, layout, fillvalue=0)


def _copy(out: h5py.File, name: str, files: list[h5py.File]) -> None:
    src = [f[name] for f in files]
    total = sum(d.shape[0] for d in src)
    tail = src[0].shape[1:]
    is_str = h5py.check_string_dtype(src[0].dtype) is not None
    dtype = STR if is_str else src[0].dtype
    row_bytes = int(np.prod(tail, dtype=np.int64)) * (16 if is_str else src[0].dtype.itemsize)
    dset = out.create_dataset(
        name,
        shape=(total, *tail),
        dtype=dtype,
        chunks=(chunk_rows(row_bytes, total), *tail) if total else True,
        maxshape=(None, *tail),
    )
    pos = 0
    for d in src:
        n = d.shape[0]
        step = max(1, (64 << 20) // max(1, row_bytes))
        for i in range(0, n, step):
            block = d[i : i + step]
            dset[pos + i : pos + i + len(block)] = block
        pos += n


def row_bases(files: Sequence[h5py.File]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where each of ``files``' images, texts and tokens start in their concatenation: three
    int64 [len(files) + 1] cumulative counts (the last entry is the total)."""
    counts = [[f[name].shape[0] for f in files] for name in ("images/ids", "texts/strings", "texts/tokens")]
    img, txt, tok = (np.cumsum([0, *c]).astype(np.int64) for c in counts)
    return img, txt, tok


def rebased(index: np.ndarray, base: int) -> np.ndarray:
    """A row index column [n] shifted by ``base``, -1 (no row) kept: int64 [n]."""
    return np.where(index >= 0, index + base, -1).astype(np.int64)


def completed_attrs(
    f: h5py.File, img_base: np.ndarray, txt_base: np.ndarray, tok_base: np.ndarray
) -> dict[str, Any]:
    """The root attributes that mark the concatenated cache ``f`` complete: format and package
    versions, creation time, and its counts (totals from the bases of :func:`row_bases`; skipped
    and truncated counted in ``f``)."""
    return dict(
        format_version=FORMAT_VERSION,
        package_version=__version__,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        n_images=int(img_base[-1]),
        n_texts=int(txt_base[-1]),
        n_tokens=int(tok_base[-1]),
        n_skipped=int(f["skipped/item"].shape[0]),
        n_truncated=int(f["texts/truncated"][()].sum()),
        complete=True,
    )


def concat_caches(
    paths: Sequence[str | Path],
    out: str | Path,
    attrs: dict[str, Any] | None = None,
    extra_skipped: Sequence[tuple[str, str]] = (),
    virtual: bool = False,
) -> Path:
    """Stack caches ``paths`` into ``out`` (written through a temporary name, then renamed).

    Args:
        attrs: root attributes for ``out`` (counts are recomputed); default: the first file's.
        extra_skipped: more (item, reason) rows for ``skipped`` (e.g. the source's own skips).
        virtual: payload datasets as virtual datasets over ``paths`` instead of copies.
    """
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    files = [h5py.File(p, "r") for p in paths]
    try:
        if not files:
            raise ValueError("nothing to concatenate")
        base = decode_attrs(files[0].attrs)
        merged = {**base, **(attrs or {})}
        has_crops = all("images/crops/global" in f for f in files)
        img_base, txt_base, tok_base = row_bases(files)
        with h5py.File(tmp, "w") as o:
            for name in PAYLOAD:
                if name.startswith("images/crops") and not has_crops:
                    continue
                (_virtual(o, name, files, out.parent) if virtual else _copy(o, name, files))
            for name in COPIED:
                _copy(o, name, files)
            if has_crops:
                o["images/crops"].create_dataset("boxes", data=files[0]["images/crops/boxes"][()])
            offsets = [np.zeros(1, np.int64)]
            image_index, positive_index = [], []
            for k, f in enumerate(files):
                offsets.append(f["texts/offsets"][1:] + tok_base[k])
                image_index.append(rebased(f["texts/image_index"][()], img_base[k]))
                positive_index.append(rebased(f["texts/positive_index"][()], txt_base[k]))
            create(o["texts"], "offsets", np.concatenate(offsets))
            create(o["texts"], "image_index", np.concatenate(image_index))
            create(o["texts"], "positive_index", np.concatenate(positive_index))
            if extra_skipped:
                sk = o["skipped"]
                for key, col in (("item", 0), ("reason", 1)):
                    d = sk[key]
                    d.resize((d.shape[0] + len(extra_skipped),))
                    d[-len(extra_skipped) :] = [s[col] for s in extra_skipped]
            merged.update(completed_attrs(o, img_base, txt_base, tok_base))
            if virtual:
                merged["shards"] = [
                    os.path.relpath(os.path.abspath(p), os.path.abspath(out.parent)) for p in paths
                ]
            for k, v in merged.items():
                o.attrs[k] = encode_attr(v)
    finally:
        for f in files:
            f.close()
    os.replace(tmp, out)
    return out


def merge_shards(out: str | Path, shard_paths: Sequence[str | Path]) -> Path:
    """Write ``out`` as one logical cache over ``shard_paths`` (virtual payload, no copy)."""
    return concat_caches(shard_paths, out, virtual=True)


@dataclass(frozen=True)
class ShardRows:
    """One shard file of a merged cache and the rows of the merged cache it holds:
    images ``image_start:image_stop``, texts ``text_start:text_stop`` (stop exclusive)."""

    path: Path
    image_start: int
    image_stop: int
    text_start: int
    text_stop: int

    @property
    def n_images(self) -> int:
        return self.image_stop - self.image_start


def _source_rows(dset: h5py.Dataset) -> dict[str, tuple[int, int]]:
    """A virtual dataset's source file names -> the [start, stop) rows of it they fill."""
    out = {}
    for vs in dset.virtual_sources():
        lo, hi = vs.vspace.get_select_bounds()
        out[vs.file_name] = (int(lo[0]), int(hi[0]) + 1)
    return out


def shard_layout(path: str | Path) -> list[ShardRows]:
    """The shard files of a cache written by :func:`merge_shards` (its ``shards`` attribute), in
    row order, with the image and text rows each holds; ``[]`` for a cache that is one file.

    Reads the merged file's attributes and virtual-dataset mappings only: no shard file is opened.
    """
    path = Path(path)
    with h5py.File(path, "r") as f:
        names = decode_attrs(f.attrs).get("shards") or []
        if not names:
            return []
        img, txt = _source_rows(f["images/global"]), _source_rows(f["texts/global"])
        n_img, n_txt = f["images/global"].shape[0], f["texts/global"].shape[0]
    out, at_img, at_txt = [], 0, 0
    for name in names:
        i0, i1 = img.get(name, (at_img, at_img))  # an empty shard has no mapping
        t0, t1 = txt.get(name, (at_txt, at_txt))
        if i0 != at_img or t0 != at_txt:
            raise CacheFormatError(
                f"{path}: shard {name} does not follow the one before it in the merged cache: merge the shards again"
            )
        out.append(ShardRows((path.parent / name).resolve(), i0, i1, t0, t1))
        at_img, at_txt = i1, t1
    if (at_img, at_txt) != (n_img, n_txt):
        raise CacheFormatError(f"{path}: its shards do not cover its rows: merge the shards again")
    return out


def partition_shards(weights: Sequence[int], parts: int) -> list[list[int]]:
    """Split shards with ``weights`` (e.g. pairs per shard) into ``parts`` disjoint groups of
    near-equal total weight: the heaviest shard first, each to the lightest group so far (ties:
    the lower group). Each group lists its shard indices in increasing order; a group is empty
    only when there are fewer shards than parts."""
    load = [0] * parts
    groups: list[list[int]] = [[] for _ in range(parts)]
    for s in sorted(range(len(weights)), key=lambda i: (-int(weights[i]), i)):
        g = min(range(parts), key=lambda j: (load[j], j))
        groups[g].append(s)
        load[g] += int(weights[s])
    return [sorted(g) for g in groups]
