"""``data.shuffle``: auto keeps the full shuffle for caches that fit in memory, chunk otherwise."""

from __future__ import annotations

import pytest

from cache_tools.store.reader import open_cache
from helpers.train_setup import binding_cache
from tflocal.errors import UserError
from tflocal.pairs.candidates import build_units
from tflocal.training.config import DataConfig
from tflocal.training.shuffle import mem_available, shuffle_chunk_for


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    cache = open_cache(binding_cache(tmp_path_factory.mktemp("shuffle") / "bind.h5"))
    return cache, len(build_units(cache))


def test_default_auto_picks_full_shuffle_for_a_small_cache(small):
    cache, n = small
    assert DataConfig().shuffle == "auto" and DataConfig().shuffle_chunk == 0
    assert mem_available() is not None and cache.payload_bytes() < 0.5 * mem_available()
    assert shuffle_chunk_for("auto", 0, cache, n, in_memory=False) == 0


def test_auto_picks_chunk_shuffle_above_the_memory_share(small):
    cache, n = small
    per_image = max(1, round(n / cache.file["images/ids"].shape[0]))
    expected = per_image * cache.block_rows
    assert expected > 0
    assert shuffle_chunk_for("auto", 0, cache, n, in_memory=False, available=1) == expected
    assert shuffle_chunk_for("auto", 0, cache, n, in_memory=True, available=1) == 0  # RAM: full
    assert shuffle_chunk_for("chunk", 0, cache, n, in_memory=False) == expected
    assert shuffle_chunk_for("full", 0, cache, n, in_memory=False, available=1) == 0
    assert shuffle_chunk_for("full", 7, cache, n, in_memory=False) == 7  # explicit block wins


def test_bad_shuffle_mode_is_refused():
    with pytest.raises(UserError, match="data.shuffle"):
        DataConfig(shuffle="random")
