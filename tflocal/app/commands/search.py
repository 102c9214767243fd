"""`tflocal search`: text -> image search over a cache, faiss first stage + re-ranking."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from tflocal.app.flags import add_config_arguments, config_from_args
from tflocal.retrieval.config import SearchConfig
from tflocal.retrieval.first_stage import build_faiss_index, load_index, save_index, search_text

EPILOG = """examples:
  tflocal search --cache caches/coco_test.h5 --index caches/coco_test.faiss \\
      --scorer runs/coco/last.pt --query "a red cube left of a blue ball" -k 10
The index is built from the cache's image embeddings (and saved) when the file is missing."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p, SearchConfig, aliases={"k": ("-k",)}, epilog=EPILOG)


def run(args: argparse.Namespace) -> int:
    # the cache reader, encoders and scorers import torch and h5py: only when the command runs
    from cache_tools.encoders import load_encoder
    from cache_tools.store.reader import open_cache
    from tflocal.retrieval import open_late_index
    from tflocal.scoring.load import load_scorer

    cfg = config_from_args(SearchConfig, args)
    cache = open_cache(cfg.cache)
    encoder = load_encoder(cfg.encoder, device=cfg.device) if cfg.encoder else None
    if cfg.index and Path(cfg.index).is_file():
        index = load_index(cfg.index)
    else:
        index = build_faiss_index(cache.image_global(range(cache.n_images)), cfg.factory)
        if cfg.index:
            save_index(index, cfg.index)
            print(f"built {cfg.factory} index over {cache.n_images} images -> {cfg.index}")
    scorer = load_scorer(
        cfg.scorer, cache, encoder=encoder, device=cfg.device, progress=False, precision=cfg.precision
    )
    late = None
    if cfg.late_index and any(Path(cfg.late_index, m).is_file() for m in ("meta.json", "shards.json")):
        late = open_late_index(
            cfg.late_index,
            scorer,
            nprobe=cfg.nprobe,
            n_candidates=cfg.candidates,
            refine=cfg.refine,
            global_candidates=cfg.global_candidates,
        )
    elif cfg.late_index:
        print(f"no index at {cfg.late_index} (build it with `tflocal index`): global first stage")
    stage = f"re-ranking the top {cfg.k_rerank}"
    if late is not None:
        stage = "late-interaction first stage" + (f" + global top {cfg.k_rerank}" if cfg.fuse else "")
    for query in cfg.query:
        rows, scores, first = search_text(
            cache, index, scorer, query, k=cfg.k, k_rerank=cfg.k_rerank, late=late, fuse=cfg.fuse
        )
        print(f"query: {query!r}  (scorer {scorer.name}, {stage})")
        print(f"{'rank':>4}  {'score':>9}  {'cosine':>8}  image")
        for r, (i, s, d) in enumerate(zip(rows, scores, first), 1):
            cosine = "-" if np.isnan(d) else f"{d:.4f}"  # no global first stage ran (late index)
            print(f"{r:>4}  {s:9.4f}  {cosine:>8}  {cache.image_ids[i]}")
    cache.close()
    return 0
