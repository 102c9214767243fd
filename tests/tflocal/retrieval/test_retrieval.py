"""Retrieval: faiss first stage vs brute force, re-ranking, recall@k vs a direct count."""

from __future__ import annotations

import numpy as np
import pytest

from cache_tools.store.reader import open_cache
from cache_tools.write.arrays import write_arrays
from helpers.fakes import JOINT
from tflocal.errors import UserError
from tflocal.retrieval.first_stage import (
    build_faiss_index,
    load_index,
    recall_at_k,
    rerank,
    retrieve,
    save_index,
    search,
)
from tflocal.scoring.load import load_scorer


def brute_force(db: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    db = db / np.linalg.norm(db, axis=1, keepdims=True)
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    return np.argsort(-(q @ db.T), axis=1, kind="stable")[:, :k]


def recall_loop(ranked: np.ndarray, positives: list[set[int]], k: int) -> float:
    return sum(bool(set(r[:k].tolist()) & p) for r, p in zip(ranked, positives)) / len(positives)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """40 images, 2 captions each; captions are noisy copies of their image's global vector."""
    rng = np.random.default_rng(0)
    n, d = 40, 16
    ig = rng.normal(size=(n, d)).astype(np.float32)
    tg = np.repeat(ig, 2, axis=0) + 0.9 * rng.normal(size=(2 * n, d)).astype(np.float32)
    path = write_arrays(
        tmp_path_factory.mktemp("ret") / "c.h5",
        {"encoder": "fake:test", **JOINT},
        [f"i{i}" for i in range(n)],
        rng.normal(size=(n, 4, d)),
        ig,
        [f"t{t}" for t in range(2 * n)],
        [rng.normal(size=(3, d)).astype(np.float32) for _ in range(2 * n)],
        tg,
        np.repeat(np.arange(n), 2),
        [-1] * (2 * n),
    )
    c = open_cache(path)
    yield c
    c.close()


def test_flat_search_equals_brute_force_and_roundtrips(tmp_path, cache):
    ig, tg = cache.image_global(np.arange(40)), cache.text_global(np.arange(80))
    index = build_faiss_index(ig, "Flat")
    D, I = search(index, tg, 10)  # noqa: E741
    np.testing.assert_array_equal(I, brute_force(ig, tg, 10))
    assert np.all(np.diff(D, axis=1) <= 1e-6)
    loaded = load_index(save_index(index, tmp_path / "i.faiss"))
    np.testing.assert_array_equal(search(loaded, tg, 10)[1], I)
    with pytest.raises(UserError, match="factory string"):
        build_faiss_index(ig, "NotAnIndex")


def test_hnsw_finds_nearly_the_same(cache):
    ig, tg = cache.image_global(np.arange(40)), cache.text_global(np.arange(80))
    _, I = search(build_faiss_index(ig, "HNSW16"), tg, 5)  # noqa: E741
    assert np.mean(I[:, 0] == brute_force(ig, tg, 1)[:, 0]) > 0.9


def test_recall_matches_brute_force_count(cache):
    tg, ig = cache.text_global(np.arange(80)), cache.image_global(np.arange(40))
    # text -> image: one relevant image; image -> text: either of 2 captions
    t2i = brute_force(ig, tg, 10)
    pos_t2i = [{int(cache.image_index[t])} for t in range(80)]
    i2t = brute_force(tg, ig, 10)
    pos_i2t = [set(np.flatnonzero(cache.image_index == i).tolist()) for i in range(40)]
    for ranked, pos in [(t2i, pos_t2i), (i2t, pos_i2t)]:
        r = recall_at_k(ranked, pos)
        for k in (1, 5, 10):
            assert r[f"R@{k}"] == pytest.approx(recall_loop(ranked, pos, k))
        mat = np.zeros((len(pos), 80), bool)
        for q, p in enumerate(pos):
            mat[q, list(p)] = True
        assert recall_at_k(ranked, mat) == r
    assert 0 < recall_at_k(t2i, pos_t2i)["R@1"] < 1  # the fixture is neither trivial nor hopeless


def test_recall_hand_values():
    ranked = np.array([[3, 1, 2], [0, 2, -1], [5, 6, 7]])
    pos = [{1}, {-5, 0}, {9}]
    assert recall_at_k(ranked, pos, ks=(1, 2, 3)) == {"R@1": 1 / 3, "R@2": 2 / 3, "R@3": 2 / 3}


def test_cosine_rerank_keeps_first_stage_order(cache):
    sc = load_scorer("cosine", cache)
    index = build_faiss_index(cache.image_global(np.arange(40)), "Flat")
    q = np.arange(80)
    D, I = search(index, cache.text_global(q), 20)  # noqa: E741
    s, ids = rerank(sc, q, I, "t2i")
    np.testing.assert_array_equal(ids, I)
    np.testing.assert_allclose(s, D, atol=1e-5)
    s2, ids2 = retrieve(index, cache.text_global(q), k=10, scorer=sc, query_ids=q, k_rerank=20)
    np.testing.assert_array_equal(ids2, I[:, :10])


def test_rerank_reorders_given_candidates_and_i2t(cache):
    sc = load_scorer("maxsim", cache)
    cands = np.array([[5, 1, 9, -1], [0, 2, 3, 4]])
    s, ids = rerank(sc, np.array([0, 1]), cands, "i2t")
    for q in range(2):
        valid = cands[q][cands[q] >= 0]
        direct = sc.score(np.full(valid.size, q), valid)
        np.testing.assert_array_equal(ids[q][: valid.size], valid[np.argsort(-direct, kind="stable")])
    assert ids[0, -1] == -1 and s[0, -1] == -np.inf
    # given candidates skip the first stage
    _, got = retrieve(
        None, None, k=3, scorer=sc, query_ids=np.array([0, 1]), candidates=cands, direction="i2t"
    )
    np.testing.assert_array_equal(got, ids[:, :3])
    with pytest.raises(UserError, match="direction"):
        rerank(sc, np.array([0]), cands[:1], "x2y")
