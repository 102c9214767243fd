"""Reading a merged cache's payload from its shard files directly, not through HDF5's virtual
datasets.

A cache written by several processes is shard files plus a merged file whose payload datasets
are HDF5 virtual datasets over the shards (:mod:`cache_tools.store.shards`). Rows read through
such a dataset cost about twice what the same rows cost read from the shard's own dataset
(``bench/scale.py``: patches of random training rows, page cache dropped, 520-555 vs 980-1,010
MB/s). :class:`ShardRows` maps a virtual dataset that is whole shard datasets stacked along the
first axis back to those datasets and reads each shard's share of a request there, from the
shard file's bytes (:mod:`cache_tools.store.direct_rows`) where it can, else through
:func:`cache_tools.store.h5io.read_rows`. Any other virtual
layout is read through HDF5 as before (:func:`shard_rows` returns None).
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from cache_tools.errors import CacheFormatError
from cache_tools.store.direct_rows import DirectRows, direct_rows
from cache_tools.store.h5io import read_rows

SHARD_CHUNK_CACHE_BYTES = 64 << 20
"""HDF5 chunk cache a process gives one payload dataset, split among its shard files."""


class ShardRows:
    """A virtual dataset [N, ...] that stacks whole shard datasets, read from the shards.

    ``blocks``: per shard (first row, end row, shard file, dataset name), in row order, covering
    ``0..N``. Shard files open on first use, once per process (a forked DataLoader worker opens
    its own). ``shape``, ``dtype`` and ``chunks`` are the virtual dataset's.
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        dtype: np.dtype,
        chunks: tuple[int, ...] | None,
        blocks: list[tuple[int, int, Path, str]],
    ):
        self.shape, self.dtype, self.chunks, self.blocks = shape, dtype, chunks, blocks
        self.stops = np.array([b[1] for b in blocks], dtype=np.int64)
        self._open: dict[int, h5py.Dataset | DirectRows] = {}
        self._files: list[h5py.File] = []
        self._pid = -1

    def _dataset(self, k: int) -> h5py.Dataset | DirectRows:
        if self._pid != os.getpid():
            self._open, self._files, self._pid = {}, [], os.getpid()
        if k not in self._open:
            start, stop, path, name = self.blocks[k]
            per_shard = max(4 << 20, SHARD_CHUNK_CACHE_BYTES // len(self.blocks))
            try:
                f = h5py.File(path, "r", rdcc_nbytes=per_shard, rdcc_nslots=10007)
                d = f[name]
            except (OSError, KeyError) as err:
                raise CacheFormatError(
                    f"{path}: a shard file of the merged cache cannot be read ({str(err).splitlines()[0][:120]}): "
                    "keep the shard files beside the merged file, or merge the shards again"
                ) from None
            if d.shape != (stop - start, *self.shape[1:]) or d.dtype != self.dtype:
                f.close()
                raise CacheFormatError(
                    f"{path}:{name} is {d.shape} {d.dtype} where the merged cache maps "
                    f"{(stop - start, *self.shape[1:])} {self.dtype}: merge the shards again"
                )
            direct = direct_rows(d)
            if direct is None:
                self._files.append(f)
            else:
                f.close()
            self._open[k] = direct or d
        return self._open[k]

    def read(self, idx: np.ndarray) -> np.ndarray:
        """Rows ``idx`` (int [B], any order, repeats allowed) -> [B, ...], as ``dset[idx]``."""
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.shape[0]):
            raise IndexError(f"rows out of range [0, {self.shape[0]})")
        which = np.searchsorted(self.stops, idx, side="right")
        shards = np.unique(which)
        if shards.size == 1:
            k = int(shards[0])
            return read_from(self._dataset(k), idx - self.blocks[k][0])
        out = np.empty((idx.size, *self.shape[1:]), dtype=self.dtype)
        for k in shards.tolist():
            sel = np.flatnonzero(which == k)
            out[sel] = read_from(self._dataset(k), idx[sel] - self.blocks[k][0])
        return out

    def close(self) -> None:
        if self._pid == os.getpid():
            for f in self._files:
                f.close()
            for d in self._open.values():
                if isinstance(d, DirectRows):
                    d.close()
        self._open, self._files, self._pid = {}, [], -1

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.update(_open={}, _files=[], _pid=-1)
        return state


def read_from(source: h5py.Dataset | np.ndarray | ShardRows | DirectRows, idx: np.ndarray) -> np.ndarray:
    """Rows ``idx`` (int [B], any order, repeats allowed) of any row source -> [B, ...]."""
    if isinstance(source, (ShardRows, DirectRows)):
        return source.read(idx)
    return read_rows(source, idx)


def shard_rows(dset: h5py.Dataset, base: Path) -> ShardRows | None:
    """A :class:`ShardRows` for the virtual dataset ``dset`` when it stacks whole datasets of
    other files along its first axis (as ``concat_caches(..., virtual=True)`` writes them;
    relative file names resolve against ``base``, the merged file's folder); None otherwise
    (not virtual, or another layout: read it through HDF5)."""
    if not dset.is_virtual or not dset.shape or dset.shape[0] == 0:
        return None
    tail = dset.shape[1:]
    blocks = []
    for m in dset.virtual_sources():
        if m.file_name in ("", ".") or m.src_space.get_select_type() != h5py.h5s.SEL_ALL:
            return None
        (lo, *lo_tail), (hi, *hi_tail) = m.vspace.get_select_bounds()
        if any(lo_tail) or tuple(h + 1 for h in hi_tail) != tail:
            return None
        path = Path(m.file_name)
        blocks.append((int(lo), int(hi) + 1, path if path.is_absolute() else (base / path), m.dset_name))
    blocks.sort()
    if not blocks or blocks[0][0] != 0 or blocks[-1][1] != dset.shape[0]:
        return None
    if any(a[1] != b[0] for a, b in zip(blocks, blocks[1:])):
        return None
    return ShardRows(dset.shape, dset.dtype, dset.chunks, blocks)
