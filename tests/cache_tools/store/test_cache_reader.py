"""Reading a cache: shards written apart open as one cache, another format version is refused,
the chunk shuffle is a blockwise permutation, and loading into memory keeps the rows."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from cache_tools.store.reader import chunk_shuffle, open_cache
from cache_tools.store.schema import FORMAT_VERSION, CacheFormatError
from cache_tools.write.writer import write_cache
from helpers.cache_records import make_records, one_and_sharded
from helpers.fakes import FakeEncoder


def test_two_shards_open_as_one_cache(tmp_path):
    _, out, shards = one_and_sharded(tmp_path, 2)
    assert out.stat().st_size < sum(s.stat().st_size for s in shards) / 2  # payload not copied
    with h5py.File(out, "r") as f:
        assert f["images/patches"].is_virtual and f["texts/tokens"].is_virtual
    a, b = open_cache(tmp_path / "one.h5"), open_cache(out)
    for name in ("image_ids", "strings", "offsets", "image_index", "positive_index", "op"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    np.testing.assert_array_equal(a.patches(np.arange(9)), b.patches(np.arange(9)))
    np.testing.assert_array_equal(a.tokens(np.arange(a.n_texts))[-1], b.tokens(np.arange(b.n_texts))[-1])
    # the folder can be moved: shards are referenced by relative path
    moved = tmp_path / "moved"
    out.parent.rename(moved)
    np.testing.assert_array_equal(open_cache(moved / "c.h5").patches([8]), a.patches([8]))
    # a list of shard files opens as one cache too
    c = open_cache([moved / s.name for s in shards])
    np.testing.assert_array_equal(c.text_global(np.arange(c.n_texts)), a.text_global(np.arange(a.n_texts)))


def test_other_format_version_is_a_clear_error(tmp_path):
    write_cache(make_records(tmp_path, 2), FakeEncoder(), tmp_path / "c.h5", progress=False)
    with h5py.File(tmp_path / "c.h5", "a") as f:
        f.attrs["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(CacheFormatError, match="format_version"):
        open_cache(tmp_path / "c.h5")
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f.create_dataset("a", data=[1])
    with pytest.raises(CacheFormatError, match="not a tflocal cache"):
        open_cache(tmp_path / "x.h5")


def test_chunk_shuffle_is_a_blockwise_permutation():
    perm = chunk_shuffle(1000, block=50, seed=3, span=100)
    assert sorted(perm.tolist()) == list(range(1000))
    assert not np.array_equal(perm, np.arange(1000))
    np.testing.assert_array_equal(perm, chunk_shuffle(1000, block=50, seed=3, span=100))
    assert not np.array_equal(perm, chunk_shuffle(1000, block=50, seed=4, span=100))
    # a batch of `span` rows is made of whole blocks: 2 blocks of 50 rows each
    for i in range(0, 1000, 100):
        blocks = perm[i : i + 100] // 50
        assert len(set(blocks.tolist())) == 2 and np.all(np.bincount(blocks)[np.unique(blocks)] == 50)
    # uneven block / span sizes still give a permutation
    assert sorted(chunk_shuffle(997, block=27, seed=0, span=256).tolist()) == list(range(997))


def test_load_into_memory_gives_the_same_rows(tmp_path):
    write_cache(make_records(tmp_path, 5), FakeEncoder(), tmp_path / "c.h5", progress=False)
    c = open_cache(tmp_path / "c.h5")
    before = c.patches([4, 0]), c.tokens([3])[0]
    c.load_into_memory()
    assert c.in_memory
    np.testing.assert_array_equal(c.patches([4, 0]), before[0])
    np.testing.assert_array_equal(c.tokens([3])[0], before[1])
    assert json.loads(json.dumps(c.attrs["plan"]))["batch_size"] == 32
