"""Build a cache from a :class:`~cache_tools.config.CacheConfig`: the library side of ``tflocal cache``.

Runs as one process, or as N processes under ``accelerate launch`` (each writes one shard of
the records; the main process then writes the output as one logical cache over the shards).
A benchmark source's item count (``Source.stats()["items"]``, scored or skipped) is recorded as
the root attribute ``source_items``, which the evaluation report compares with the items scored.
A ``wds:`` source is cached per tar shard (``cache_tools.write.webdataset``).
"""

from __future__ import annotations

import itertools
from dataclasses import asdict
from pathlib import Path

import h5py
from accelerate import PartialState

from cache_tools.config import CacheConfig
from cache_tools.encoders import load_encoder
from cache_tools.infra.locks import OutputLock
from cache_tools.sources import open_source
from cache_tools.store.shards import merge_shards
from cache_tools.write.webdataset import build_per_shard
from cache_tools.write.writer import LOCK_ADVICE, WriteSummary, shard_path, write_cache


class _Limited:
    """The first ``n`` records of a source, with a length."""

    def __init__(self, source, n: int):
        self.source, self.n = source, min(n, len(source)) if hasattr(source, "__len__") else n

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return itertools.islice(iter(self.source), self.n)


def build_cache(cfg: CacheConfig, progress: bool = True) -> WriteSummary:
    """Encode ``cfg.data`` with ``cfg.encoder`` into ``cfg.out`` (resumable; see writer)."""
    source = open_source(cfg.data, images=cfg.images, **cfg.options)
    state = PartialState(cpu=cfg.device == "cpu")
    rank, world = state.process_index, state.num_processes
    out = Path(cfg.out)
    # the output is locked before the model is loaded: a second run with the same --out stops at once
    with OutputLock(out if world == 1 else shard_path(out, rank, world), "`tflocal cache` run", LOCK_ADVICE):
        summary = _build(cfg, source, state, rank, world, progress)
    if world > 1:
        state.wait_for_everyone()
    if state.is_main_process:
        with OutputLock(out, "`tflocal cache` run", LOCK_ADVICE):
            if world > 1:
                merge_shards(out, [shard_path(out, i, world) for i in range(world)])
            record_items(out, source)
    if world > 1:
        state.wait_for_everyone()
    return summary


def _build(cfg: CacheConfig, source, state, rank: int, world: int, progress: bool) -> WriteSummary:
    device = cfg.device or str(state.device)
    encoder = load_encoder(cfg.encoder, device=device, precision=cfg.precision)
    if getattr(source, "per_shard", False):
        return build_per_shard(cfg, source, encoder, state, progress)
    records = _Limited(source, cfg.limit) if cfg.limit else source
    full_skipped = None
    if world > 1 and hasattr(source, "stats"):
        source.stats()  # a full pass: process 0 stores every source-level skip, not just its range's
        full_skipped = list(source.skipped)
    return write_cache(
        records,
        encoder,
        cfg.out,
        batch_size=cfg.batch_size,
        crops=cfg.crops,
        source=cfg.data,
        config=asdict(cfg),
        shard=(rank, world),
        num_workers=cfg.num_workers,
        progress=progress and state.is_local_main_process,
        skipped_from_source=lambda: (
            full_skipped if full_skipped is not None else list(getattr(source, "skipped", []))
        ),
    )


def record_items(out: Path, source) -> None:
    """Write the source's benchmark item count (when it counts items) as root attr ``source_items``."""
    items = source.stats().get("items", 0) if hasattr(source, "stats") else 0
    if items and out.is_file():
        with h5py.File(out, "r+") as f:
            f.attrs["source_items"] = int(items)
