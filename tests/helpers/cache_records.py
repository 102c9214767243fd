"""Shared test data for cache tests: a dozen small image records, and comparing two caches."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from cache_tools.sources.records import ImageRecord, TextRecord


def make_records(root: Path, n: int = 12) -> list[ImageRecord]:
    recs = []
    for i in range(n):
        p = root / f"img{i}.png"
        rng = np.random.default_rng(i)
        Image.fromarray((rng.random((36 + i, 40, 3)) * 255).astype("uint8")).save(p)
        texts = [
            TextRecord(f"a red cube number {i}"),
            TextRecord(
                f"a blue ball number {i} on the left",
                positive=0,
                op="replace",
                kind="attribute",
                meta={"depth": 1},
            ),
        ]
        if i % 3 == 0:
            texts.append(TextRecord(f"another caption of image {i}"))
        recs.append(
            ImageRecord(id=f"img{i}", image=str(p), texts=texts, group=f"g{i // 2}", meta={"split": "train"})
        )
    return recs


def one_and_sharded(root: Path, n_shards: int) -> tuple[Path, Path, list[Path]]:
    """The same 9 records (fake encoder, parts of 4) cached as one file ``root/one.h5`` and as
    ``n_shards`` shards merged into ``root/sharded/c.h5`` -> (one, merged, shard paths)."""
    from cache_tools.store.shards import merge_shards
    from cache_tools.write.writer import shard_path, write_cache
    from helpers.fakes import FakeEncoder

    recs = make_records(root, 9)
    write_cache(recs, FakeEncoder(), root / "one.h5", batch_size=4, part_records=4, progress=False)
    out = root / "sharded" / "c.h5"
    out.parent.mkdir()
    for r in range(n_shards):
        write_cache(recs, FakeEncoder(), out, batch_size=4, part_records=4, shard=(r, n_shards), progress=False)
    shards = [shard_path(out, r, n_shards) for r in range(n_shards)]
    merge_shards(out, shards)
    return root / "one.h5", out, shards


def arrays(path: Path) -> dict[str, np.ndarray]:
    out = {}
    with h5py.File(path, "r") as f:

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                out[name] = obj[()]

        f.visititems(visit)
    return out


def assert_same_cache(a: Path, b: Path) -> None:
    x, y = arrays(a), arrays(b)
    assert sorted(x) == sorted(y)
    for k in x:
        np.testing.assert_array_equal(x[k], y[k], err_msg=k)
