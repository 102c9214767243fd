"""Reading rows of an uncompressed HDF5 dataset straight from the file's bytes.

A training batch reads some thousands of scattered rows (an image's patches, a caption's
tokens and those of its negatives). Through HDF5 each read of part of a chunk goes through the
chunk cache, and h5py's selections cost a call each: on the 2-core machine of ``bench/scale.py``
token rows read that way came at ~600 MB/s from the page cache. The payload datasets a cache
writes are chunked along their first axis with no filter, so a row's bytes sit at a fixed place
in the file: :class:`DirectRows` learns each chunk's file offset once (``chunk_iter``), maps
rows to byte ranges, merges the ranges that touch, and reads each with one ``os.preadv`` into
the output array. Datasets stored otherwise (compressed, filtered, with unwritten chunks,
non-native dtypes) are read through h5py as before (:func:`direct_rows` returns None).
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from cache_tools.errors import CacheFormatError

READAHEAD_GAP_BYTES = 1 << 20
"""Ranges closer than this are announced to the kernel as one span (``POSIX_FADV_WILLNEED``)
before they are read, so a cold read becomes a few large disk reads instead of many small ones."""


class DirectRows:
    """Rows [N, ...] of one dataset: ``chunk_rows`` rows a chunk, chunk k's first byte at
    ``chunk_offsets[k]`` in ``path`` (one chunk for a contiguous dataset). The file opens on
    first use, once per process (a forked DataLoader worker opens its own)."""

    def __init__(
        self,
        path: Path,
        shape: tuple[int, ...],
        dtype: np.dtype,
        chunk_rows: int,
        chunk_offsets: np.ndarray,
    ):
        self.path, self.shape, self.dtype = Path(path), tuple(shape), np.dtype(dtype)
        self.chunk_rows = int(chunk_rows)
        self.chunk_offsets = np.asarray(chunk_offsets, dtype=np.int64)
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        self._fd, self._pid = -1, -1

    def _file(self) -> int:
        if self._pid != os.getpid():
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        return self._fd

    def read(self, idx: np.ndarray) -> np.ndarray:
        """Rows ``idx`` (int [B], any order, repeats allowed) -> [B, ...], as ``dset[idx]``."""
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        out = np.empty((idx.size, *self.shape[1:]), dtype=self.dtype)
        if idx.size == 0:
            return out
        if idx.min() < 0 or idx.max() >= self.shape[0]:
            raise IndexError(f"{self.path}: rows out of range [0, {self.shape[0]})")
        uniq, inverse = np.unique(idx, return_inverse=True)
        got = out if uniq.size == idx.size else np.empty_like(out[: uniq.size])
        offsets = self.chunk_offsets[uniq // self.chunk_rows] + (uniq % self.chunk_rows) * self.row_bytes
        breaks = np.flatnonzero(np.diff(offsets) != self.row_bytes) + 1
        starts = np.concatenate([[0], breaks])
        stops = np.concatenate([breaks, [uniq.size]])
        fd = self._file()
        self._announce(fd, offsets[starts], offsets[stops - 1] + self.row_bytes)
        flat = got.reshape(uniq.size, -1).view(np.uint8)
        for a, b in zip(starts.tolist(), stops.tolist()):
            want, at = (b - a) * self.row_bytes, int(offsets[a])
            view = memoryview(flat[a:b]).cast("B")
            done = os.preadv(fd, [view], at)
            while done < want:  # a short read (signals, large requests): go on from there
                n = os.preadv(fd, [view[done:]], at + done)
                if n <= 0:
                    raise CacheFormatError(
                        f"{self.path} ends before byte {at + want}: the file is truncated; build the cache again"
                    )
                done += n
        if got is out and np.array_equal(uniq, idx):
            return out
        np.take(got, inverse.reshape(-1), axis=0, out=out)
        return out

    @staticmethod
    def _announce(fd: int, lo: np.ndarray, hi: np.ndarray) -> None:
        """Ask the kernel to start reading the byte spans ``lo..hi`` (sorted) now, spans closer
        than ``READAHEAD_GAP_BYTES`` joined."""
        if lo.size == 0:
            return
        joins = np.flatnonzero(lo[1:] - hi[:-1] > READAHEAD_GAP_BYTES) + 1
        for a, b in zip(np.concatenate([[0], joins]).tolist(), np.concatenate([joins, [lo.size]]).tolist()):
            os.posix_fadvise(fd, int(lo[a]), int(hi[b - 1] - lo[a]), os.POSIX_FADV_WILLNEED)

    def close(self) -> None:
        if self._pid == os.getpid() and self._fd >= 0:
            os.close(self._fd)
        self._fd, self._pid = -1, -1

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fd": -1, "_pid": -1}


def direct_rows(dset: h5py.Dataset) -> DirectRows | None:
    """A :class:`DirectRows` for ``dset`` when its rows can be read from the file's bytes: a
    numeric native-order dtype, no filter, chunks only along the first axis (or contiguous), and
    every chunk written; None otherwise, or when ``TFLOCAL_DIRECT_READS=0`` (read through h5py)."""
    if os.environ.get("TFLOCAL_DIRECT_READS", "1") == "0" or not hasattr(dset.id, "chunk_iter"):
        return None
    if dset.is_virtual or not dset.shape or dset.shape[0] == 0 or dset.dtype.kind not in "fiub":
        return None
    if not dset.dtype.isnative or dset.dtype.byteorder == ">":
        return None
    dcpl = dset.id.get_create_plist()
    if dcpl.get_nfilters() or dset.external:
        return None
    path = Path(dset.file.filename)
    if dset.chunks is None:
        offset = dset.id.get_offset()
        if offset is None:
            return None
        return DirectRows(path, dset.shape, dset.dtype, dset.shape[0], np.array([offset], np.int64))
    if tuple(dset.chunks[1:]) != tuple(dset.shape[1:]):
        return None
    rows = int(dset.chunks[0])
    n_chunks = -(-dset.shape[0] // rows)
    offsets = np.full(n_chunks, -1, dtype=np.int64)

    def visit(info) -> None:
        k = int(info.chunk_offset[0]) // rows
        if k < n_chunks:
            offsets[k] = int(info.byte_offset)

    dset.id.chunk_iter(visit)
    if (offsets < 0).any():
        return None
    return DirectRows(path, dset.shape, dset.dtype, rows, offsets)
