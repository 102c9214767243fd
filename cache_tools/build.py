"""Build a cache from a :class:`~cache_tools.config.CacheConfig`: the library side of ``tflocal cache``.

Runs as one process, or as N processes under ``accelerate launch`` (each writes one shard of
the records; the main process then writes the output as one logical cache over the shards).
"""

from __future__ import annotations

import itertools
from dataclasses import asdict
from pathlib import Path

from cache_tools.config import CacheConfig
from cache_tools.locks import OutputLock
from cache_tools.writer import LOCK_ADVICE, WriteSummary, shard_path, write_cache


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
    cfg.validate()
    from accelerate import PartialState

    from cache_tools.encoders import load_encoder
    from cache_tools.sources import open_source

    source = open_source(cfg.data, images=cfg.images, **cfg.options)
    state = PartialState(cpu=cfg.device == "cpu")
    rank, world = state.process_index, state.num_processes
    out = Path(cfg.out)
    # the output is locked before the model is loaded: a second run with the same --out stops at once
    with OutputLock(out if world == 1 else shard_path(out, rank, world), "`tflocal cache` run", LOCK_ADVICE):
        summary = _build(cfg, source, state, rank, world, progress, load_encoder)
    if world > 1:
        state.wait_for_everyone()
        if state.is_main_process:
            from cache_tools.shards import merge_shards

            with OutputLock(out, "`tflocal cache` run", LOCK_ADVICE):
                merge_shards(out, [shard_path(out, i, world) for i in range(world)])
        state.wait_for_everyone()
    return summary


def _build(
    cfg: CacheConfig, source, state, rank: int, world: int, progress: bool, load_encoder
) -> WriteSummary:
    device = cfg.device or str(state.device)
    encoder = load_encoder(cfg.encoder, device=device, precision=cfg.precision)
    records = _Limited(source, cfg.limit) if cfg.limit else source
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
        skipped_from_source=lambda: list(getattr(source, "skipped", [])),
    )
