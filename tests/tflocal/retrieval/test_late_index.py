"""tflocal.retrieval: stored image vectors score exactly like the head, the index refuses another
checkpoint, and the late-interaction first stage finds brute force's top k on a small corpus."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from cache_tools.store.reader import open_cache
from cache_tools.write.arrays import write_arrays
from tflocal.app.cli import main
from tflocal.errors import UserError
from tflocal.models import ModelConfig, build_head
from tflocal.models.checkpoint import save_checkpoint
from tflocal.pairs.assemble import from_cache
from tflocal.retrieval import LateIndex, VectorStore, build_late_index
from tflocal.retrieval.compress import train_codec
from tflocal.scoring.head import HeadScorer, checkpoint_scorer, maxsim_scorer

CAPTION = "a small red circle is left of a blue square"
WORDS = ["[CLS]", *CAPTION.split(), "[SEP]"]


def clustered_cache(path, n=300, grid=4, dim=16, n_concepts=40, seed=0):
    """Images made of concept prototypes (+ noise); each caption's tokens are noisy copies of
    three patches of its image, so late interaction has structure to find."""
    rng = np.random.default_rng(seed)
    proto = rng.standard_normal((n_concepts, dim)).astype(np.float32)
    P = grid * grid
    concept = rng.integers(0, n_concepts, (n, P))
    patches = proto[concept] + 0.4 * rng.standard_normal((n, P, dim)).astype(np.float32)
    glob = patches.mean(1)
    toks, strings = [], []
    for i in range(n):
        pick = rng.choice(P, 3, replace=False)
        t = np.repeat(patches[i, pick], 4, axis=0)[: len(WORDS)]
        toks.append((t + 0.3 * rng.standard_normal(t.shape)).astype(np.float32))
        strings.append(WORDS)
    attrs = {
        "encoder": "synthetic:index",
        "grid": [grid, grid],
        "context_length": 16,
        "space": "joint",
        "global_space": "joint",
    }
    write_arrays(
        path,
        attrs,
        [f"im{i}" for i in range(n)],
        patches.astype(np.float16),
        glob,
        [CAPTION] * n,
        toks,
        glob + 0.1,
        np.arange(n),
        [-1] * n,
        token_strings=strings,
    )
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("index")
    cache = open_cache(clustered_cache(d / "c.h5"))
    torch.manual_seed(0)
    seg = build_head(
        "tflocal", ModelConfig(width=32, depth=1, heads=2, readout="segments"), cache.attrs
    ).eval()
    yield d, cache, seg
    cache.close()


def _direct(head, cache, images, text_row):
    """The head's own forward on cache patches (image tower recomputed)."""
    rows = np.asarray(images)
    pairs = from_cache(cache, rows, np.full(rows.size, text_row), head.needs)
    with torch.inference_mode():
        return head(pairs.batch).float().numpy()


@pytest.mark.parametrize("storage", ["float32", "float16"])
def test_stored_vectors_score_like_the_head(corpus, storage):
    d, cache, seg = corpus
    store = build_late_index(cache, seg, d / f"seg_{storage}", storage=storage, n_centroids=16, progress=False)
    late = LateIndex(store, HeadScorer(seg, "seg", cache, progress=False))
    rows = np.arange(0, 60)
    for t in (0, 7):
        got = late.score(late.cached_caption(t), rows)
        want = _direct(seg, cache, rows, t)
        # float32: same arithmetic up to summation order. float16: unit region vectors rounded
        # to 11 significant bits move each cosine by <= sqrt(d) * 2**-11 * |phrase| ~ 3e-3, times
        # the head's scale (10) for the object term, plus the relation term's soft-argmax shift
        atol = 1e-4 if storage == "float32" else 5e-2
        np.testing.assert_allclose(got, want, atol=atol, rtol=0)
        assert np.abs(got - want).max() > 0 or storage == "float32"


def test_a_separable_global_path_is_stored_and_scores_like_the_head(corpus, tmp_path):
    """global_form dual: the index stores the global path's image side ([N, d] globals.npy,
    counted in its bytes per image) and scores from it equal the head's own forward; the
    stored rows are what is read (zeroed, the scores move); the mlp form stores none."""
    d, cache, seg = corpus
    torch.manual_seed(1)
    cfg = ModelConfig(width=32, depth=1, heads=2, readout="segments", global_form="dual")
    dual = build_head("tflocal", cfg, cache.attrs).eval()
    store = build_late_index(cache, dual, tmp_path / "dual", storage="float32", n_centroids=16, progress=False)
    plain = build_late_index(cache, seg, tmp_path / "mlp", storage="float32", n_centroids=16, progress=False)
    assert np.load(tmp_path / "dual" / "globals.npy").shape == (cache.n_images, 32)
    assert not (tmp_path / "mlp" / "globals.npy").exists() and plain.global_vectors(np.arange(3)) is None
    assert store.bytes_per_image() - plain.bytes_per_image() >= 32 * 4
    late = LateIndex(store, HeadScorer(dual, "dual", cache, progress=False))
    rows = np.arange(0, 60)
    for t in (3, 11):
        got = late.score(late.cached_caption(t), rows)
        np.testing.assert_allclose(got, _direct(dual, cache, rows, t), atol=1e-4, rtol=0)
    stored = store.global_vectors(np.arange(cache.n_images))
    q = torch.randn(32)
    exact = np.argsort(-(stored @ q).numpy(), kind="stable")[:10]
    assert len(set(store.search_globals(q, 10)) & set(exact)) >= 9  # a bfloat16 scan, then exact scores
    store.global_vectors = lambda r: torch.zeros(len(r), 32)  # what the scores read
    moved = late.score(late.cached_caption(3), rows)
    assert np.abs(moved - _direct(dual, cache, rows, 3)).max() > 1e-2


def test_score_keeps_the_order_asked_across_batches(corpus):
    """Rows in any order (repeats too) score as their sorted reads, one forward or several,
    and with the caption's text states computed once and passed in."""
    d, cache, seg = corpus
    store = build_late_index(cache, seg, d / "seg_order", storage="float16", n_centroids=16, progress=False)
    one = LateIndex(store, HeadScorer(seg, "seg", cache, progress=False))
    many = LateIndex(store, HeadScorer(seg, "seg", cache, batch_size=7, progress=False), score_bytes=1)
    assert one.score_batch >= cache.n_images and many.score_batch == 7
    rows = np.random.default_rng(0).permutation(cache.n_images)[:50]
    rows = np.concatenate([rows, rows[:5]])
    texts = one.cached_caption(4)
    want = _direct(seg, cache, rows, 4)
    for late in (one, many):
        got = late.score(texts, rows)
        np.testing.assert_allclose(got, want, atol=5e-2, rtol=0)
        np.testing.assert_allclose(got[-5:], got[:5], atol=1e-5, rtol=0)
        np.testing.assert_allclose(late.score(texts, rows, late.text_states(texts)), got, atol=1e-6)
    np.testing.assert_allclose(one.score(texts, rows), many.score(texts, rows), atol=1e-5)


def test_maxsim_from_stored_vectors_and_residual_codes(corpus):
    d, cache, _ = corpus
    ms = maxsim_scorer(cache, progress=False)
    store = build_late_index(cache, ms.head, d / "ms", storage="float32", n_centroids=16, progress=False)
    late = LateIndex(store, ms)
    rows = np.arange(cache.n_images)
    np.testing.assert_allclose(
        late.score(late.cached_caption(3), rows), ms.score(rows, np.full(rows.size, 3)), atol=1e-5
    )
    packed = build_late_index(
        cache, ms.head, d / "ms2", storage="residual", nbits=2, n_centroids=16, progress=False
    )
    assert packed.meta["storage"] == "residual" and not (d / "ms2" / "vectors.npy").exists()
    # 16-d vectors: 4 bytes of centroid id + 16 * 2 bits = 8 bytes of residual per vector
    assert packed.codec.bytes_per_vector() == 8
    approx = LateIndex(packed, ms).score(late.cached_caption(3), rows)
    exact = late.score(late.cached_caption(3), rows)
    assert np.corrcoef(approx, exact)[0, 1] > 0.9


def test_residual_codec_reconstructs_better_than_centroids():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4000, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    err = {}
    for nbits in (0, 1, 2):
        c = train_codec(x, 64, nbits=nbits)
        codes, res = c.encode(x)
        assert res.shape == (4000, 32 * nbits // 8)
        dec = c.decode(codes, res)
        err[nbits] = float(np.linalg.norm(dec - x, axis=1).mean())
        if nbits:  # the byte-table decoder equals unpacking bit by bit
            bits = np.unpackbits(res, axis=1).reshape(4000, 32, nbits)
            bucket = (bits * (1 << np.arange(nbits - 1, -1, -1))).sum(-1)
            slow = c.centroids[codes] + c.weights[bucket]
            np.testing.assert_allclose(dec, slow / np.linalg.norm(slow, axis=1, keepdims=True), atol=1e-6)
    assert err[2] < err[1] < err[0]


def test_index_refuses_another_checkpoint_and_another_cache(corpus, tmp_path):
    d, cache, seg = corpus
    store = build_late_index(cache, seg, tmp_path / "idx", n_centroids=16, progress=False)
    other = build_head("tflocal", ModelConfig(width=32, depth=1, heads=2, readout="segments"), cache.attrs)
    other.load_state_dict(seg.state_dict())
    LateIndex(store, HeadScorer(other, "same weights", cache, progress=False))  # same weights: accepted
    with torch.no_grad():
        other.scale += 1e-3  # one weight differs: another checkpoint
    with pytest.raises(UserError, match="weights differ"):
        LateIndex(store, HeadScorer(other, "other", cache, progress=False))
    small = open_cache(clustered_cache(tmp_path / "small.h5", n=50))
    with pytest.raises(UserError, match="rebuild it for this cache"):
        LateIndex(store, HeadScorer(seg, "seg", small, progress=False))
    joint = build_head("tflocal", ModelConfig(width=32, depth=1, heads=2, readout="summary"), cache.attrs)
    with pytest.raises(UserError, match="re-ranker"):
        build_late_index(cache, joint, tmp_path / "j", progress=False)
    small.close()


def aligned(seg):
    """The segments head with its text tower a copy of its image tower, so phrases and regions
    share a space as after training (random towers make the object term noise)."""
    aligned = copy.deepcopy(seg)
    with torch.no_grad():
        aligned.token_in.load_state_dict(seg.patch_in.state_dict())
        aligned.text_out.load_state_dict(seg.image_out.state_dict())
        for a, b in zip(aligned.text_blocks, seg.image_blocks):
            a.load_state_dict(b.state_dict())
    return aligned


def test_late_first_stage_recall_against_brute_force(corpus):
    d, cache, seg = corpus
    # segments: the relation term is invisible to the centroid stages, so more images are scored
    # exactly (120 of 300); maxsim: 60 of 300
    for head, name, n_cand, want_recall in (
        (aligned(seg), "seg", 120, 0.9),
        (maxsim_scorer(cache).head, "maxsim", 60, 0.95),
    ):
        store = build_late_index(cache, head, d / f"recall_{name}", n_centroids=32, progress=False)
        late = LateIndex(store, HeadScorer(head, name, cache, progress=False), nprobe=6, n_candidates=n_cand)
        hits = []
        for t in range(0, cache.n_texts, 10):
            texts = late.cached_caption(t)
            want, _ = late.exhaustive(texts, k=10)
            got, scores, n_scored = late.search(texts, k=10)
            assert n_scored <= n_cand < cache.n_images
            # the same head on the same rows; the batch differs (N candidates vs 10), and the global
            # path's MLP runs batched BLAS whose last float bit depends on the batch size
            np.testing.assert_allclose(scores, late.score(texts, got), rtol=1e-6, atol=1e-6)
            hits.append(len(set(got) & set(want)) / 10)
        assert np.mean(hits) >= want_recall, (name, np.mean(hits))
        # fusion: extra candidates are scored exactly too
        got, _, n = late.search(late.cached_caption(0), k=5, extra=np.arange(cache.n_images))
        np.testing.assert_array_equal(got, late.exhaustive(late.cached_caption(0), k=5)[0])


def test_index_command_records_its_checkpoint(corpus, tmp_path):
    d, cache, seg = corpus
    ckpt = save_checkpoint(tmp_path / "seg.pt", seg, "tflocal-segments", seg.cfg, None, cache.signature, 0)
    out = tmp_path / "idx"
    argv = [
        "index",
        "--cache",
        str(cache.path),
        "--scorer",
        str(ckpt),
        "--out",
        str(out),
        "--centroids",
        "16",
    ]
    assert main(argv) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["checkpoint"] == str(ckpt) and meta["n_images"] == cache.n_images
    LateIndex(VectorStore(out), checkpoint_scorer(str(ckpt), cache, progress=False))  # accepted
    assert main([*argv[:4], "cosine", *argv[5:]]) == 2  # no late-interaction image side


def test_search_command_uses_the_late_index(tiny_openclip, tmp_path, capsys):
    from PIL import Image

    from cache_tools.encoders import load_encoder
    from cache_tools.sources.records import ImageRecord, TextRecord
    from cache_tools.write.writer import write_cache

    enc = load_encoder(tiny_openclip)
    recs = []
    for i in range(12):
        img = Image.fromarray((np.random.default_rng(i).random((36, 36, 3)) * 255).astype("uint8"))
        recs.append(ImageRecord(f"img{i:02d}", img, [TextRecord(f"photo {i}")]))
    path = tmp_path / "c.h5"
    write_cache(recs, enc, path, batch_size=6, progress=False)
    out = tmp_path / "ms.index"
    assert (
        main(["index", "--cache", str(path), "--scorer", "maxsim", "--out", str(out), "--centroids", "8"])
        == 0
    )
    capsys.readouterr()
    query = "a red cube left of a blue ball"
    argv = ["search", "--cache", str(path), "--scorer", "maxsim", "--late-index", str(out), "--query", query]
    assert main([*argv, "-k", "3", "--nprobe", "0"]) == 2
    assert "nprobe, candidates and refine must be >= 1" in capsys.readouterr().err
    assert main([*argv, "-k", "3", "--fuse", "--nprobe", "8", "--candidates", "12", "--refine", "1"]) == 0
    printed = capsys.readouterr().out
    assert "late-interaction first stage + global top 100" in printed
    ranked = [line.split() for line in printed.splitlines() if line.strip()[:1].isdigit()]
    assert ranked and all(r[2] == "-" for r in ranked)  # no global cosine: the late stage ran first
    got = [r[-1] for r in ranked]
    with open_cache(path) as cache:
        ms = maxsim_scorer(cache, encoder=enc, progress=False)
        want = np.argsort(-ms.score_text_query(query, np.arange(12)), kind="stable")[:3]
        assert got == [str(cache.image_ids[i]) for i in want]


def test_too_long_caption_gets_the_scorers_one_line_message(corpus):
    """A caption with more tokens than the head's max_text_tokens: the late index says what
    HeadScorer says (scorer name, token counts, the fix), not the head's internal ValueError."""
    d, cache, _ = corpus
    torch.manual_seed(0)
    cfg = ModelConfig(width=16, depth=1, heads=2, readout="segments", max_text_tokens=8)
    short = build_head("tflocal", cfg, cache.attrs).eval()
    scorer = HeadScorer(short, "short", cache, progress=False)
    late = LateIndex(build_late_index(cache, short, d / "short", n_centroids=8, progress=False), scorer)
    with pytest.raises(UserError) as want:
        scorer.score([0], [0])
    texts = late.cached_caption(0)
    assert int(texts.token_mask.sum()) == len(WORDS) > 8
    for call in (
        lambda: late.search(texts, k=3),
        lambda: late.score(texts, np.arange(5)),
        lambda: late.exhaustive(texts, k=3),
        lambda: late.query_vectors(texts),
    ):
        with pytest.raises(UserError) as got:
            call()
        assert str(got.value) == str(want.value)
        assert (
            "\n" not in str(got.value) and "'short'" in str(got.value) and "max_text_tokens" in str(got.value)
        )


def test_late_index_runs_the_head_in_the_scorers_precision(corpus):
    """A bf16 scorer: text tower, query vectors and exact scores under bf16 autocast, close to
    fp32 (not equal), and the late stage still finds fp32's best images."""
    d, cache, seg = corpus
    head = aligned(seg)
    store = build_late_index(cache, head, d / "seg_bf16", n_centroids=32, progress=False)
    fp32 = LateIndex(store, HeadScorer(head, "seg", cache, progress=False), nprobe=6, n_candidates=120)
    bf16 = LateIndex(
        store, HeadScorer(head, "seg", cache, progress=False, precision="bf16"), nprobe=6, n_candidates=120
    )
    # its forwards run a bf16 copy of the weights (cast once); the float32 head is what the index checks
    assert bf16.head is not bf16.scorer.head and bf16.scorer.head is head
    assert {p.dtype for p in bf16.head.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in head.parameters()} == {torch.float32}
    assert HeadScorer(head, "seg", cache, progress=False, precision="fp16").run_head is head  # fp32 on a CPU
    rows = np.arange(cache.n_images)
    hits = []
    for t in (0, 10, 20):
        texts = fp32.cached_caption(t)
        a, b = fp32.score(texts, rows), bf16.score(texts, rows)
        assert b.dtype == np.float32 and not np.array_equal(a, b)
        assert np.abs(a - b).max() < 0.1 * a.std() + 0.05
        got, _, _ = bf16.search(texts, k=10)
        hits.append(len(set(got) & set(fp32.exhaustive(texts, k=10)[0])) / 10)
    assert np.mean(hits) >= 0.8


def test_an_index_built_before_global_form_existed_stays_valid(corpus):
    """A config key added later enters the fingerprint only away from the value older heads had."""
    from tflocal.retrieval.head_sides import fingerprint

    _, _, seg = corpus
    old = copy.deepcopy(seg)
    del old.cfg.__dict__["global_form"]  # the config as it was before the key existed
    assert fingerprint(old) == fingerprint(seg)
    dual = copy.deepcopy(seg)
    dual.cfg.global_form = "dual"
    assert fingerprint(dual) != fingerprint(seg)


def test_late_stage_searches_a_separable_global_term_exactly(corpus, tmp_path):
    """global_form dual: phrase-vector candidates cannot see the global term, so the images of
    best global term (a scan of the stored [N, d] vectors) join the pool and the cut to
    n_candidates ranks the head's mix of centroid score and exact global term."""
    d, cache, _ = corpus
    torch.manual_seed(2)
    cfg = ModelConfig(width=32, depth=1, heads=2, readout="segments", global_form="dual")
    dual = aligned(build_head("tflocal", cfg, cache.attrs).eval())
    store = build_late_index(cache, dual, tmp_path / "dual", n_centroids=32, progress=False)

    def recall(global_candidates):
        scorer = HeadScorer(dual, "dual", cache, progress=False)
        late = LateIndex(store, scorer, nprobe=6, n_candidates=60, global_candidates=global_candidates)
        hits = []
        for t in (0, 10, 20, 30, 40, 50):
            texts = late.cached_caption(t)
            got, _, _ = late.search(texts, k=10)
            hits.append(len(set(got) & set(late.exhaustive(texts, k=10)[0])) / 10)
        return float(np.mean(hits))

    # measured: 0 (phrase candidates only) 0.42; 15, 30 (the default, n_candidates // 2), 60: 1.0.
    # Union alone, without the mixed cut (the best 30 by the global term added to the 60): 0.93
    without, default = recall(0), recall(None)
    assert default >= 0.9 and default > without
