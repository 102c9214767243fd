"""Payload chunks written past the page cache (O_DIRECT) through the journaled file: the same
contents as buffered writes, a refused or failing direct write falls back to a buffered one,
and a process killed in the middle of a direct append is still undone byte for byte."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager

import h5py
import numpy as np
import pytest

from cache_tools.store.h5io import CHUNK_ALIGN, TARGET_CHUNK_BYTES, chunk_rows, create
from cache_tools.write import direct_io
from cache_tools.write.journal import UndoFile, journal_path, journaled, recover
from helpers import run_to_a_clean_exit, run_until_killed

ROWS, D = 256, 512  # a chunk of 256 x 512 float16 = 256 KiB, as a cache's token chunks


def _payload(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, D)).astype(np.float16)


@contextmanager
def _counting_direct_writes(counts: list[int]) -> Iterator[None]:
    """Within the block, each closing of a journaled file appends its count of direct writes."""
    real = UndoFile.close

    def close(self):
        real(self)  # drains: the blocks still queued are written (and counted) here
        counts.append(self.direct.count)

    UndoFile.close = close
    try:
        yield
    finally:
        UndoFile.close = real


def _write_and_append(path, counts: list[int]) -> None:
    """A new file with a chunked payload, a small dataset and strings, then an append (odd sizes:
    partial chunks at both ends), each through :func:`journaled`; counts the direct writes."""
    with _counting_direct_writes(counts):
        with journaled(path, create=True) as f:
            f.create_dataset("x", data=_payload(2000, 0), chunks=(ROWS, D), maxshape=(None, D))
            f.create_dataset("small", data=np.arange(10))
            f.create_dataset(
                "s", data=np.array(["a", "bb"], object), dtype=h5py.string_dtype(), maxshape=(None,)
            )
        with journaled(path) as f:
            x = f["x"]
            x.resize((5333, D))
            x[2000:4100] = _payload(2100, 1)
            x[4100:] = _payload(1233, 2)
            f["s"].resize((3,))
            f["s"][2] = "ccc"


def _expected() -> np.ndarray:
    return np.concatenate([_payload(2000, 0), _payload(2100, 1), _payload(1233, 2)])


def _check(path) -> None:
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["x"][:], _expected())
        np.testing.assert_array_equal(f["small"][:], np.arange(10))
        assert [s.decode() for s in f["s"][:]] == ["a", "bb", "ccc"]


def _direct_supported(tmp_path) -> bool:
    probe = tmp_path / "probe"
    probe.write_bytes(b"")
    w = direct_io.DirectWrites(probe)
    ok = w.fd is not None
    w.close()
    return ok


def test_direct_writes_give_the_same_file_contents_as_buffered(tmp_path, monkeypatch):
    counts: list[int] = []
    _write_and_append(tmp_path / "direct.h5", counts)
    _check(tmp_path / "direct.h5")
    if _direct_supported(tmp_path):
        assert counts[0] > 0 and counts[1] > 0  # whole chunks went direct, both when made and when appended
    monkeypatch.setenv("TFLOCAL_DIRECT_WRITES", "0")
    off: list[int] = []
    _write_and_append(tmp_path / "buffered.h5", off)
    _check(tmp_path / "buffered.h5")
    assert off == [0, 0]


@pytest.mark.parametrize(
    "row_bytes", [1, 2, 16, 1000, 1024, 2048, 3 * 4096 + 8, 50_176, 12_288 * 7, 300_000, 1 << 20]
)
def test_chunk_rows_fill_whole_pages_where_rows_allow(row_bytes):
    rows = chunk_rows(row_bytes)
    step = CHUNK_ALIGN // np.gcd(row_bytes, CHUNK_ALIGN)  # fewest rows of whole pages
    if TARGET_CHUNK_BYTES // row_bytes >= step:
        assert (rows * row_bytes) % CHUNK_ALIGN == 0
        assert TARGET_CHUNK_BYTES - step * row_bytes < rows * row_bytes <= TARGET_CHUNK_BYTES
    else:  # a page step is more than a chunk: as many rows as fit, at least one
        assert rows == max(1, TARGET_CHUNK_BYTES // row_bytes)
    assert chunk_rows(row_bytes, 3) == min(rows, 3)


def test_vit_b32_patch_chunks_go_direct(tmp_path):
    """49 x 512 float16 patches (50,176 B a row) are chunked 4 rows = 49 pages, so whole chunks
    are written past the page cache, as the caption tokens' are."""
    if not _direct_supported(tmp_path):
        pytest.skip("this file system refuses O_DIRECT: every write is buffered already")
    patches = np.random.default_rng(0).standard_normal((40, 49, 512)).astype(np.float16)
    counts: list[int] = []
    with _counting_direct_writes(counts), journaled(tmp_path / "p.h5", create=True) as f:
        d = create(f.require_group("images"), "patches", patches)
        assert d.chunks == (4, 49, 512)
    assert counts == [10]  # every chunk of the 40 rows
    with h5py.File(tmp_path / "p.h5", "r") as f:
        np.testing.assert_array_equal(f["images/patches"][:], patches)


def test_a_refused_direct_write_falls_back_to_a_buffered_one(tmp_path, monkeypatch):
    if not _direct_supported(tmp_path):
        pytest.skip("this file system refuses O_DIRECT: every write is buffered already")
    calls = []

    def refuse(fd, bufs, offset):
        calls.append(offset)
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(direct_io.os, "pwritev", refuse)
    counts: list[int] = []
    _write_and_append(tmp_path / "g.h5", counts)
    _check(tmp_path / "g.h5")
    assert calls and counts == [0, 0]  # tried once per opening of the file, then buffered


def test_short_direct_writes_are_completed(tmp_path, monkeypatch):
    if not _direct_supported(tmp_path):
        pytest.skip("this file system refuses O_DIRECT")
    real = os.pwritev

    def short(fd, bufs, offset):  # writes only the first half (page-aligned) of each block
        mv = bufs[0]
        return real(fd, [mv[: (mv.nbytes // 2) // 4096 * 4096 or mv.nbytes]], offset)

    monkeypatch.setattr(direct_io.os, "pwritev", short)
    _write_and_append(tmp_path / "g.h5", [])
    _check(tmp_path / "g.h5")


APPEND_THEN_DIE = """
import os, sys
import numpy as np
from pathlib import Path
from cache_tools.write.journal import journaled
with journaled(Path(sys.argv[1])) as f:
    x = f["x"]
    x.resize((x.shape[0] + 4096, x.shape[1]))
    x[-4096:] = np.ones((4096, x.shape[1]), np.float16)
    f.attrs["n"] = 2
    f.flush()
    os._exit(9)
"""


def test_kill_during_a_direct_append_is_undone_byte_for_byte(tmp_path):
    path = tmp_path / "g.h5"
    with journaled(path, create=True) as f:
        f.create_dataset("x", data=_payload(1500, 3), chunks=(ROWS, D), maxshape=(None, D))
        f.attrs["n"] = 1
    before = path.read_bytes()
    run_until_killed(APPEND_THEN_DIE, str(path))
    assert journal_path(path).exists() and path.read_bytes() != before
    assert recover(path) and path.read_bytes() == before
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["x"][:], _payload(1500, 3))


def test_consecutive_chunks_go_out_in_few_large_writes(tmp_path, monkeypatch):
    """Chunks that continue one another are gathered into blocks of up to BLOCK_BYTES, each one
    system call (a chunk at a time, a direct write waits for the device every 256 KiB)."""
    if not _direct_supported(tmp_path):
        pytest.skip("this file system refuses O_DIRECT")
    real, sizes = os.pwritev, []

    def counting(fd, bufs, offset):
        sizes.append(bufs[0].nbytes)
        return real(fd, bufs, offset)

    monkeypatch.setattr(direct_io.os, "pwritev", counting)
    monkeypatch.setattr(direct_io, "BLOCK_BYTES", 1 << 20)
    counts: list[int] = []
    _write_and_append(tmp_path / "g.h5", counts)
    _check(tmp_path / "g.h5")
    assert counts[0] >= 7 and counts[1] >= 8  # 2000 rows: 7 whole chunks; the append: 8 or more
    assert sum(counts) >= 3 * len(sizes)  # about 4 chunks a write
    assert max(sizes) == 1 << 20


FAIL_A_BACKGROUND_WRITE = """
import errno, os, sys
import numpy as np
from pathlib import Path
from cache_tools.write import direct_io
from cache_tools.write.journal import journal_path, journaled, recover
real, calls = os.pwritev, []

def failing(fd, bufs, offset):
    calls.append(offset)
    if len(calls) == 2:  # the first block (written at once) passes; a later one, in the background, fails
        raise OSError(errno.EIO, "Input/output error")
    return real(fd, bufs, offset)

direct_io.os.pwritev = failing
direct_io.BLOCK_BYTES = 1 << 20
path = Path(sys.argv[1])
try:
    with journaled(path, create=True) as f:
        f.create_dataset("x", data=np.zeros((4000, 512), np.float16), chunks=(256, 512), maxshape=(None, 512))
except OSError as err:
    print("raised:", err)
print("journal kept:", journal_path(path).exists())
print("undone:", recover(path) and path.stat().st_size == 0, flush=True)
"""  # and the process exits as any does: HDF5 saw no failed call, so it closed the file cleanly


def test_a_failed_background_write_is_raised_not_lost(tmp_path):
    """In a child process, which must exit cleanly: an exception raised into h5py's file-driver
    callbacks made such a process die of a segfault (CI, an earlier design)."""
    if not _direct_supported(tmp_path):
        pytest.skip("this file system refuses O_DIRECT")
    out = run_to_a_clean_exit(FAIL_A_BACKGROUND_WRITE, str(tmp_path / "g.h5"))
    assert f"raised: [Errno 5] writing {tmp_path / 'g.h5'} failed: Input/output error" in out, out
    assert "journal kept: True" in out  # not committed: the next opening undoes the append
    assert "undone: True" in out


def test_a_closed_undo_file_refuses_late_writes(tmp_path):
    """HDF5 may write again from a finalizer after the journaled block has closed the file
    object: that write changes nothing, and never lands in whatever file has since got the
    same descriptor number."""
    undo = UndoFile(tmp_path / "a.h5", create=True)
    undo.close()
    other = os.open(tmp_path / "b", os.O_RDWR | os.O_CREAT, 0o644)  # often the number just freed
    try:
        undo.seek(0)
        assert undo.write(b"x" * 10) == 10  # taken (HDF5 is never raised at), written nowhere
        undo.close()  # a second close does nothing
        assert os.pread(other, 10, 0) == b""
    finally:
        os.close(other)
