"""Kill-safe appends to one HDF5 file: an undo journal under h5py's file-object driver.

HDF5 updates its metadata in place, so a process killed while it appends to a file can leave
that file unreadable. :func:`journaled` opens the file through :class:`UndoFile`, which copies
the bytes each write would overwrite (anything below the file's size when it was opened) to
``PATH.undo`` before the write happens; new bytes past that size need no copy. A clean close
deletes the journal. :func:`recover` (run before the file is opened again) puts the saved bytes
back, newest first, and cuts the file to its old size, so the file is exactly what it was before
the interrupted append. What is guaranteed is survival of a killed process (``kill -9``), as
for the rest of the writer; nothing is fsync'd.

New bytes in large aligned blocks (payload chunks) are written past the page cache
(:mod:`cache_tools.write.direct_io`); the journal and everything else are written as usual.
"""

from __future__ import annotations

import gc
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py

from cache_tools.write.direct_io import H5_ALIGNMENT, DirectWrites

_HEAD = struct.Struct("<Q")  # the file's size when the append began
_ENTRY = struct.Struct("<QQ")  # offset, length; then the bytes that were there


def journal_path(path: Path) -> Path:
    return path.with_name(path.name + ".undo")


class UndoFile:
    """A read-write file object for ``h5py.File(fileobj)`` that journals overwrites (see module).

    A failed write (the disk full, an I/O error, here or in the background direct writes) is
    kept in :attr:`error` and raised by :meth:`close`, not to HDF5: an exception raised inside
    h5py's file-driver callbacks leaves it calling back with the exception still set, and such a
    process has died of a segfault at exit. Once a write failed, later writes change nothing
    (the journal then undoes what did land), so the file is never half-changed unrecorded."""

    def __init__(self, path: Path, create: bool = False):
        self.path = path
        self.error: OSError | None = None
        self.fd = os.open(path, os.O_RDWR | (os.O_CREAT | os.O_TRUNC if create else 0), 0o644)
        self.pos = 0
        self.base = os.fstat(self.fd).st_size
        self.direct = DirectWrites(path)
        self.journal = os.open(journal_path(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(self.journal, _HEAD.pack(self.base))

    def _save(self, lo: int, hi: int) -> None:
        if lo < hi:
            os.write(self.journal, _ENTRY.pack(lo, hi - lo) + os.pread(self.fd, hi - lo, lo))

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 0:
            self.pos = offset
        elif whence == 1:
            self.pos += offset
        else:
            self.direct.drain()
            self.pos = os.fstat(self.fd).st_size + offset
        return self.pos

    def tell(self) -> int:
        return self.pos

    def readinto(self, buf) -> int:
        self.direct.drain()  # taken direct writes reach the file first, as everywhere below
        n = os.preadv(self.fd, [buf], self.pos)
        self.pos += n
        return n

    def read(self, n: int = -1) -> bytes:
        self.direct.drain()
        if n < 0:
            n = max(0, os.fstat(self.fd).st_size - self.pos)
        data = os.pread(self.fd, n, self.pos)
        self.pos += len(data)
        return data

    def write(self, buf) -> int:
        data = memoryview(buf).cast("B")
        n = data.nbytes
        if self.error is None and self.direct.error is not None:
            self.error = self.direct.error
        if self.error is None:
            try:
                self._write(data, n)
            except OSError as err:  # raised by close (see the class)
                self.error = err
        self.pos += n
        return n

    def _write(self, data: memoryview, n: int) -> None:
        if self.pos < self.base:
            self._save(self.pos, min(self.pos + n, self.base))
        k = 0  # all of it is written: h5py's file-object driver does not retry a short write
        while k < n:
            part = data[k:]
            done = self.direct.write(part, self.pos + k) if self.pos + k >= self.base else None
            if done is None:
                self.direct.drain()
                done = os.pwrite(self.fd, part, self.pos + k)
            k += done

    def truncate(self, size: int | None = None) -> int:
        size = self.pos if size is None else size
        self.direct.drain()
        if self.error is None:
            try:
                if size < self.base:
                    self._save(size, self.base)
                os.ftruncate(self.fd, size)
            except OSError as err:
                self.error = err
        return size

    def flush(self) -> None:
        pass

    def close(self) -> None:
        """Drain the direct writes and close; a kept write error is raised as an OSError that
        names the file (the journal stays: :func:`recover` undoes the change)."""
        if self.fd < 0:
            return
        try:
            self.direct.close()  # drains: every byte is in the file before the journal can go
        except OSError as err:
            self.error = self.error or err
        finally:
            os.close(self.fd)
            os.close(self.journal)
            # HDF5 may still call back later (from a finalizer): -1 makes those calls fail
            # instead of reaching a reused descriptor number
            self.fd = self.journal = -1
        if self.error is not None:
            err = self.error
            raise OSError(
                err.errno,
                f"writing {self.path} failed: {err.strerror or err}; nothing of this change is kept "
                "(the file is put back as it was when it is next opened)",
            ) from err


def recover(path: Path) -> bool:
    """Undo the unfinished append on ``path`` whose journal is there; False when there is none."""
    jp = journal_path(path)
    if not jp.exists():
        return False
    data = jp.read_bytes()
    if len(data) >= _HEAD.size and path.exists():
        (base,) = _HEAD.unpack_from(data)
        entries, k = [], _HEAD.size
        while k + _ENTRY.size <= len(data):
            lo, n = _ENTRY.unpack_from(data, k)
            if k + _ENTRY.size + n > len(data):
                break  # a torn last entry: the write it guarded never started
            entries.append((lo, data[k + _ENTRY.size : k + _ENTRY.size + n]))
            k += _ENTRY.size + n
        fd = os.open(path, os.O_RDWR)
        try:
            for lo, old in reversed(entries):
                os.pwrite(fd, old, lo)
            os.ftruncate(fd, base)
        finally:
            os.close(fd)
    jp.unlink()
    return True


@contextmanager
def journaled(path: Path, create: bool = False) -> Iterator[h5py.File]:
    """``path`` open read-write as an h5py file whose changes are undone by :func:`recover` if the
    process dies before the block ends (the journal is deleted once the file is closed);
    ``create``: a new (emptied) file. Objects of at least ``direct_io.MIN_BYTES`` start on
    ``direct_io.ALIGN`` boundaries (``H5_ALIGNMENT``), so their bytes can go past the page cache."""
    recover(path)
    # no automatic garbage collection while the file is open: a collection in the thread that
    # writes direct blocks could free an h5py object, which needs h5py's lock, held by the thread
    # that waits for that write (h5py's docs on file-like objects served by other threads)
    gc_was_on = gc.isenabled()
    gc.disable()
    fobj = UndoFile(path, create=create)
    try:
        with h5py.File(fobj, "w" if create else "r+", **H5_ALIGNMENT) as f:
            yield f
    finally:
        fobj.close()
        if gc_was_on:
            gc.enable()
    journal_path(path).unlink()
