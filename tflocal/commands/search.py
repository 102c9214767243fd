"""`tflocal search`: text -> image search over a cache, faiss first stage + re-ranking."""

from __future__ import annotations

import argparse

HELP = "search a cache's images with a caption: faiss top-k by global cosine, re-ranked by a scorer"

EPILOG = """examples:
  tflocal search --cache caches/coco_test.h5 --index caches/coco_test.faiss \\
      --scorer runs/coco/last.pt --query "a red cube left of a blue ball" -k 10
The index is built from the cache's image embeddings (and saved) when the file is missing."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EPILOG
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--cache", required=True, help="cache (.h5) whose images are searched")
    p.add_argument("--index", help="faiss index file over the cache's image embeddings (built when missing)")
    p.add_argument(
        "--factory", default="Flat", help="faiss factory string for a new index: Flat, IVF1024,Flat, HNSW32"
    )
    p.add_argument(
        "--scorer", default="cosine", help="cosine | maxsim | sgi | CHECKPOINT (re-ranks the first stage)"
    )
    p.add_argument("--query", action="append", required=True, help="caption to search with (repeatable)")
    p.add_argument("-k", type=int, default=10, help="results to print")
    p.add_argument(
        "--k-rerank", type=int, default=100, dest="k_rerank", help="first-stage candidates re-ranked"
    )
    p.add_argument(
        "--late-index",
        dest="late_index",
        help="index folder from `tflocal index` for --scorer: late-interaction first stage when it exists",
    )
    p.add_argument(
        "--fuse", action="store_true", help="with --late-index: also score the global top --k-rerank"
    )
    p.add_argument("--encoder", help="encoder for the query (default: the cache's own)")
    p.add_argument("--device", default="cpu")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cache_tools.reader import open_cache
    from tflocal.retrieval import build_index, load_index, save_index, search_text
    from tflocal.scoring import load_scorer

    cache = open_cache(args.cache)
    encoder = None
    if args.encoder:
        from cache_tools.encoders import load_encoder

        encoder = load_encoder(args.encoder, device=args.device)
    if args.index and Path(args.index).is_file():
        index = load_index(args.index)
    else:
        index = build_index(cache.image_global(range(cache.n_images)), args.factory)
        if args.index:
            save_index(index, args.index)
            print(f"built {args.factory} index over {cache.n_images} images -> {args.index}")
    scorer = load_scorer(args.scorer, cache, encoder=encoder, device=args.device, progress=False)
    late = None
    if args.late_index and Path(args.late_index, "meta.json").is_file():
        from tflocal.index import open_late_index

        late = open_late_index(args.late_index, scorer)
    elif args.late_index:
        print(f"no index at {args.late_index} (build it with `tflocal index`): global first stage")
    stage = f"re-ranking the top {args.k_rerank}"
    if late is not None:
        stage = "late-interaction first stage" + (f" + global top {args.k_rerank}" if args.fuse else "")
    for query in args.query:
        rows, scores, first = search_text(
            cache, index, scorer, query, k=args.k, k_rerank=args.k_rerank, late=late, fuse=args.fuse
        )
        print(f"query: {query!r}  (scorer {scorer.name}, {stage})")
        print(f"{'rank':>4}  {'score':>9}  {'cosine':>8}  image")
        for r, (i, s, d) in enumerate(zip(rows, scores, first), 1):
            print(f"{r:>4}  {s:9.4f}  {d:8.4f}  {cache.image_ids[i]}")
    cache.close()
    return 0
