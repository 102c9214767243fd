"""`tflocal train`: train an alignment head on a cache from a YAML recipe."""

from __future__ import annotations

import argparse

HELP = "train an alignment head (tflocal or global) on a cache"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML recipe, e.g. configs/train/coco_vitb32.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set optim.lr=1e-4 (repeatable)")  # fmt: skip
    parser.add_argument("--cache", help="training cache (overrides the recipe's 'cache')")
    parser.add_argument("--out-dir", help="output directory (overrides the recipe's 'out_dir')")
    parser.add_argument("--head", help="'tflocal' or 'global' (overrides the recipe's 'head')")


def run(args: argparse.Namespace) -> int:
    import json

    from tflocal.config import load_config
    from tflocal.train import TrainConfig, train

    cfg = load_config(
        TrainConfig, args.config, args.overrides, cache=args.cache, out_dir=args.out_dir, head=args.head
    )
    summary = train(cfg)
    print(json.dumps(summary, indent=2))
    return 0
