"""Several training processes on a cache written as shards: each process opens only its own shard
files (a disjoint, pair-balanced share), the shares' pairs cover the cache once, and every
process runs the same number of steps. The processes are simulated one after another: each
``train`` sees ``num_processes`` 2 and its own ``process_index`` while the other share's shard
files are moved away, so reading them would fail or read zeros."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from cache_tools.store.reader import open_cache
from cache_tools.store.shards import merge_shards, partition_shards, shard_layout
from cache_tools.write.arrays import write_arrays
from helpers.train_setup import config, read_log
from tflocal.models.checkpoint import load_checkpoint
from tflocal.pairs.candidates import build_units
from tflocal.training import loop
from tflocal.training.run_folder import load_data
from tflocal.training.shard_reads import shard_pairs, shards_for

SIZES = (6, 12, 4, 8, 10)  # images per shard; one pair (caption, its swap negative) each


def shard_file(path: Path, k: int, n: int) -> Path:
    """Shard ``k``: n images of 2x2 random patches, each with one caption and one negative."""
    rng = np.random.default_rng(k)
    patches = rng.standard_normal((n, 4, 8)).astype(np.float16).astype(np.float32)
    tokens = [rng.standard_normal((3, 6)).astype(np.float32) for _ in range(2 * n)]
    attrs = {"encoder": "synthetic:shards", "grid": [2, 2], "context_length": 8, "space": "hidden",
             "global_space": "none"}  # fmt: skip
    return write_arrays(
        path, attrs, [f"s{k}i{i}" for i in range(n)], patches, patches.mean(1),
        [f"s{k} {'neg' if t % 2 else 'pos'} {t // 2}" for t in range(2 * n)], tokens,
        np.stack([t.mean(0) for t in tokens]), np.repeat(np.arange(n), 2),
        [-1 if t % 2 == 0 else t - 1 for t in range(2 * n)], op=["", "swap"] * n,
    )  # fmt: skip


@pytest.fixture()
def sharded(tmp_path) -> Path:
    paths = [shard_file(tmp_path / f"c.shard{k:05d}-of-00005.h5", k, n) for k, n in enumerate(SIZES)]
    return merge_shards(tmp_path / "c.h5", paths)


@pytest.fixture()
def opened(monkeypatch) -> list[Path]:
    """Every HDF5 file opened through h5py from here on."""
    names: list[Path] = []

    class Recording(h5py.File):
        def __init__(self, name, *args, **kwargs):
            names.append(Path(name).resolve())
            super().__init__(name, *args, **kwargs)

    monkeypatch.setattr(h5py, "File", Recording)
    return names


def test_layout_and_partition_read_only_the_merged_file(sharded, opened):
    layout = shard_layout(sharded)
    assert [s.path.name for s in layout] == [f"c.shard{k:05d}-of-00005.h5" for k in range(5)]
    assert [s.n_images for s in layout] == list(SIZES)
    assert [s.text_stop - s.text_start for s in layout] == [2 * n for n in SIZES]
    assert layout[2].image_start == sum(SIZES[:2]) and layout[-1].image_stop == sum(SIZES)
    paths, pairs = shard_pairs(sharded)
    assert pairs.tolist() == list(SIZES)
    assert set(opened) == {sharded.resolve()}  # the shard files were not opened
    # heaviest first, each to the lightest group: 12 -> 0, 10 -> 1, 8 -> 1, 6 -> 0, 4 -> 0
    assert partition_shards(SIZES, 2) == [[0, 1, 2], [3, 4]]
    groups = partition_shards(SIZES, 3)
    assert sorted(sum(groups, [])) == list(range(5)) and max(map(len, groups)) == 2
    assert partition_shards(SIZES, 7)[5:] == [[], []]
    one = shard_file(sharded.parent / "one.h5", 9, 3)
    assert shard_layout(one) == [] and shards_for(one, 2, 0) is None  # a cache that is one file
    assert shards_for(sharded, 1, 0) is None  # one process reads the whole cache


def test_fewer_shards_than_processes_reads_the_whole_cache_with_a_note(sharded):
    notes: list[str] = []
    assert shards_for(sharded, 8, 0, notes.append) is None
    assert len(notes) == 1 and "5 shard file(s) for 8 processes" in notes[0] and "\n" not in notes[0]


def _pairs(cache, units) -> set[tuple[str, str]]:
    return {(str(cache.image_ids[i]), str(cache.strings[t])) for i, t in zip(units.image, units.text)}


def test_each_process_opens_only_its_shards_and_the_shares_cover_the_cache(sharded, tmp_path, opened):
    full = open_cache(sharded)
    want = _pairs(full, build_units(full))
    layout = shard_layout(sharded)
    share = [[layout[i].path for i in g] for g in partition_shards(SIZES, 2)]
    cfg = config(sharded, tmp_path / "out", "data.val_fraction=0.25")
    seen = []
    for rank in (0, 1):
        away = [p for p in (s.path for s in layout) if p not in share[rank]]
        for p in away:
            p.rename(p.with_suffix(".away"))
        opened.clear()
        cache, val_cache, units, val_units, shards = load_data(cfg, world=2, rank=rank)
        assert shards == share[rank] and val_cache is cache
        pairs, val = _pairs(cache, units), _pairs(cache, val_units)
        assert pairs and val and not pairs & val
        # the payload read is the shard files' own (a read through the other share would fail or give zeros)
        got = cache.patches(np.arange(cache.n_images))
        for p in away:
            p.with_suffix(".away").rename(p)
        by_id = {str(i): r for r, i in enumerate(full.image_ids)}
        np.testing.assert_array_equal(got, full.patches([by_id[str(i)] for i in cache.image_ids]))
        shard_files = {p for p in opened if p.name.startswith("c.shard")}
        assert shard_files == set(share[rank])
        assert {p.name for p in opened} - {p.name for p in shard_files} <= {
            "c.h5",
            "merged.h5.tmp",
            "merged.h5",
        }
        seen.append(pairs | val)
        cache.close()
    assert not seen[0] & seen[1] and seen[0] | seen[1] == want
    assert {i.split()[0] for _, i in seen[0]} == {f"s{k}" for k in partition_shards(SIZES, 2)[0]}
    full.close()


class OneOfTwo:
    """A real one-process accelerator that says it is process ``rank`` of 2; ``gather`` answers
    this process's count and ``other`` for the other process."""

    def __init__(self, real, rank: int, other: int):
        self.real, self.process_index, self.other, self.gathered = real, rank, other, []

    num_processes = 2
    is_main_process = property(lambda self: self.process_index == 0)

    def gather(self, t: torch.Tensor) -> torch.Tensor:
        self.gathered.append(int(t[0]))
        both = [int(t[0]), self.other]
        return torch.tensor(both if self.process_index == 0 else both[::-1])

    def __getattr__(self, name):
        return getattr(self.real, name)


@pytest.mark.parametrize("other", [1, 100])
def test_every_process_runs_the_same_steps_on_its_own_shards(sharded, tmp_path, monkeypatch, other):
    """Each process's epoch is the smaller of its own batch count and the other's (the other's
    last batches are dropped); a whole run reads only the process's shards and records the
    merged cache in its checkpoint."""
    layout = shard_layout(sharded)
    share = [[layout[i].path for i in g] for g in partition_shards(SIZES, 2)]
    real_accelerator = loop.accelerator
    for rank in (0, 1):
        fake = {}
        monkeypatch.setattr(
            loop,
            "accelerator",
            lambda cfg, fake=fake, rank=rank: fake.setdefault(
                "acc", OneOfTwo(real_accelerator(cfg), rank, other)
            ),
        )
        away = [s.path for s in layout if s.path not in share[rank]]
        for p in away:
            p.rename(p.with_suffix(".away"))
        out = tmp_path / f"rank{rank}"
        cfg = config(
            sharded, out, "data.batch_size=4", "data.val_fraction=0.2", "epochs=2", "data.k_inbatch=1"
        )
        summary = loop.train(cfg)
        for p in away:
            p.with_suffix(".away").rename(p)
        own, _ = fake["acc"].gathered[:2]  # this process's batches an epoch, then its validation units
        assert own > 1
        per_epoch = min(own, other)
        assert summary["steps"] == summary["total_steps"] == 2 * per_epoch
        if rank == 0:
            start = read_log(out, "start")[0]
            assert start["batches_per_epoch"] == per_epoch
            assert start["shard_files"] == [str(p) for p in share[0]]
            assert read_log(out, "val")  # validated on its own held-out images
            ckpt = load_checkpoint(out / "last.pt")
            assert ckpt["extra"]["cache"]["n_images"] == sum(SIZES)
