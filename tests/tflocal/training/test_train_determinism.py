"""Two trainings with the same seed on the same cache give bit-identical weights on a CPU with
more than one thread.

The batches are sized so that the image side of a pair batch (distinct images gathered per
pair, ``PairBatch.pair_image``) is past PyTorch's CPU parallel grain (32768 elements), and every
image is scored both in its own image->text set and in its group mate's text->image set, so its
gradient sums contributions from far apart in the pair order. That was where CPU training
diverged run to run: the backward of ``x[index]`` with repeated indices accumulates with
atomic adds from several threads, in an order that changes from run to run."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from cache_tools.write.arrays import write_arrays
from tflocal.config import load_config
from tflocal.models.checkpoint import load_checkpoint
from tflocal.training.loop import TrainConfig, train

COLORS, SHAPES = ["red", "blue", "green", "yellow"], ["circle", "square", "star", "diamond"]


def grid_cache(path: Path, n_images: int = 48, grid: int = 7, d_img: int = 16, d_txt: int = 16) -> Path:
    """Images of ``grid`` x ``grid`` patches holding two coloured shapes; captions "a <color>
    <shape> and a <color> <shape>" with their color swap as the hard negative; images grouped in
    twos (``image_group``), so each is the other's negative image (text->image sets)."""
    rng = np.random.default_rng(0)
    col_i, shp_i = rng.normal(size=(4, d_img)), rng.normal(size=(4, d_img))
    vocab = {w: rng.normal(size=d_txt) for w in [*COLORS, *SHAPES, "a", "and"]}
    P = grid * grid
    patches, texts, pieces, tokens, image_index, positive_index = [], [], [], [], [], []
    for i in range(n_images):
        (ca, cb), (sa, sb) = rng.choice(4, 2, replace=False), rng.choice(4, 2, replace=False)
        p = rng.normal(scale=0.3, size=(P, d_img))
        where = rng.choice(P, 2, replace=False)
        p[where[0]] += col_i[ca] + shp_i[sa]
        p[where[1]] += col_i[cb] + shp_i[sb]
        patches.append(p)
        for c1, c2 in [(ca, cb), (cb, ca)]:  # the positive, then its color swap
            ws = ["a", COLORS[c1], SHAPES[sa], "and", "a", COLORS[c2], SHAPES[sb]]
            tokens.append(np.stack([vocab[w] for w in ws]).astype(np.float16).astype(np.float32))
            texts.append(" ".join(ws))
            pieces.append(ws)
            image_index.append(i)
        positive_index += [-1, len(texts) - 2]
    patches = np.asarray(patches, np.float16).astype(np.float32)
    text_global = np.stack([t.mean(0) for t in tokens])
    meta = {"encoder": "synthetic:grid", "grid": [grid, grid], "context_length": 8, "space": "hidden",
            "global_space": "none"}  # fmt: skip
    return write_arrays(
        path, meta, image_ids=[f"i{i}" for i in range(n_images)], patches=patches,
        image_global=patches.mean(1), texts=texts, tokens=tokens, text_global=text_global,
        image_index=image_index, positive_index=positive_index, op=["", "swap"] * n_images,
        kind=["", "attribute"] * n_images, token_strings=pieces,
        image_group=[f"g{i // 2}" for i in range(n_images)],
    )  # fmt: skip


@pytest.fixture(scope="module")
def grid_path(tmp_path_factory) -> Path:
    return grid_cache(tmp_path_factory.mktemp("grid") / "grid.h5")


@pytest.fixture
def two_threads():
    """Two torch threads (the conftest default where there are two CPUs): the race needs them."""
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one CPU: threaded kernels cannot race here")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def train_twice(cache: Path, tmp_path: Path, readout: str, *overrides: str) -> list[dict[str, torch.Tensor]]:
    """The final weights of two trainings with the same config and seed."""
    common = ["model.width=64", "model.depth=1", "model.heads=4", f"model.readout={readout}", "optim.lr=3e-3",
              "optim.warmup_steps=5", "data.batch_size=16", "data.n_neg=1", "data.k_inbatch=2",
              "data.num_workers=0", "data.val_fraction=0", "epochs=6", "log_every=1", "progress=false"]  # fmt: skip
    weights = []
    for name in ("a", "b"):
        out = tmp_path / f"{readout}-{name}"
        train(
            load_config(
                TrainConfig, None, [*common, *overrides], cache=str(cache), out=str(out), device="cpu"
            )
        )
        weights.append(load_checkpoint(out / "last.pt")["state_dict"])
    return weights


def assert_bit_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"{len(differ)} of {len(a)} tensors differ after two same-seed runs, e.g. {differ[:3]}"


@pytest.mark.parametrize("readout", ["segments", "summary"])
def test_same_seed_trains_bit_identical_weights(grid_path, tmp_path, two_threads, readout):
    """Without torch's deterministic mode: the heads' own gathers are reproducible."""
    assert_bit_identical(*train_twice(grid_path, tmp_path, readout, "deterministic=false"))


def test_deterministic_mode_guards_plain_indexing(grid_path, tmp_path, two_threads, monkeypatch):
    """``deterministic`` (default on) makes even the earlier ``x[index]`` gathers reproducible, and
    train() hands back torch's setting as it found it."""
    import tflocal.models.layers as layers
    import tflocal.models.segment_head as segment_head

    def plain_index(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return x[index]

    for module in (layers, segment_head):
        monkeypatch.setattr(module, "gather_rows", plain_index)
    assert not torch.are_deterministic_algorithms_enabled()
    assert_bit_identical(*train_twice(grid_path, tmp_path, "segments"))
    assert not torch.are_deterministic_algorithms_enabled()
