"""Training units, splits, epoch plans, in-batch mining and candidate-set layout on a tiny cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cache_tools.store.reader import open_cache
from cache_tools.write.arrays import write_arrays
from helpers.fakes import JOINT
from tflocal.errors import UserError
from tflocal.pairs.candidates import (
    BatchDataset,
    build_units,
    epoch_plan,
    make_batch,
    make_loader,
    mine_inbatch,
    split_by_image,
)

# texts: (string, image_index, positive_index)
TEXTS = [
    ("a red cube", 0, -1),  # 0 positive of image 0
    ("a blue cube", 0, 0),  # 1 negative of 0
    ("a red ball", 0, 0),  # 2 negative of 0
    ("a dog", 1, -1),  # 3 positive of image 1
    ("a puppy", 1, -1),  # 4 positive of image 1
    ("a cat", 1, 4),  # 5 negative of 4
    ("a tree", 2, -1),  # 6 positive of image 2
    ("loose caption", -1, -1),  # 7 attached to no image: not a unit
    ("a dog", 3, -1),  # 8 positive of image 3, same string as text 3
]


def tiny_cache(tmp_path, global_space="joint", seed=0):
    rng = np.random.default_rng(seed)
    lengths = [3, 3, 3, 2, 4, 2, 2, 1, 2]
    return write_arrays(
        tmp_path / f"tiny-{global_space}.h5",
        {
            "encoder": "fake:tiny",
            "grid": [2, 2],
            "context_length": 8,
            "global_space": global_space,
            "space": "hidden",
        },
        image_ids=[f"img{i}" for i in range(4)],
        patches=rng.normal(size=(4, 4, 6)),
        image_global=rng.normal(size=(4, 5)),
        texts=[t[0] for t in TEXTS],
        tokens=[rng.normal(size=(n, 3)) for n in lengths],
        text_global=rng.normal(size=(len(TEXTS), 5)),
        image_index=[t[1] for t in TEXTS],
        positive_index=[t[2] for t in TEXTS],
        image_group=["g", "", "g", ""],
    )


def test_build_units(tmp_path):
    units = build_units(open_cache(tiny_cache(tmp_path)))
    np.testing.assert_array_equal(units.text, [0, 3, 4, 6, 8])
    np.testing.assert_array_equal(units.image, [0, 1, 1, 2, 3])
    np.testing.assert_array_equal(units.negs, [[1, 2], [-1, -1], [5, -1], [-1, -1], [-1, -1]])
    np.testing.assert_array_equal(units.neg_images, [[2], [-1], [-1], [0], [-1]])
    np.testing.assert_array_equal(units.n_hard, [2, 0, 1, 0, 0])
    capped = build_units(open_cache(tiny_cache(tmp_path)), max_negs=1)
    np.testing.assert_array_equal(capped.negs, [[1], [-1], [5], [-1], [-1]])


def test_split_by_image_keeps_images_whole(tmp_path):
    units = build_units(open_cache(tiny_cache(tmp_path)))
    train, val = split_by_image(units, 0.25, seed=3)
    assert len(np.unique(val.image)) == 1
    assert not set(train.image) & set(val.image)
    assert sorted(np.concatenate([train.text, val.text])) == sorted(units.text)
    again, _ = split_by_image(units, 0.25, seed=3)
    np.testing.assert_array_equal(again.text, train.text)
    with pytest.raises(UserError, match="val_fraction"):
        split_by_image(units, 1.0, seed=0)


@pytest.mark.parametrize("chunk", [0, 4])
def test_epoch_plan_covers_each_unit_once(chunk):
    plan = epoch_plan(23, 5, epoch=1, seed=0, shuffle_chunk=chunk, drop_last=False)
    assert [len(b) for b in plan] == [5, 5, 5, 5, 3]
    assert sorted(np.concatenate(plan).tolist()) == list(range(23))
    assert not np.array_equal(np.concatenate(plan), np.arange(23))
    other = epoch_plan(23, 5, epoch=2, seed=0, shuffle_chunk=chunk, drop_last=False)
    assert not np.array_equal(np.concatenate(plan), np.concatenate(other))
    assert len(epoch_plan(23, 5, epoch=1, seed=0, shuffle_chunk=chunk)) == 4  # drop_last


def test_epoch_plan_shards_across_processes():
    full = epoch_plan(50, 4, epoch=0, seed=1)  # 12 batches
    parts = [epoch_plan(50, 4, epoch=0, seed=1, world=5, rank=r) for r in range(5)]
    assert all(len(p) == 2 for p in parts)  # 12 -> 10 batches, 2 each
    flat = np.concatenate([np.concatenate(p) for p in parts])
    assert len(set(flat.tolist())) == 40 and set(flat.tolist()) <= set(np.concatenate(full).tolist())


def test_mine_inbatch_hand_computed(tmp_path):
    cache = open_cache(tiny_cache(tmp_path))
    units = build_units(cache)  # images [0, 1, 1, 2, 3]; texts 3 and 8 are both "a dog"
    text_g = np.array([[1, 0], [0, 1], [0.6, 0.8], [0.8, 0.6], [0, 1]], dtype=np.float32)
    image_g = np.array([[0, 1], [1, 0], [1, 0], [1, 0.1], [0, 1]], dtype=np.float32)
    got = mine_inbatch(units, cache, 2, text_g, image_g)
    # unit 0 (image 0, q=[0,1]): sims to texts 1..4 = 1, .8, .6, 1 -> units 1 and 4 (ties keep order)
    np.testing.assert_array_equal(got[0], [1, 4])
    # unit 1 (image 1 q=[1,0], "a dog"): unit 2 same image, unit 4 same string -> units 0 (1.0), 3 (.8)
    np.testing.assert_array_equal(got[1], [0, 3])
    # towers: caption-caption similarity; unit 3 ([.8,.6]) -> unit 2 (.96) then unit 0 (.8)
    towers = mine_inbatch(units, cache, 2, text_g, None)
    np.testing.assert_array_equal(towers[3], [2, 0])
    assert (mine_inbatch(units.subset(np.array([1, 2])), cache, 2, text_g[1:3], None) == -1).all()


@pytest.mark.parametrize("global_space", ["joint", "none"])
def test_make_batch_layout_matches_candidates(tmp_path, global_space):
    cache = open_cache(tiny_cache(tmp_path, global_space))
    units = build_units(cache)
    needs = ("patches", "patch_mask", "tokens", "token_mask", "image_global", "text_global")
    b = make_batch(cache, units, n_neg=2, k_inbatch=1, needs=needs, t2i=True)
    assert b.width == 4 and b.n_i2t == 5 and b.n_sets == 7  # units 0 and 3 have a negative image
    pairs = b.pairs()
    img = b.pair_image.numpy()
    unique_images = np.unique(np.concatenate([units.image, [2, 0]]))
    table = {}
    for n in range(b.n_pairs):
        # every pair's payload is what the cache holds for that image/text
        i, t = unique_images[img[n]], None
        np.testing.assert_array_equal(pairs.patches[n].numpy(), cache.patches([i])[0])
        np.testing.assert_allclose(pairs.image_global[n].numpy(), cache.image_global([i])[0])
        tg = pairs.text_global[n].numpy()
        t = int(np.flatnonzero(np.all(np.isclose(cache.text_global(range(cache.n_texts)), tg), axis=1))[0])
        real = pairs.token_mask[n].numpy()
        np.testing.assert_array_equal(pairs.tokens[n].numpy()[real], cache.tokens([t])[0])
        table[(int(b.rows[n]), int(b.cols[n]))] = (int(i), t)
    assert table[(0, 0)] == (0, 0) and table[(0, 1)] == (0, 1) and table[(0, 2)] == (0, 2)
    assert table[(2, 0)] == (1, 4) and table[(2, 1)] == (1, 5) and (2, 2) not in table
    assert (1, 1) not in table and (1, 2) not in table  # unit 1 has no hard negative
    for u in range(5):  # column 3: one in-batch caption of another image, another string
        i, t = table[(u, 3)]
        assert i == units.image[u] and cache.image_index[t] != units.image[u] and t in units.text
        assert cache.strings[t] != cache.strings[units.text[u]]
    assert table[(5, 0)] == (0, 0) and table[(5, 1)] == (2, 0)  # text->image for unit 0
    assert table[(6, 0)] == (2, 6) and table[(6, 1)] == (0, 6)
    m = b.score_matrix(torch.arange(b.n_pairs, dtype=torch.float32))
    assert m.shape == (7, 4) and torch.isinf(m[1, 1:3]).all() and m[0, 0] == 0


def test_make_batch_loads_only_needs_and_samples_negatives(tmp_path):
    cache = open_cache(tiny_cache(tmp_path))
    units = build_units(cache)
    b = make_batch(cache, units, n_neg=1, k_inbatch=0, needs=("image_global", "text_global"), t2i=False,
                   rng=np.random.default_rng(0))  # fmt: skip
    assert b.patches is None and b.tokens is None and b.n_sets == 5 and b.width == 2
    chosen = {int(b.cols[n]) for n in range(b.n_pairs) if int(b.rows[n]) == 0}
    assert chosen == {0, 1}
    seen = set()
    for s in range(20):  # unit 0 has two negatives: sampling picks either
        bb = make_batch(cache, units.subset(np.array([0])), n_neg=1, k_inbatch=0, needs=("text_global",),
                        t2i=False, rng=np.random.default_rng(s))  # fmt: skip
        seen.add(tuple(bb.text_global[bb.pair_text[bb.cols == 1]].flatten().tolist()))
    assert len(seen) == 2


def test_no_units_is_a_user_error(tmp_path):
    path = write_arrays(tmp_path / "empty.h5", {"encoder": "fake", "grid": [1, 1], **JOINT}, ["a"], np.zeros((1, 1, 2)),
                        np.zeros((1, 2)), ["x"], [np.zeros((1, 2))], np.zeros((1, 2)), [-1], [-1])  # fmt: skip
    with pytest.raises(UserError, match="no positive caption"):
        build_units(open_cache(path))


@pytest.mark.parametrize("workers", [0, 1])
def test_batch_dataset_loader_in_workers(tmp_path, workers):
    path = tiny_cache(tmp_path)
    units = build_units(open_cache(path))
    ds = BatchDataset(path, units, batch_size=2, n_neg=2, k_inbatch=1, needs=("patches", "tokens"), seed=0)
    ds.set_epoch(1)
    got = [b.n_i2t for b in make_loader(ds, num_workers=workers)]
    assert got == [2, 2]
    ds.set_epoch(1, start=1)
    assert len(ds) == 1


def _batch_key(b):
    return (b.n_i2t, b.rows.tolist(), b.cols.tolist())


def test_a_persistent_loader_follows_set_epoch(tmp_path):
    """One loader whose worker outlives the epochs (training's) gives every epoch, and a resume
    inside one, exactly the batches of a fresh in-process loader for it."""
    path = tiny_cache(tmp_path)
    units = build_units(open_cache(path))

    def dataset():
        return BatchDataset(path, units, batch_size=2, n_neg=2, k_inbatch=1, needs=("patches", "tokens"),
                            seed=3, drop_last=False)  # fmt: skip

    ds, fresh = dataset(), dataset()
    loader = make_loader(ds, num_workers=1, persistent=True)
    seen = []
    for epoch, start in [(0, 0), (1, 0), (2, 1), (3, 0)]:
        ds.set_epoch(epoch, start)
        fresh.set_epoch(epoch, start)
        got = [_batch_key(b) for b in loader]
        assert got == [_batch_key(b) for b in make_loader(fresh)]
        seen.append(got)
    assert len(seen[2]) == len(seen[1]) - 1 and seen[0] != seen[1]  # the plans differ by epoch
    del loader
