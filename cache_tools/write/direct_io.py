"""Large aligned writes that bypass the page cache (``O_DIRECT``), for the cache writer.

A cache of tens of GB is written once and read later, so caching its pages on the way out buys
nothing, and filling the page cache is what limits a buffered write on some machines: on the
virtual machines this project runs on, buffered writes (``dd`` with ``fsync``) sustained
~300 MB/s, one core busy in the kernel touching fresh pages, while ``O_DIRECT`` writes of the
same 16 MiB blocks reached 1.3 GB/s; an HDF5 file of 256 KiB chunks appended this way kept
~770 MB/s over 7.8 GB, where the same appends buffered fell from 2 GB/s to ~270 MB/s after the
first few GB (docs/scale.md).

Only writes whose offset and length are multiples of :data:`ALIGN` and at least
:data:`MIN_BYTES` long go direct (HDF5 places objects of at least that size on :data:`ALIGN`
boundaries when the file is opened with :data:`H5_ALIGNMENT`, so whole payload chunks
qualify); everything else (metadata, small datasets, partial chunks) is written through the
ordinary descriptor. Of a cache's payload, the chunks of caption tokens and globals are
multiples of 4 KiB; the patches' (5 rows of 50,176 B) are not and stay buffered. Linux keeps
the two descriptors coherent: a direct write flushes and drops any cached pages of its range
first. Where the file system refuses ``O_DIRECT`` (tmpfs before Linux 6.6, some network file
systems) or ``TFLOCAL_DIRECT_WRITES=0`` is set, every write is buffered.
"""

from __future__ import annotations

import errno
import mmap
import os

ALIGN = 4096
"""Offset, length and memory alignment of a direct write (a page; covers 512 B and 4 KiB sectors)."""

MIN_BYTES = 64 << 10
"""Writes shorter than this stay buffered (HDF5's metadata and small datasets); a cache's
payload chunks are ~256 KiB (``cache_tools.store.h5io.TARGET_CHUNK_BYTES``)."""

H5_ALIGNMENT = {"alignment_threshold": MIN_BYTES, "alignment_interval": ALIGN}
"""``h5py.File`` keywords that put every object of at least MIN_BYTES on an ALIGN boundary."""


def direct_writes_enabled() -> bool:
    return os.environ.get("TFLOCAL_DIRECT_WRITES", "1") != "0" and hasattr(os, "O_DIRECT")


class DirectWrites:
    """An ``O_DIRECT`` descriptor of ``path`` and a page-aligned bounce buffer (reused, so it
    costs no fresh memory per write); :meth:`write` returns None for a write it does not take."""

    def __init__(self, path: os.PathLike | str):
        self.fd: int | None = None
        self.buf: mmap.mmap | None = None
        self.count = 0  # direct writes done
        if direct_writes_enabled():
            try:
                self.fd = os.open(path, os.O_WRONLY | os.O_DIRECT)
            except OSError:
                self.fd = None

    def write(self, data: memoryview, offset: int) -> int | None:
        """Write ``data`` (bytes) at ``offset`` directly -> bytes written, or None when this write
        is not aligned, too short, or direct writes are off or failed (the caller writes it)."""
        n = data.nbytes
        if self.fd is None or n < MIN_BYTES or n % ALIGN or offset % ALIGN:
            return None
        if self.buf is None or len(self.buf) < n:
            if self.buf is not None:
                self.buf.close()
            self.buf = mmap.mmap(-1, n)  # anonymous maps are page-aligned
        self.buf[:n] = data
        try:
            with memoryview(self.buf) as whole, whole[:n] as view:  # released, so the map can close
                done = os.pwritev(self.fd, [view], offset)
        except OSError as err:
            if err.errno not in (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP):
                raise
            self.close()  # this file system takes no direct writes after all: buffered from now on
            return None
        if done <= 0:
            return None
        self.count += 1
        return done  # may be short: the caller writes the rest

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.buf is not None:
            self.buf.close()
            self.buf = None
