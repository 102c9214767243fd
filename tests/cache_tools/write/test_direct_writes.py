"""Payload chunks written past the page cache (O_DIRECT) through the journaled file: the same
contents as buffered writes, a refused or failing direct write falls back to a buffered one,
and a process killed in the middle of a direct append is still undone byte for byte."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from cache_tools.write import direct_io
from cache_tools.write.journal import UndoFile, journal_path, journaled, recover
from helpers import subprocess_pythonpath

ROWS, D = 256, 512  # a chunk of 256 x 512 float16 = 256 KiB, as a cache's token chunks


def _payload(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, D)).astype(np.float16)


def _write_and_append(path, counts: list[int]) -> None:
    """A new file with a chunked payload, a small dataset and strings, then an append (odd sizes:
    partial chunks at both ends), each through :func:`journaled`; counts the direct writes."""
    real = UndoFile.close

    def close(self):
        counts.append(self.direct.count)
        real(self)

    UndoFile.close = close
    try:
        with journaled(path, create=True) as f:
            f.create_dataset("x", data=_payload(2000, 0), chunks=(ROWS, D), maxshape=(None, D))
            f.create_dataset("small", data=np.arange(10))
            f.create_dataset("s", data=np.array(["a", "bb"], object), dtype=h5py.string_dtype(), maxshape=(None,))
        with journaled(path) as f:
            x = f["x"]
            x.resize((5333, D))
            x[2000:4100] = _payload(2100, 1)
            x[4100:] = _payload(1233, 2)
            f["s"].resize((3,))
            f["s"][2] = "ccc"
    finally:
        UndoFile.close = real


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
    env = {**os.environ, "PYTHONPATH": subprocess_pythonpath()}
    out = subprocess.run([sys.executable, "-c", APPEND_THEN_DIE, str(path)], env=env, capture_output=True, text=True)
    assert out.returncode == 9, out.stderr[-2000:]
    assert journal_path(path).exists() and path.read_bytes() != before
    assert recover(path) and path.read_bytes() == before
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["x"][:], _payload(1500, 3))
