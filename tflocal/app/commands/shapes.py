"""`tflocal shapes`: render a controlled dataset: ShapesWorld (``--world 2d``) or the 3D world
(``--world 3d``)."""

from __future__ import annotations

import argparse

from tflocal.app.flags import add_config_arguments, config_from_args
from tflocal.shapesworld import generate
from tflocal.shapesworld.config import RenderConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p, RenderConfig)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(RenderConfig, args)
    if cfg.world == "3d":
        from tflocal.world3d import generate as generate_3d

        n_train, n_test, _ = cfg.counts
        meta = generate_3d(
            cfg.out,
            n_train,
            n_test,
            cfg.n_novel,
            seed=cfg.seed,
            image_size=cfg.image_size,
            workers=cfg.workers,
            train_pairs=cfg.train_pairs,
            progress=not args.quiet,
        )
        for split, st in meta["counts"].items():
            print(
                f"{split}: {st['images']} images ({st['pairs']} minimal pairs), {st['captions']} captions, "
                f"{st['negatives']} negatives"
            )
        return 0
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
