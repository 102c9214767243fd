"""`tflocal cache`: encode a data source with a frozen encoder into an HDF5 cache."""

from __future__ import annotations

import argparse

from cache_tools.config import CacheConfig
from tflocal.app.flags import add_config_arguments, config_from_args

EPILOG = """examples:
  tflocal cache --encoder openclip:ViT-B-32@openai --data karpathy:data/coco/dataset_coco.json \\
      --images data/coco --set options.split=test --out caches/coco_test.h5
  tflocal cache --config configs/cache/vitb32_openai_coco.yaml
  accelerate launch --num_processes 4 -m tflocal.app.cli cache --config ...   # one shard per process

Run the same command again after an interruption: finished parts are kept."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p, CacheConfig, epilog=EPILOG)


def run(args: argparse.Namespace) -> int:
    from cache_tools.write.build import build_cache  # torch, h5py: only when the command runs

    summary = build_cache(config_from_args(CacheConfig, args), progress=not args.quiet)
    print(summary)
    return 0
