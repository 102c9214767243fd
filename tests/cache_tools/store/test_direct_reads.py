"""Rows read from a file's bytes (``direct_rows``) and from a merged cache's shard files
(``virtual_rows``) equal h5py's reads of the same rows; layouts they cannot read fall back to h5py;
a missing shard or a cut file is a clear error."""

from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest

from cache_tools.errors import CacheFormatError
from cache_tools.store.direct_rows import DirectRows, direct_rows
from cache_tools.store.reader import open_cache
from cache_tools.store.virtual_rows import ShardRows, read_from
from cache_tools.write.writer import shard_path
from helpers.cache_records import one_and_sharded


def _requests(n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Row requests of every shape a batch makes: scattered with repeats, sorted runs across
    chunk boundaries, the last rows, one row, none."""
    return [
        rng.integers(0, n, 300),
        np.arange(n),
        np.arange(n)[::-1],
        np.concatenate([np.arange(5, 40), np.arange(38, 90), [n - 1, 0, 0]]) % n,
        np.array([n - 1]),
        np.array([], dtype=np.int64),
    ]


@pytest.mark.parametrize("dtype, chunks", [(np.float16, (7, 3, 5)), (np.float32, None), (np.float32, (64, 3, 5))])
def test_direct_rows_equal_h5py(tmp_path, dtype, chunks):
    rng = np.random.default_rng(0)
    data = rng.standard_normal((101, 3, 5)).astype(dtype)
    with h5py.File(tmp_path / "a.h5", "w") as f:
        if chunks is None:
            f.create_dataset("x", data=data)
        else:  # grown in two appends with another dataset's bytes between: chunks apart in the file
            f.create_dataset("x", data=data[:60], chunks=chunks, maxshape=(None, 3, 5))
    if chunks is not None:
        with h5py.File(tmp_path / "a.h5", "r+") as f:
            f.create_dataset("pad", data=rng.standard_normal(1000))
        with h5py.File(tmp_path / "a.h5", "r+") as f:
            f["x"].resize((101, 3, 5))
            f["x"][60:] = data[60:]
    with h5py.File(tmp_path / "a.h5", "r") as f:
        rows = direct_rows(f["x"])
    assert isinstance(rows, DirectRows)
    if chunks is not None:
        assert (np.diff(rows.chunk_offsets) != rows.chunk_rows * rows.row_bytes).any()
    for idx in _requests(101, rng):
        np.testing.assert_array_equal(rows.read(idx), data[idx])
    again = pickle.loads(pickle.dumps(rows))  # what a DataLoader worker gets: no open file
    np.testing.assert_array_equal(again.read(np.array([3, 99, 3])), data[[3, 99, 3]])
    with pytest.raises(IndexError):
        rows.read(np.array([101]))


def test_layouts_it_cannot_read_go_through_h5py(tmp_path, monkeypatch):
    with h5py.File(tmp_path / "b.h5", "w") as f:
        f.create_dataset("gz", data=np.ones((20, 4), np.float32), chunks=(5, 4), compression="gzip")
        f.create_dataset("cols", data=np.ones((20, 4), np.float32), chunks=(5, 2))
        f.create_dataset("big_endian", data=np.ones((20, 4), ">f4"))
        f.create_dataset("sparse", shape=(20, 4), dtype=np.float32, chunks=(5, 4))
        f["sparse"][0:5] = 1.0  # chunks 1-3 never written
        f.create_dataset("plain", data=np.ones((20, 4), np.float32), chunks=(5, 4))
    with h5py.File(tmp_path / "b.h5", "r") as f:
        for name in ("gz", "cols", "big_endian", "sparse"):
            assert direct_rows(f[name]) is None, name
        assert direct_rows(f["plain"]) is not None
        monkeypatch.setenv("TFLOCAL_DIRECT_READS", "0")
        assert direct_rows(f["plain"]) is None


def _sharded(tmp_path):
    one, merged, _ = one_and_sharded(tmp_path, 3)
    return one, merged


def test_a_merged_cache_reads_its_shards_directly_with_the_same_rows(tmp_path):
    one, merged = _sharded(tmp_path)
    a, b = open_cache(one), open_cache(merged)
    assert isinstance(b._dset("patches"), ShardRows) and isinstance(a._dset("patches"), DirectRows)
    rng = np.random.default_rng(1)
    with h5py.File(merged, "r") as f:  # HDF5's own reading of the virtual datasets
        for key, name, n in (
            ("patches", "images/patches", b.n_images),
            ("image_global", "images/global", b.n_images),
            ("text_global", "texts/global", b.n_texts),
            ("tokens", "texts/tokens", int(b.offsets[-1])),
        ):
            for idx in _requests(n, rng):
                np.testing.assert_array_equal(b._rows(key, idx), f[name][()][idx], err_msg=key)
                np.testing.assert_array_equal(a._rows(key, idx), f[name][()][idx], err_msg=key)
    texts = rng.integers(0, b.n_texts, 40)
    for x, y in zip(a.tokens(texts), b.tokens(texts)):
        np.testing.assert_array_equal(x, y)
    worker = pickle.loads(pickle.dumps(b))  # a DataLoader worker's copy reopens its files
    np.testing.assert_array_equal(worker.patches([8, 0, 8]), a.patches([8, 0, 8]))


def test_a_missing_shard_or_a_cut_file_is_a_clear_error(tmp_path):
    one, merged = _sharded(tmp_path)
    shard_path(merged, 1, 3).rename(tmp_path / "away.h5")
    cache = open_cache(merged)
    with pytest.raises(CacheFormatError, match="a shard file of the merged cache cannot be read.*merge the shards"):
        cache.patches(np.arange(cache.n_images))
    with h5py.File(one, "r") as f:
        rows = direct_rows(f["texts/tokens"])
    cut = tmp_path / "cut.h5"
    cut.write_bytes(one.read_bytes()[: int(rows.chunk_offsets[-1]) + 10])
    short = DirectRows(cut, rows.shape, rows.dtype, rows.chunk_rows, rows.chunk_offsets)
    with pytest.raises(CacheFormatError, match="truncated"):
        read_from(short, np.arange(rows.shape[0]))
