"""Two-stage retrieval: a faiss first stage over global embeddings, then re-ranking with a scorer.

faiss conventions: vectors are float32, C-contiguous and L2-normalized, searched by inner
product (= cosine); indexes are described by factory strings (``"Flat"``, ``"IVF1024,Flat"``,
``"HNSW32"``); searches return ``(D, I)``: scores and ids, ``[Q, k]``, best first, ``-1`` ids
where fewer than k were found. Re-ranking takes the first stage's top ``k_rerank`` (like
faiss's ``k_factor``) and orders them by any :class:`tflocal.scoring.Scorer`.

Directions: ``"t2i"`` (text queries, image candidates) and ``"i2t"`` (image queries, text
candidates); ids are cache row indices.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import torch

from tflocal.errors import UserError
from tflocal.pairs.assemble import encode_text_side
from tflocal.scoring.base import Scorer
from tflocal.scoring.head import CosineScorer

DIRECTIONS = ("t2i", "i2t")


def normalize(x: np.ndarray) -> np.ndarray:
    """[N, D] -> float32 C-contiguous rows of unit L2 norm (zero rows stay zero)."""
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    if x.ndim != 2:
        raise ValueError(f"normalize: expected [N, D] vectors, got shape {x.shape}")
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norm, 1e-12))


def build_faiss_index(vectors: np.ndarray, factory: str = "Flat", nprobe: int | None = None) -> Any:
    """A faiss inner-product index over L2-normalized ``vectors`` [N, D], trained if needed.

    ``factory``: a faiss factory string; ``"Flat"`` is exact, ``"IVF{nlist},Flat"`` and
    ``"HNSW{M}"`` scale to large collections. ``nprobe`` sets IVF's probe count.
    """
    x = normalize(vectors)
    try:
        index = faiss.index_factory(x.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as err:
        raise UserError(
            f"faiss factory string {factory!r} not understood ({err}); try 'Flat', 'IVF1024,Flat' or 'HNSW32'"
        ) from err
    if not index.is_trained:
        index.train(x)
    index.add(x)
    if nprobe is not None:
        faiss.ParameterSpace().set_index_parameter(index, "nprobe", int(nprobe))
    return index


def save_index(index: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    faiss.write_index(index, str(path))
    return path


def load_index(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"faiss index {path} not found: `tflocal search --cache CACHE --index {path} ...` builds it when missing"
        )
    return faiss.read_index(str(path))


def search(index: Any, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """queries [Q, D] (normalized here) -> (D [Q, k] float32 scores, I [Q, k] int64 ids)."""
    q = normalize(queries)
    if q.shape[1] != index.d:
        raise UserError(f"query dimension {q.shape[1]} does not match the index dimension {index.d}")
    k = int(min(k, index.ntotal))
    D, I = index.search(q, k)  # noqa: E741 (faiss naming)
    return D, I.astype(np.int64)


def rerank(
    scorer: Scorer, query_ids: np.ndarray, candidates: np.ndarray, direction: str = "t2i"
) -> tuple[np.ndarray, np.ndarray]:
    """Order each query's candidates by ``scorer``.

    query_ids: [Q] cache rows of the queries (texts for "t2i", images for "i2t");
    candidates: [Q, K] cache rows of the candidates (``-1`` = no candidate, ranked last).
    Returns (scores [Q, K] float32, ids [Q, K] int64), best first; the sort is stable, so equal
    scores keep the candidates' given order.
    """
    if direction not in DIRECTIONS:
        raise UserError(f"retrieval direction {direction!r} unknown; choices: {', '.join(DIRECTIONS)}")
    query_ids = np.asarray(query_ids, dtype=np.int64)
    candidates = np.asarray(candidates, dtype=np.int64)
    if candidates.ndim != 2 or candidates.shape[0] != query_ids.shape[0]:
        raise ValueError(f"rerank: candidates {candidates.shape} do not match {query_ids.shape[0]} queries")
    Q, K = candidates.shape
    valid = candidates >= 0
    q_flat = np.repeat(query_ids, K)[valid.ravel()]
    c_flat = candidates[valid]
    scores = np.full((Q, K), -np.inf, dtype=np.float32)
    if c_flat.size:
        if direction == "t2i":
            flat = scorer.score(c_flat, q_flat)
        else:
            flat = scorer.score(q_flat, c_flat)
        scores[valid] = np.asarray(flat, dtype=np.float32)
    order = np.argsort(-scores, axis=1, kind="stable")
    return np.take_along_axis(scores, order, 1), np.take_along_axis(candidates, order, 1)


def retrieve(
    index: Any,
    queries: np.ndarray,
    k: int = 10,
    scorer: Scorer | None = None,
    query_ids: np.ndarray | None = None,
    k_rerank: int = 100,
    direction: str = "t2i",
    candidates: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """First stage top ``k_rerank`` (or the given ``candidates`` [Q, K']), re-ranked by
    ``scorer`` when given, cut to the top ``k``. queries: [Q, D] global vectors of the queries
    (unused when ``candidates`` is given). Returns (scores [Q, k], ids [Q, k])."""
    if candidates is None:
        D, I = search(index, queries, max(k, k_rerank if scorer is not None else k))  # noqa: E741
    else:
        I = np.asarray(candidates, dtype=np.int64)  # noqa: E741
        D = np.zeros(I.shape, dtype=np.float32)
    if scorer is None:
        return D[:, :k], I[:, :k]
    if query_ids is None:
        raise ValueError("retrieve: re-ranking needs the queries' cache rows (query_ids)")
    s, ids = rerank(scorer, query_ids, I, direction)
    return s[:, :k], ids[:, :k]


def positives_matrix(positives: Sequence[set[int]] | np.ndarray, n_candidates: int) -> np.ndarray:
    """list of Q sets of relevant ids, or a [Q, N] bool matrix -> [Q, N] bool matrix."""
    if isinstance(positives, np.ndarray):
        if positives.ndim != 2:
            raise ValueError(f"positives: expected a [Q, N] matrix, got {positives.shape}")
        return positives.astype(bool)
    out = np.zeros((len(positives), n_candidates), dtype=bool)
    for q, ids in enumerate(positives):
        out[q, list(ids)] = True
    return out


def recall_at_k(
    ranked_ids: np.ndarray, positives: Sequence[set[int]] | np.ndarray, ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """Recall@k: fraction of queries with at least one relevant id among their first k.

    ranked_ids: [Q, K] ids, best first (-1 = empty slot); positives: Q sets of relevant ids or a
    [Q, N] bool matrix (an image has several captions: any one counts). Returns {"R@k": value}.
    """
    ranked_ids = np.asarray(ranked_ids, dtype=np.int64)
    Q, K = ranked_ids.shape
    if isinstance(positives, np.ndarray):
        pos = positives.astype(bool)
    else:
        n = max(int(ranked_ids.max(initial=-1)) + 1, max((max(s) + 1 for s in positives if s), default=0))
        pos = positives_matrix(positives, n)
    if pos.shape[0] != Q:
        raise ValueError(f"recall_at_k: {Q} ranked queries vs {pos.shape[0]} positive sets")
    safe = np.where(ranked_ids >= 0, ranked_ids, 0)
    hit = np.take_along_axis(pos, safe, 1) & (ranked_ids >= 0)
    out = {}
    for k in ks:
        if k > K:
            raise ValueError(f"recall_at_k: R@{k} asked but only {K} ranked ids per query")
        out[f"R@{k}"] = float(hit[:, :k].any(axis=1).mean()) if Q else float("nan")
    return out


def search_text(
    cache: Any,
    index: Any,
    scorer: Scorer | None,
    query: str,
    k: int = 10,
    k_rerank: int = 100,
    late: Any = None,
    fuse: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A new caption against a cache's images: encode it with the cache's encoder (via ``scorer``
    or a cosine scorer), take the index's top ``k_rerank`` by global cosine, re-rank them with
    ``scorer`` (None: keep the first stage), keep ``k``.

    ``index`` must hold the cache's image global embeddings in row order. ``late``: a
    :class:`tflocal.retrieval.LateIndex` of ``scorer``: its late-interaction first stage replaces
    the global one (``fuse``: the global top ``k_rerank`` join its candidates), all scored
    exactly from the stored image vectors. Returns (image rows [k], scores [k], first-stage
    scores [k]: global cosine, NaN where the global first stage was not run).
    """
    if late is not None:
        extra = None
        if fuse:
            extra = search_text(cache, index, None, query, k=k_rerank, k_rerank=k_rerank)[0]
        ids, s, _ = late.search(query, k=k, extra=extra)
        return ids, s, np.full(ids.shape, np.nan, dtype=np.float32)
    if not cache.spec.joint_globals:
        raise UserError(
            f"cache {cache.path} has no comparable image and text global embeddings (encoder "
            f"{cache.spec.encoder!r}), so a global first stage cannot run: index a late-interaction head "
            "with `tflocal index` and search with --late-index, or use `tflocal serve`, which scores every image"
        )
    # the query is encoded once: its global vector feeds the first stage, the rest the re-ranker
    encoder = (scorer or CosineScorer(cache)).encoder
    needs = {"text_global", *(scorer.needs if scorer is not None else ())}
    with torch.inference_mode():
        texts = encode_text_side(encoder, [query], needs)
    if index.ntotal != cache.n_images:
        raise UserError(
            f"index holds {index.ntotal} vectors but cache {cache.path} has {cache.n_images} images: rebuild the index"
        )
    D, I = search(index, texts.text_global.numpy(), max(k, k_rerank if scorer is not None else k))  # noqa: E741
    ids, d = I[0][I[0] >= 0], D[0][I[0] >= 0]
    if scorer is None or isinstance(scorer, CosineScorer):  # the first stage is the cosine score
        return ids[:k], d[:k], d[:k]
    s = scorer.score_text_query(texts, ids)
    order = np.argsort(-s, kind="stable")[:k]
    return ids[order], s[order], d[order]
