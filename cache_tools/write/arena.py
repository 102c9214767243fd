"""Memory reused from one cache part to the next, for the arrays a part is encoded into.

A part's payload (~1 GB of caption tokens and patches in a COCO-sized cache) is written once
and dropped. Taking it from fresh memory each part costs the kernel's first touch of every page
(measured on the 2-core VMs this project runs on: ~0.6-1.2 GB/s for fresh pages against
~5 GB/s copying into pages touched before), which made converting the encoder's token tensors
to float16 the largest single cost of the writer's main thread. An :class:`Arena` hands out
views of blocks it keeps; :meth:`Arena.reset` makes them all free again once the part that
used them is on disk. The writer keeps two (a part is encoded while the one before it is
written) and alternates.
"""

from __future__ import annotations

import mmap

import numpy as np

BLOCK_BYTES = 64 << 20
"""Small arrays (a batch's caption tokens, a few MB) are cut from blocks of this size; an array
larger than a block gets a buffer of its own, kept for the next array that fits in it."""

_ALIGN = 64  # bytes: every view starts on a cache line


def plain_empty(shape: tuple[int, ...], dtype) -> np.ndarray:
    """An uninitialized array like ``np.empty``, in ordinary pages (see :func:`_buffer`)."""
    dtype = np.dtype(dtype)
    return _buffer(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize).view(dtype).reshape(shape)


def _buffer(n: int) -> np.ndarray:
    """uint8 [n] of anonymous memory in ordinary pages. numpy asks the kernel for transparent huge
    pages for arrays of 4 MiB or more; where the kernel then compacts memory to find them (THP
    ``defrag`` set to ``madvise``, as on this project's VMs, their page cache full of cache
    files), a 3.9 GB cache written with such blocks took 2-3x the system time and ran 163-235
    MB/s, against 268-327 MB/s in ordinary pages (``bench/scale.py``'s writer, same machine)."""
    m = mmap.mmap(-1, max(1, n))
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        m.madvise(mmap.MADV_NOHUGEPAGE)
    return np.frombuffer(m, np.uint8, count=n)


class Arena:
    """A bump allocator over reusable blocks: :meth:`take` -> a new view, :meth:`reset` -> all free."""

    def __init__(self, block_bytes: int = BLOCK_BYTES):
        self.block_bytes = int(block_bytes)
        self._blocks: list[np.ndarray] = []  # uint8 [block_bytes] each
        self._block = 0  # the block views are cut from now ...
        self._pos = 0  # ... and the first free byte in it
        self._large: list[np.ndarray] = []  # uint8 buffers bigger than a block, free
        self._large_used: list[np.ndarray] = []

    def take(self, shape: tuple[int, ...], dtype) -> np.ndarray:
        """An uninitialized C-contiguous array of ``shape`` and ``dtype`` in this arena's memory,
        valid until :meth:`reset`."""
        dtype = np.dtype(dtype)
        n = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if n > self.block_bytes:
            return self._take_large(n)[:n].view(dtype).reshape(shape)
        if self._blocks and self._pos + n > self.block_bytes:
            self._block, self._pos = self._block + 1, 0
        if self._block == len(self._blocks):
            self._blocks.append(_buffer(self.block_bytes))
        view = self._blocks[self._block][self._pos : self._pos + n]
        self._pos += -(-n // _ALIGN) * _ALIGN
        return view.view(dtype).reshape(shape)

    def _take_large(self, n: int) -> np.ndarray:
        fits = [i for i, b in enumerate(self._large) if len(b) >= n]
        buf = self._large.pop(min(fits, key=lambda i: len(self._large[i]))) if fits else _buffer(n)
        self._large_used.append(buf)
        return buf

    def reset(self) -> None:
        """Every view taken so far is free to be handed out again (its contents are overwritten)."""
        self._block = self._pos = 0
        self._large.extend(self._large_used)
        self._large_used = []

    @property
    def nbytes(self) -> int:
        """Bytes this arena holds."""
        return sum(len(b) for b in self._blocks) + sum(len(b) for b in (*self._large, *self._large_used))
