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
ordinary descriptor. A cache's payload chunks are whole pages where rows allow
(``cache_tools.store.h5io.chunk_rows``: ViT-B/32 patches 4 rows of 50,176 B = 49 pages).
Consecutive chunks are gathered into blocks of up to :data:`BLOCK_BYTES` written by a
background thread (:class:`DirectWrites`), so the writer does not wait for the device chunk by
chunk. Linux keeps the two descriptors coherent: a direct write flushes and drops any cached
pages of its range first. Where the file system refuses ``O_DIRECT`` (tmpfs before Linux 6.6, some network file
systems) or ``TFLOCAL_DIRECT_WRITES=0`` is set, every write is buffered.
"""

from __future__ import annotations

import errno
import mmap
import os
import queue
import threading

ALIGN = 4096
"""Offset, length and memory alignment of a direct write (a page; covers 512 B and 4 KiB sectors)."""

MIN_BYTES = 64 << 10
"""Writes shorter than this stay buffered (HDF5's metadata and small datasets); a cache's
payload chunks are ~256 KiB (``cache_tools.store.h5io.TARGET_CHUNK_BYTES``)."""

BLOCK_BYTES = 8 << 20
"""Consecutive direct writes are gathered into blocks of up to this many bytes, each written by
one system call in a background thread while the caller goes on (a direct write waits for the
device: 256 KiB at a time, the writer thread spent about as long waiting as encoding)."""

IN_FLIGHT = 2
"""Blocks queued or being written at once; the caller waits for one to finish past that."""

H5_ALIGNMENT = {"alignment_threshold": MIN_BYTES, "alignment_interval": ALIGN}
"""``h5py.File`` keywords that put every object of at least MIN_BYTES on an ALIGN boundary."""


def direct_writes_enabled() -> bool:
    return os.environ.get("TFLOCAL_DIRECT_WRITES", "1") != "0" and hasattr(os, "O_DIRECT")


class DirectWrites:
    """An ``O_DIRECT`` descriptor of ``path`` that takes whole aligned writes (see module).

    :meth:`write` copies what it takes into page-aligned blocks (reused: no fresh memory per
    write) and returns; a block is written when it is full, when a write does not continue it,
    or at :meth:`drain`, by a background thread, except the first block, written at once, so a
    file system that refuses ``O_DIRECT`` is found before anything is queued. A refused block is
    written through an ordinary descriptor and the rest of the run is buffered; any other error
    of a background write is kept in :attr:`error` (no later block is written, :meth:`write`
    takes nothing more) and raised by :meth:`close`, never by :meth:`write` or :meth:`drain`:
    those run inside HDF5's callbacks, and an exception there can leave h5py's file driver
    broken (seen: a segfault at exit). The caller drains before it reads, writes elsewhere, or
    needs the file's size: until then, the bytes of queued blocks are not in the file yet.

    HDF5 may call back into the file object from inside one of these methods (a finalizer that
    the garbage collector runs there closes another HDF5 object), so the hand-over to the thread
    uses only ``queue.SimpleQueue`` (reentrant: no lock a nested call could wait on), and a call
    made inside another leaves the block being gathered to the outer one."""

    def __init__(self, path: os.PathLike | str):
        self.path = path
        self.fd: int | None = None
        self.count = 0  # writes that went to the file past the page cache
        self._buffered: int | None = None  # where a refused block goes
        self._probed = False  # the first block was written (direct, or refused)
        self._block: mmap.mmap | None = None  # the block being gathered ...
        self._start = self._fill = self._writes = 0  # ... its file offset, bytes and writes
        self._busy = False  # inside write or drain (a nested call leaves the block alone)
        self._free: list[mmap.mmap] = []
        self._todo: queue.SimpleQueue = queue.SimpleQueue()  # blocks for the thread; None: stop
        self._done: queue.SimpleQueue = queue.SimpleQueue()  # one item per block written
        self._queued = 0  # blocks handed to the thread whose item was not taken from _done yet
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None  # of a background write (see the class)
        if direct_writes_enabled():
            try:
                self.fd = os.open(path, os.O_WRONLY | os.O_DIRECT)
            except OSError:
                self.fd = None

    def write(self, data: memoryview, offset: int) -> int | None:
        """Take ``data`` (bytes) for ``offset`` -> bytes taken (all of them), or None when this
        write is not aligned, too short, or direct writes are off (the caller writes it)."""
        n = data.nbytes
        if self.fd is None or self._busy or self.error is not None:
            return None
        if n < MIN_BYTES or n % ALIGN or offset % ALIGN:
            return None
        self._busy = True
        try:
            k = 0
            while k < n:
                if self._block is not None and (offset + k != self._start + self._fill or self._fill == BLOCK_BYTES):
                    self._submit()
                if self._block is None:
                    block = self._free.pop() if self._free else mmap.mmap(-1, BLOCK_BYTES)  # page-aligned
                    self._block, self._start, self._fill, self._writes = block, offset + k, 0, 0
                m = min(n - k, BLOCK_BYTES - self._fill)
                self._block[self._fill : self._fill + m] = data[k : k + m]
                self._fill += m
                k += m
            self._writes += 1
        finally:
            self._busy = False
        return n

    def drain(self) -> None:
        """Write every taken byte to the file (wait for the background writes; a failure is kept
        in :attr:`error`, not raised)."""
        if not self._busy and self._block is not None:
            self._busy = True
            try:
                self._submit()
            finally:
                self._busy = False
        while self._queued > 0:
            self._take_done()

    def _take_done(self) -> None:
        self._queued -= 1  # before the wait: a nested drain then never waits for more than was queued
        self._done.get()

    def _submit(self) -> None:
        job = (self._block, self._start, self._fill, self._writes)
        self._block = None
        if not self._probed:
            self._probed = True
            try:
                self._write_block(*job)
            except OSError as err:
                self.error = err
            self._free.append(job[0])
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="direct-writes", daemon=True)
            self._thread.start()
        self._todo.put(job)
        self._queued += 1
        while self._queued > IN_FLIGHT:  # so at most IN_FLIGHT + 2 blocks ever exist
            self._take_done()

    def _run(self) -> None:
        while True:
            job = self._todo.get()
            if job is None:
                return
            try:
                if self.error is None:
                    self._write_block(*job)
            except BaseException as err:  # raised by close, in the caller's thread (see the class)
                self.error = err
            finally:
                self._free.append(job[0])
                self._done.put(None)

    def _write_block(self, block: mmap.mmap, start: int, length: int, writes: int) -> mmap.mmap:
        """Write ``block[:length]`` at ``start`` (direct; through an ordinary descriptor if the file
        system refuses it) -> the block, to reuse."""
        done = 0
        fd = self.fd
        with memoryview(block) as whole:
            while done < length:
                if fd is not None:
                    try:
                        with whole[done:length] as view:
                            k = os.pwritev(fd, [view], start + done)
                    except OSError as err:
                        if err.errno not in (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP):
                            raise
                        fd = None  # this file system takes no direct writes after all
                        continue
                    if k <= 0 or k % ALIGN:  # a short write that leaves the rest unaligned
                        fd = None
                    done += max(0, k)
                    continue
                if self._buffered is None:
                    self._buffered = os.open(self.path, os.O_WRONLY)
                with whole[done:length] as view:
                    done += os.pwrite(self._buffered, view, start + done)
        if fd is None:
            self._stop_direct()
        else:
            self.count += writes
        return block

    def _stop_direct(self) -> None:
        """Direct writes are refused: every later write is buffered (the caller's)."""
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)

    def close(self) -> None:
        """Drain, then release the descriptors and blocks; raise the kept :attr:`error`."""
        try:
            self.drain()
            if self.error is not None:
                raise self.error
        finally:
            if self._thread is not None:
                self._todo.put(None)
                self._thread.join()
                self._thread = None
                self._queued = 0
            self._stop_direct()
            if self._buffered is not None:
                os.close(self._buffered)
                self._buffered = None
            for b in self._free:
                b.close()
            self._free = []
            if self._block is not None:
                self._block.close()
                self._block = None
