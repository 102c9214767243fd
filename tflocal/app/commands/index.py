"""`tflocal index`: a head's image-side vectors over a cache, computed once, + a late-interaction index."""

from __future__ import annotations

import argparse

from tflocal.app.flags import add_config_arguments, config_from_args
from tflocal.errors import UserError
from tflocal.retrieval.config import IndexConfig

EPILOG = """examples:
  tflocal index --cache caches/coco_test.h5 --scorer runs/coco/best.pt --out caches/coco_test.index
  tflocal index --cache caches/coco_test.h5 --scorer maxsim --out caches/coco_test.maxsim --storage residual --nbits 2
  tflocal search --cache caches/coco_test.h5 --scorer runs/coco/best.pt --late-index caches/coco_test.index --query "..."
  accelerate launch --num_processes 4 -m tflocal.app.cli index --per-shard --cache caches/coco.h5 --scorer runs/coco/best.pt --out indexes/coco
Only heads whose image side does not depend on the caption can be indexed (readout: segments, maxsim)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p, IndexConfig, epilog=EPILOG)


def run(args: argparse.Namespace) -> int:
    # the cache reader and scorers import torch and h5py: only when the command runs
    from cache_tools.store.reader import open_cache
    from tflocal.retrieval import build_late_index
    from tflocal.scoring.load import load_scorer

    cfg = config_from_args(IndexConfig, args)
    cache = open_cache(cfg.cache)
    scorer = load_scorer(cfg.scorer, cache, device=cfg.device, progress=False)
    if getattr(scorer, "head", None) is None:
        raise UserError(
            f"scorer {scorer.name!r} has no head to index: use a 'segments' checkpoint or 'maxsim'"
        )
    if cfg.per_shard:
        return _per_shard(cfg, cache, scorer, args.quiet)
    store = build_late_index(
        cache,
        scorer.head,
        cfg.out,
        storage=cfg.storage,
        nbits=cfg.nbits,
        n_centroids=cfg.centroids,
        batch_size=cfg.batch_size,
        device=cfg.device,
        name=scorer.name,
        checkpoint=scorer.checkpoint,
        progress=not args.quiet,
    )
    m = store.meta
    print(
        f"indexed {m['n_images']} images x {m['n_patches']} vectors x {m['dim']} ({m['storage']}) under "
        f"{scorer.name} -> {cfg.out}: {store.bytes_per_image():.0f} bytes/image, {m['n_centroids']} centroids, "
        f"{m['seconds_total']:.1f} s"
    )
    cache.close()
    return 0


def _per_shard(cfg: IndexConfig, cache, scorer, quiet: bool) -> int:
    from accelerate import PartialState

    from tflocal.retrieval.late_shards import build_shard_indexes, write_manifest

    state = PartialState(cpu=not cfg.device.startswith("cuda"))
    world = state.num_processes
    built = build_shard_indexes(
        cfg.cache,
        scorer.head,
        cfg.out,
        rank=state.process_index,
        world=world,
        storage=cfg.storage,
        nbits=cfg.nbits,
        n_centroids=cfg.centroids,
        batch_size=cfg.batch_size,
        device=str(state.device) if world > 1 and cfg.device.startswith("cuda") else cfg.device,
        name=scorer.name,
        checkpoint=scorer.checkpoint,
        progress=not quiet and state.is_local_main_process,
    )
    if world > 1:
        state.wait_for_everyone()
        if state.is_main_process:
            write_manifest(cfg.out, cfg.cache)
        state.wait_for_everyone()
    print(
        f"process {state.process_index} of {world}: indexed {len(built)} shard(s) of {cfg.cache} -> {cfg.out}"
    )
    cache.close()
    return 0
