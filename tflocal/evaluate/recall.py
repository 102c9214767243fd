"""COCO / Flickr30k (Karpathy test) retrieval: R@1/5/10 both ways, first stage and re-ranked.

The first stage is a faiss index over the global embeddings (the frozen model's own cosine);
a scorer other than ``cosine`` then re-ranks each query's top ``k_rerank``. Rows of the first
stage carry scorer ``cosine``, re-ranked rows the scorer's name (same subset and metric, so the
report shows them side by side). Image -> text counts a hit when any of the image's captions is
retrieved. Images whose meta ``split`` is ``test`` are used when there are any, else all.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tflocal.errors import UserError
from tflocal.evaluate.common import Context, context, image_meta_column
from tflocal.evaluate.report import Row
from tflocal.retrieval.first_stage import build_faiss_index, recall_at_k, rerank, search

KS = (1, 5, 10)


def retrieval_items(cache: Any) -> tuple[np.ndarray, np.ndarray]:
    """-> (image rows [I], caption rows [T]): test images and their positive captions."""
    images = np.arange(cache.n_images, dtype=np.int64)
    splits = np.asarray([str(s) for s in image_meta_column(cache, images, "split", "")])
    if (splits == "test").any():
        images = images[splits == "test"]
    on_image = np.isin(cache.image_index, images) & (cache.positive_index < 0)
    return images, np.flatnonzero(on_image).astype(np.int64)


def _recall_rows(ctx: Context, subset: str, ranked: np.ndarray, positives: list[set[int]]) -> list[Row]:
    ks = tuple(k for k in KS if k <= ranked.shape[1])
    return [ctx.row(subset, m, v, len(positives)) for m, v in recall_at_k(ranked, positives, ks).items()]


def evaluate_retrieval(
    cache: Any, scorer: Any, benchmark: str = "retrieval", k_rerank: int = 100, factory: str = "Flat"
) -> list[Row]:
    if not cache.spec.joint_globals:
        raise UserError(
            f"retrieval needs comparable global embeddings for its first stage; cache {cache.path} has none"
        )
    images, texts = retrieval_items(cache)
    if not len(images) or not len(texts):
        raise UserError(
            f"cache {cache.path} has no captioned images to retrieve: build it from a karpathy: source"
        )
    first = context(benchmark, cache, scorer)
    first.scorer, first.checkpoint = "cosine", ""
    ctx = context(benchmark, cache, scorer)
    rerank_too = getattr(scorer, "name", "cosine") != "cosine"
    depth = max(max(KS), k_rerank if rerank_too else 0)
    rows: list[Row] = []
    img_of_text = cache.image_index[texts]
    # text -> image
    _, local = search(build_faiss_index(cache.image_global(images), factory), cache.text_global(texts), depth)
    ranked = np.where(local >= 0, images[np.maximum(local, 0)], -1)
    pos_t2i = [{int(i)} for i in img_of_text]
    rows += _recall_rows(first, "t2i", ranked, pos_t2i)
    if rerank_too:
        rows += _recall_rows(ctx, "t2i", rerank(scorer, texts, ranked[:, :k_rerank], "t2i")[1], pos_t2i)
    # image -> text
    _, local = search(build_faiss_index(cache.text_global(texts), factory), cache.image_global(images), depth)
    ranked = np.where(local >= 0, texts[np.maximum(local, 0)], -1)
    pos_i2t = [set(texts[img_of_text == i].tolist()) for i in images]
    rows += _recall_rows(first, "i2t", ranked, pos_i2t)
    if rerank_too:
        rows += _recall_rows(ctx, "i2t", rerank(scorer, images, ranked[:, :k_rerank], "i2t")[1], pos_i2t)
    return rows
