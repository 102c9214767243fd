"""`tflocal shapes`: render the ShapesWorld controlled dataset."""

from __future__ import annotations

import argparse

from tflocal.app.flags import add_config_arguments, config_from_args
from tflocal.shapesworld import generate
from tflocal.shapesworld.config import RenderConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p, RenderConfig)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(RenderConfig, args)
    meta = generate(
        cfg.out,
        *cfg.counts,
        seed=cfg.seed,
        image_size=cfg.image_size,
        workers=cfg.workers,
        counterfactual=cfg.counterfactual,
        n_test_novel=cfg.novel,
        vary_names=cfg.vary_names,
        progress=not args.quiet,
    )
    for split, st in meta["counts"].items():
        print(f"{split}: {st['images']} images, {st['captions']} captions, {st['negatives']} negatives")
    return 0
