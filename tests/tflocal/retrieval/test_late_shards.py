"""One late-interaction index per cache shard, searched as one: the merge is faiss's (ResultHeap,
IndexShards' successive ids), and exhaustive per-shard searches merged give exactly the top k of
one index over the whole cache, through the library and through `tflocal index --per-shard` /
`tflocal search`."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
import torch

from cache_tools.store.reader import open_cache
from cache_tools.store.shards import merge_shards
from cache_tools.write.arrays import write_arrays
from tflocal.app.cli import main
from tflocal.errors import UserError
from tflocal.models import ModelConfig, build_head
from tflocal.retrieval import LateIndex, build_late_index, open_late_index
from tflocal.retrieval.late_shards import ShardedLateIndex, build_shard_indexes, merge_topk
from tflocal.scoring.head import HeadScorer, maxsim_scorer

CAPTION = "a small red circle is left of a blue square"
WORDS = ["[CLS]", *CAPTION.split(), "[SEP]"]
SIZES = (8, 14, 6)


def random_shard(path, k: int, n: int, grid: int = 2, dim: int = 8):
    """Shard ``k``: n images of random 2x2 patches, one caption each (random tokens)."""
    rng = np.random.default_rng(k)
    patches = rng.standard_normal((n, grid * grid, dim)).astype(np.float32)
    toks = [rng.standard_normal((len(WORDS), dim)).astype(np.float32) for _ in range(n)]
    attrs = {"encoder": "synthetic:shards", "grid": [grid, grid], "context_length": 16, "space": "joint",
             "global_space": "joint"}  # fmt: skip
    return write_arrays(
        path, attrs, [f"s{k}i{i}" for i in range(n)], patches.astype(np.float16), patches.mean(1),
        [CAPTION] * n, toks, np.stack([t.mean(0) for t in toks]), np.arange(n), [-1] * n,
        token_strings=[WORDS] * n,
    )  # fmt: skip


@pytest.fixture(scope="module")
def merged(tmp_path_factory):
    d = tmp_path_factory.mktemp("shards")
    paths = [random_shard(d / f"c.shard{k:05d}-of-00003.h5", k, n) for k, n in enumerate(SIZES)]
    return merge_shards(d / "c.h5", paths)


def test_merge_topk_is_faiss_index_shards():
    """Flat inner-product shards: per-shard top k, ids offset by the shards before, merged by
    merge_topk == faiss.IndexShards(successive_ids=True) over the same shards; fewer results
    than k come back as they are."""
    rng = np.random.default_rng(0)
    d, sizes = 16, (30, 0, 45, 7)
    xs = [rng.standard_normal((n, d)).astype(np.float32) for n in sizes]
    q = rng.standard_normal((1, d)).astype(np.float32)
    shards = faiss.IndexShards(d, False, True)
    flats = []
    for x in xs:
        flat = faiss.IndexFlatIP(d)
        flat.add(x)
        flats.append(flat)
        shards.add_shard(flat)
    D, I = shards.search(q, 10)  # noqa: E741 (faiss naming)
    results, start = [], 0
    for flat, n in zip(flats, sizes):
        if n:
            s, i = flat.search(q, min(10, n))
            results.append((i[0] + start, s[0]))
        else:
            results.append((np.zeros(0, np.int64), np.zeros(0, np.float32)))
        start += n
    ids, scores = merge_topk(results, 10)
    np.testing.assert_array_equal(ids, I[0])
    np.testing.assert_array_equal(scores, D[0])
    everything = np.concatenate([x for x in xs]) @ q[0]
    np.testing.assert_array_equal(ids, np.argsort(-everything, kind="stable")[:10])
    few, few_scores = merge_topk(results[3:], 50)
    assert few.tolist() == (np.argsort(-(xs[3] @ q[0]), kind="stable") + 75).tolist()
    assert few_scores.dtype == np.float32 and np.all(np.diff(few_scores) <= 0)


@pytest.mark.parametrize("kind", ["segments", "maxsim"])
def test_shard_indexes_merged_equal_one_index_over_the_whole_cache(merged, tmp_path, kind):
    """Every centroid probed and every image a candidate: the merged shards give one index's
    rows and scores. With one image per forward (building and scoring) each image's arithmetic
    is the same in both layouts, so the scores are bit-equal; batched, the last float bit may
    move with the batch (BLAS), the rows stay."""
    cache = open_cache(merged)
    torch.manual_seed(0)
    seg = ModelConfig(width=16, depth=1, heads=2, readout="segments")
    head = build_head("tflocal", seg, cache.attrs).eval() if kind == "segments" else maxsim_scorer(cache).head
    scorer = HeadScorer(head, kind, cache, batch_size=1, progress=False)
    opts = {"n_centroids": 8, "batch_size": 1, "progress": False}
    whole = build_late_index(cache, head, tmp_path / "whole", **opts)
    built = build_shard_indexes(merged, head, tmp_path / "shards", **opts)
    assert [p.name for p in built] == ["shard00000", "shard00001", "shard00002"]
    n = cache.n_images
    one = LateIndex(whole, scorer, nprobe=8, n_candidates=n, score_bytes=1)
    many = open_late_index(str(tmp_path / "shards"), scorer, nprobe=8, n_candidates=n, score_bytes=1)
    assert isinstance(many, ShardedLateIndex) and many.n_images == n
    assert [p.store.n_images for p in many.parts] == list(SIZES)
    batched = HeadScorer(head, kind, cache, progress=False)
    one_b = LateIndex(whole, batched, nprobe=8, n_candidates=n)
    many_b = open_late_index(str(tmp_path / "shards"), batched, nprobe=8, n_candidates=n)
    pruned = open_late_index(str(tmp_path / "shards"), batched, nprobe=2, n_candidates=5)
    for t in (0, 10, 25):  # one caption of each shard
        texts = one.cached_caption(t)
        want_ids, want_scores, n_one = one.search(texts, k=10)
        got_ids, got_scores, n_many = many.search(texts, k=10)
        assert n_one == n_many == n
        np.testing.assert_array_equal(got_ids, want_ids)
        np.testing.assert_array_equal(got_scores, want_scores)
        e_ids, e_scores = many.exhaustive(texts, k=10)
        np.testing.assert_array_equal(e_ids, want_ids)
        np.testing.assert_array_equal(e_scores, want_scores)
        ids, scores, _ = many_b.search(texts, k=10)
        np.testing.assert_array_equal(ids, one_b.search(texts, k=10)[0])
        np.testing.assert_allclose(scores, want_scores, rtol=1e-6, atol=1e-6)
        # a pruned search: merged-cache rows with their exact scores, at most 5 scored a shard
        ids, scores, scored = pruned.search(texts, k=10)
        assert scored <= 15 and len(ids) == 10 and np.all(np.diff(scores) <= 0)
        np.testing.assert_allclose(scores, one.score(texts, ids), rtol=1e-5, atol=1e-5)
    # fusion: extra merged-cache rows are scored by their own shard
    ids, _, scored = pruned.search(one.cached_caption(0), k=5, extra=np.arange(n))
    assert scored == n
    np.testing.assert_array_equal(ids, one.exhaustive(one.cached_caption(0), k=5)[0])
    for index in (many, many_b, pruned):
        index.close()
    cache.close()


def test_shard_indexes_need_a_sharded_cache_and_its_own_shards(merged, tmp_path):
    one = random_shard(tmp_path / "one.h5", 7, 10)
    with open_cache(one) as cache:
        ms = maxsim_scorer(cache, progress=False)
        with pytest.raises(UserError, match="one file, not shards"):
            build_shard_indexes(one, ms.head, tmp_path / "x", progress=False)
    with open_cache(merged) as cache:
        ms = maxsim_scorer(cache, progress=False)
        build_shard_indexes(merged, ms.head, tmp_path / "idx", n_centroids=8, progress=False)
    other = merge_shards(
        tmp_path / "other.h5", [random_shard(tmp_path / f"o{k}.h5", k, 12) for k in range(3)]
    )
    with open_cache(other) as cache:
        with pytest.raises(UserError, match="rebuild it for this cache"):
            ShardedLateIndex(tmp_path / "idx", maxsim_scorer(cache, progress=False))


def test_index_per_shard_and_search_commands_match_one_index(tiny_openclip, tmp_path, capsys):
    from PIL import Image

    from cache_tools.encoders import load_encoder
    from cache_tools.sources.records import ImageRecord, TextRecord
    from cache_tools.write.writer import write_cache

    enc = load_encoder(tiny_openclip)
    paths = []
    for k in range(2):
        recs = []
        for i in range(6 * k, 6 * k + 6):
            img = Image.fromarray((np.random.default_rng(i).random((36, 36, 3)) * 255).astype("uint8"))
            recs.append(ImageRecord(f"img{i:02d}", img, [TextRecord(f"photo {i}")]))
        paths.append(
            write_cache(
                recs, enc, tmp_path / f"c.shard{k:05d}-of-00002.h5", batch_size=6, progress=False
            ).path
        )
    path = merge_shards(tmp_path / "c.h5", paths)
    index = ["index", "--cache", str(path), "--scorer", "maxsim", "--centroids", "8"]
    assert main([*index, "--out", str(tmp_path / "whole")]) == 0
    assert main([*index, "--out", str(tmp_path / "sharded"), "--per-shard"]) == 0
    assert "indexed 2 shard(s)" in capsys.readouterr().out
    ranked = {}
    for name in ("whole", "sharded"):
        argv = ["search", "--cache", str(path), "--scorer", "maxsim", "--late-index", str(tmp_path / name)]
        assert main([*argv, "--query", "a red cube", "-k", "5", "--nprobe", "8", "--candidates", "12"]) == 0
        out = capsys.readouterr().out
        ranked[name] = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert len(ranked["whole"]) == 5 and ranked["sharded"] == ranked["whole"]
