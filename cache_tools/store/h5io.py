"""Low-level HDF5 helpers shared by the writer, the shard merger and the reader.

``read_rows(dset, idx)`` is the one place that turns an arbitrary list of row indices into a
few contiguous slice reads (h5py's per-element fancy indexing is far slower than sequential
reads); everything that reads rows at random goes through it.
"""

from __future__ import annotations

import json
import math
from typing import Any

import h5py
import numpy as np

from cache_tools.store.schema import STR

TARGET_CHUNK_BYTES = 256 << 10
"""~256 KiB HDF5 chunks: sequential reads stay fast, and a random row (re-ranking) reads little extra."""


CHUNK_ALIGN = 4096
"""Where rows allow it, a chunk's bytes are a multiple of this (a page), so the writer can send
whole chunks past the page cache (``cache_tools.write.direct_io``)."""


def chunk_rows(row_bytes: int, n_rows: int | None = None) -> int:
    """Rows per HDF5 chunk for rows of ``row_bytes`` bytes (at least 1, at most n_rows): about
    ``TARGET_CHUNK_BYTES``, rounded down to a number of rows whose bytes are a multiple of
    ``CHUNK_ALIGN`` when that leaves at least one such step (ViT-B/32 patches, 49 x 512 float16 =
    50,176 B a row: 4 rows = 49 pages, not 5)."""
    row_bytes = max(1, int(row_bytes))
    rows = max(1, TARGET_CHUNK_BYTES // row_bytes)
    step = CHUNK_ALIGN // math.gcd(row_bytes, CHUNK_ALIGN)  # fewest rows filling whole pages
    if rows >= step:
        rows -= rows % step
    if n_rows:
        rows = min(rows, max(1, n_rows))
    return int(rows)


def create(group: h5py.Group, name: str, data: np.ndarray | list, dtype: Any = None) -> h5py.Dataset:
    """Write ``data`` as a chunked dataset (chunks along the first axis, ~256 KiB each, see ``chunk_rows``).

    Strings (``dtype=STR``) are stored as variable-length UTF-8.
    """
    if dtype is STR:
        arr = np.asarray(list(data), dtype=object)
    else:
        arr = np.asarray(data, dtype=dtype)
    if arr.ndim == 0:
        raise ValueError(f"{name}: expected an array")
    n = arr.shape[0]
    row_bytes = int(np.prod(arr.shape[1:], dtype=np.int64)) * (16 if dtype is STR else arr.dtype.itemsize)
    chunks = (chunk_rows(row_bytes, n), *arr.shape[1:]) if n > 0 else None
    maxshape = (None, *arr.shape[1:])
    return group.create_dataset(
        name, data=arr, dtype=STR if dtype is STR else arr.dtype, chunks=chunks or True, maxshape=maxshape
    )


def extend(dset: h5py.Dataset, rows: np.ndarray | list) -> None:
    """Append ``rows`` [n, ...] to the resizable ``dset`` along its first axis."""
    n = len(rows)
    if n:
        dset.resize((dset.shape[0] + n, *dset.shape[1:]))
        dset[-n:] = rows


def read_str(dset: h5py.Dataset) -> np.ndarray:
    """A string dataset as a numpy array of Python ``str`` (object dtype)."""
    if dset.shape[0] == 0:
        return np.empty(0, dtype=object)
    return dset.asstr()[()].astype(object)


def runs(sorted_idx: np.ndarray, max_gap: int) -> list[tuple[int, int]]:
    """Group sorted unique indices into ``[start, stop)`` blocks, merging gaps <= max_gap."""
    if sorted_idx.size == 0:
        return []
    breaks = np.nonzero(np.diff(sorted_idx) > max_gap + 1)[0]
    starts = np.concatenate([[sorted_idx[0]], sorted_idx[breaks + 1]])
    stops = np.concatenate([sorted_idx[breaks], [sorted_idx[-1]]]) + 1
    return list(zip(starts.tolist(), stops.tolist()))


def read_rows(dset: h5py.Dataset | np.ndarray, idx: np.ndarray, max_gap: int | None = None) -> np.ndarray:
    """Rows ``dset[idx]`` in the requested order, read as a few contiguous slices.

    Args:
        dset: an h5py dataset (or an in-memory array, indexed directly) of shape [N, ...].
        idx: int array [B], any order, repeats allowed.
        max_gap: merge index runs whose gap is at most this many rows (default: one chunk).
    Returns:
        array [B, ...].
    """
    idx = np.asarray(idx, dtype=np.int64).reshape(-1)
    if isinstance(dset, np.ndarray):
        return dset[idx]
    if idx.size == 0:
        return np.empty((0, *dset.shape[1:]), dtype=dset.dtype)
    uniq, inverse = np.unique(idx, return_inverse=True)
    if uniq[0] < 0 or uniq[-1] >= dset.shape[0]:
        raise IndexError(f"{dset.name}: index out of range [0, {dset.shape[0]})")
    if max_gap is None:
        max_gap = dset.chunks[0] if dset.chunks else 64
    out = np.empty((uniq.size, *dset.shape[1:]), dtype=dset.dtype)
    pos = 0
    for start, stop in runs(uniq, max_gap):
        take = uniq[pos:][: np.searchsorted(uniq[pos:], stop)]
        if take.size == stop - start:  # dense run: read straight into the output
            dset.read_direct(out, np.s_[start:stop], np.s_[pos : pos + take.size])
        else:
            out[pos : pos + take.size] = dset[start:stop][take - start]
        pos += take.size
    if uniq.size == idx.size and np.array_equal(uniq, idx):
        return out
    return out[inverse]


def dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")) if obj else "{}"
