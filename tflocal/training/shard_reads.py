"""Which shard files each process trains on when a run has several (``accelerate launch``).

A cache written by N processes (``tflocal cache`` under ``accelerate launch``) is N shard files
and one small merged file over them (``cache_tools.store.shards``). A training run with W > 1
processes on such a cache gives process k a disjoint group of whole shards, balanced by their
training pairs (positive captions attached to an image; :func:`partition_shards`), and process k
opens only its own shard files: the merged file is read for its attributes and small index
arrays only. Each process builds its units, validation split included, from its own shards;
all of them take the same number of batches an epoch (the smallest process's count: the
others drop their last batches), since every step is a collective one.

A cache that is one file, or one with fewer shards than processes, is read as before: every
process opens the whole cache and takes every W-th batch (with a note in the second case).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from cache_tools.store.schema import decode_attrs
from cache_tools.store.shards import partition_shards, shard_layout


def shard_pairs(path: str | Path) -> tuple[list[Path], np.ndarray]:
    """The merged cache's shard files and the training pairs of each: int64 [S]. ``([], [])``
    for a cache that is one file. Reads the merged file only (its text index arrays)."""
    layout = shard_layout(path)
    if not layout:
        return [], np.zeros(0, np.int64)
    with h5py.File(path, "r") as f:
        pos, img = f["texts/positive_index"][()], f["texts/image_index"][()]
    unit = (pos == -1) & (img >= 0)
    counts = np.array([int(unit[s.text_start : s.text_stop].sum()) for s in layout], np.int64)
    return [s.path for s in layout], counts


def shards_for(path: str | Path, world: int, rank: int, say: Any = None) -> list[Path] | None:
    """The shard files process ``rank`` of ``world`` trains on, or None when every process reads
    the whole cache (one process, a cache that is one file, or fewer shards than processes:
    then ``say`` gets a one-line note)."""
    if world <= 1:
        return None
    paths, counts = shard_pairs(path)
    if not paths:
        return None
    if len(paths) < world:
        if say is not None and rank == 0:
            say(
                f"{path} has {len(paths)} shard file(s) for {world} processes: every process reads the "
                "whole cache; write it with at least as many processes as train to read one share each"
            )
        return None
    return [paths[i] for i in partition_shards(counts, world)[rank]]


def merged_info(path: str | Path, keys: tuple[str, ...]) -> dict[str, Any]:
    """Root attributes ``keys`` of the merged cache (what a checkpoint records of its cache)."""
    with h5py.File(path, "r") as f:
        attrs = decode_attrs(f.attrs)
    return {k: attrs.get(k) for k in keys}


def merged_ops(path: str | Path) -> np.ndarray:
    """The sorted distinct operator names of the whole merged cache (``texts/op``): str [O],
    the same on every process, so per-operator validation sums line up."""
    with h5py.File(path, "r") as f:
        ops = f["texts/op"].asstr()[()]
    return np.unique(np.asarray(ops, dtype=str))


def gather_counts(acc: Any, n: int) -> np.ndarray:
    """Every process's ``n`` (``acc.gather``): int64 [W]. Its min is the batches an epoch each
    process takes, so all run the same number of steps."""
    out = acc.gather(torch.tensor([int(n)], dtype=torch.int64, device=acc.device))
    return out.cpu().numpy().astype(np.int64).reshape(-1)
