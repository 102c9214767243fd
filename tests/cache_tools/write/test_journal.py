"""The undo journal of the growing cache file: a process killed in the middle of an append leaves
a file that ``recover`` puts back byte for byte as it was before that append."""

from __future__ import annotations

import h5py
import numpy as np

from cache_tools.write.journal import journal_path, journaled, recover
from helpers import run_to_a_clean_exit, run_until_killed

APPEND_THEN_DIE = """
import os, sys
import numpy as np
from pathlib import Path
from cache_tools.write.journal import journaled
with journaled(Path(sys.argv[1])) as f:
    for name in ("x", "s"):
        d = f[name]
        d.resize((d.shape[0] + 3000, *d.shape[1:]))
        d[-3000:] = np.ones((3000, 64), np.float16) if name == "x" else [f"new{i}" for i in range(3000)]
    f.attrs["n"] = 2
    f.flush()  # metadata rewritten in place on disk, then the process dies before closing
    os._exit(9)
"""


def _make(path):
    with h5py.File(path, "w") as f:
        f.create_dataset(
            "x", data=np.arange(1000 * 64).reshape(1000, 64) % 7, chunks=(100, 64), maxshape=(None, 64)
        )
        s = [f"s{i}" for i in range(1000)]
        f.create_dataset(
            "s", data=np.array(s, object), dtype=h5py.string_dtype(), chunks=(100,), maxshape=(None,)
        )
        f.attrs["n"] = 1


def test_kill_during_append_is_undone_byte_for_byte(tmp_path):
    path = tmp_path / "g.h5"
    _make(path)
    before = path.read_bytes()
    run_until_killed(APPEND_THEN_DIE, str(path))
    assert journal_path(path).exists() and path.read_bytes() != before
    assert recover(path) and not journal_path(path).exists()
    assert path.read_bytes() == before
    assert not recover(path)  # nothing left to undo


def test_finished_session_keeps_its_changes(tmp_path):
    path = tmp_path / "g.h5"
    _make(path)
    with journaled(path) as f:
        f["x"].resize((1500, 64))
        f["x"][1000:] = 5
        f.attrs["n"] = 2
    assert not journal_path(path).exists() and not recover(path)
    with h5py.File(path, "r") as f:
        assert f["x"].shape == (1500, 64) and int(f.attrs["n"]) == 2 and np.all(f["x"][1000:] == 5)
        np.testing.assert_array_equal(f["x"][:1000], np.arange(1000 * 64).reshape(1000, 64) % 7)


FILL_THE_DISK_DURING_AN_APPEND = """
import errno, os, sys
import numpy as np
from pathlib import Path
from cache_tools.write.journal import journal_path, journaled
real, calls = os.pwrite, []

def full(fd, data, offset):  # the disk fills up after a few writes of the append
    calls.append(offset)
    if len(calls) > 3:
        raise OSError(errno.ENOSPC, "No space left on device")
    return real(fd, data, offset)

path = Path(sys.argv[1])
try:
    with journaled(path) as f:
        os.pwrite = full
        for name in ("x", "s"):
            d = f[name]
            d.resize((d.shape[0] + 3000, *d.shape[1:]))
            d[-3000:] = np.ones((3000, 64), np.float16) if name == "x" else [f"new{i}" for i in range(3000)]
        f.attrs["n"] = 2
except OSError as err:
    os.pwrite = real
    print("raised:", err)
print("journal kept:", journal_path(path).exists(), flush=True)
"""  # and the process exits as any does: HDF5 never saw a failed call


def test_a_full_disk_during_an_append_is_raised_and_undone(tmp_path):
    """A write that fails (here the disk is full) is raised once the journaled block ends, naming
    the file, and nothing of the append is kept: the next opening puts the file back."""
    path = tmp_path / "g.h5"
    _make(path)
    before = path.read_bytes()
    out = run_to_a_clean_exit(FILL_THE_DISK_DURING_AN_APPEND, str(path))
    assert f"raised: [Errno 28] writing {path} failed: No space left on device" in out, out
    assert "journal kept: True" in out
    assert recover(path) and path.read_bytes() == before
