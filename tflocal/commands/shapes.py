"""`tflocal shapes`: render the ShapesWorld controlled dataset."""

from __future__ import annotations

import argparse

HELP = "Render ShapesWorld (shapes, colors, sizes, textures, relations) with captions and false negatives."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory")
    parser.add_argument(
        "--n", type=int, default=1000, help="total images, split 80/10/10 (train/test_id/test_ood)"
    )
    parser.add_argument("--n-train", type=int, default=None, help="train images (overrides the split of --n)")
    parser.add_argument("--n-test", type=int, default=None, help="images in each of test_id and test_ood")
    parser.add_argument(
        "--n-novel",
        type=int,
        default=None,
        help="test_novel images (test_ood's held-out combinations, every shape and attribute named with a "
        "word outside the shipped vocabulary), rendered in addition to --n; default: as many as test_id",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--counterfactual",
        action="store_true",
        help="also render a counterfactual twin per train image (one SWAP negative made true)",
    )
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument(
        "--workers", type=int, default=2, help="processes (output is identical for any number)"
    )


def split_counts(n: int, n_train: int | None, n_test: int | None) -> tuple[int, int, int]:
    """(train, test_id, test_ood) from --n / --n-train / --n-test."""
    n_test = n_test if n_test is not None else n // 10
    n_train = n_train if n_train is not None else n - 2 * n_test
    return n_train, n_test, n_test


def run(args: argparse.Namespace) -> int:
    from tflocal.errors import UserError
    from tflocal.shapesworld import generate

    counts = split_counts(args.n, args.n_train, args.n_test)
    n_novel = counts[1] if args.n_novel is None else args.n_novel
    if min(*counts, n_novel) < 0 or args.workers < 1:
        raise UserError(f"shapes: split sizes {(*counts, n_novel)} and --workers must not be negative")
    meta = generate(
        args.out,
        *counts,
        seed=args.seed,
        image_size=args.image_size,
        workers=args.workers,
        counterfactual=args.counterfactual,
        n_test_novel=n_novel,
    )
    for split, st in meta["counts"].items():
        print(f"{split}: {st['images']} images, {st['captions']} captions, {st['negatives']} negatives")
    return 0
