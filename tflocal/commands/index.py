"""`tflocal index`: a head's image-side vectors over a cache, computed once, + a late-interaction index."""

from __future__ import annotations

import argparse

HELP = "compute a late-interaction head's image vectors over a cache once and index them (centroids + inverted lists)"

EPILOG = """examples:
  tflocal index --cache caches/coco_test.h5 --scorer runs/coco/best.pt --out caches/coco_test.index
  tflocal index --cache caches/coco_test.h5 --scorer maxsim --out caches/coco_test.maxsim --storage residual --nbits 2
  tflocal search --cache caches/coco_test.h5 --scorer runs/coco/best.pt --late-index caches/coco_test.index --query "..."
Only heads whose image side does not depend on the caption can be indexed (readout: segments, maxsim)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EPILOG
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--cache", required=True, help="cache (.h5) whose images are indexed")
    p.add_argument("--scorer", required=True, help="maxsim | CHECKPOINT of a segments head")
    p.add_argument("--out", required=True, help="index folder to write (replaced when it is an index)")
    p.add_argument("--storage", default="float16", choices=("float16", "float32", "residual"))
    p.add_argument("--nbits", type=int, default=2, help="residual bits per dimension (storage residual)")
    p.add_argument("--centroids", type=int, default=None, help="k-means centroids (default ~4 sqrt(vectors))")
    p.add_argument("--batch-size", type=int, default=256, dest="batch_size")
    p.add_argument("--device", default="cpu")


def run(args: argparse.Namespace) -> int:
    from cache_tools.reader import open_cache
    from tflocal.index import build_index
    from tflocal.scoring import load_scorer

    cache = open_cache(args.cache)
    scorer = load_scorer(args.scorer, cache, device=args.device, progress=False)
    if getattr(scorer, "head", None) is None:
        from tflocal.errors import UserError

        raise UserError(
            f"scorer {scorer.name!r} has no head to index: use a 'segments' checkpoint or 'maxsim'"
        )
    store = build_index(
        cache,
        scorer.head,
        args.out,
        storage=args.storage,
        nbits=args.nbits,
        n_centroids=args.centroids,
        batch_size=args.batch_size,
        device=args.device,
        name=scorer.name,
        checkpoint=scorer.checkpoint,
    )
    m = store.meta
    print(
        f"indexed {m['n_images']} images x {m['n_patches']} vectors x {m['dim']} ({m['storage']}) under "
        f"{scorer.name} -> {args.out}: {store.bytes_per_image():.0f} bytes/image, {m['n_centroids']} centroids, "
        f"{m['seconds_total']:.1f} s"
    )
    cache.close()
    return 0
