"""Scorers: cache path vs raw path agree, and each scorer equals a direct numpy computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cache_tools.encoders.images import crop_boxes
from cache_tools.sources.records import ImageRecord, TextRecord
from cache_tools.store.reader import open_cache
from cache_tools.write.arrays import write_arrays
from cache_tools.write.writer import write_cache
from helpers.fakes import JOINT, FakeEncoder
from tflocal.errors import UserError
from tflocal.scoring.load import load_scorer
from tflocal.scoring.sgi import sgi_score


def words(caption: str) -> list[str]:
    """A stand-in concept parser: every pair of consecutive words is a segment."""
    w = caption.split()
    return [" ".join(w[i : i + 2]) for i in range(0, len(w) - 1, 2)]


@pytest.fixture(scope="module")
def real_cache(tmp_path_factory):
    """6 random images x 2 captions each, encoded by the fake encoder, with crops."""
    root = tmp_path_factory.mktemp("scoring")
    images, recs = [], []
    for i in range(6):
        rng = np.random.default_rng(i)
        img = Image.fromarray((rng.random((40 + 2 * i, 48, 3)) * 255).astype("uint8"))
        images.append(img)
        texts = [
            TextRecord(f"a red cube number {i} left of a ball"),
            TextRecord(f"a blue ball {i}", positive=0, op="swap"),
        ]
        recs.append(ImageRecord(id=f"im{i}", image=img, texts=texts))
    enc = FakeEncoder(dim=16, text_dim=16)
    write_cache(recs, enc, root / "c.h5", batch_size=4, crops=True, progress=False)
    cache = open_cache(root / "c.h5")
    yield cache, enc, images
    cache.close()


def _norm(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_cosine_equals_numpy_and_matrix(real_cache):
    cache, enc, _ = real_cache
    sc = load_scorer("cosine", cache, encoder=enc, batch_size=5)
    img = np.array([0, 3, 5, 5, 1])
    txt = np.array([0, 7, 10, 11, 2])
    a, b = _norm(cache.image_global(img)), _norm(cache.text_global(txt))
    np.testing.assert_allclose(sc.score(img, txt), (a * b).sum(-1), atol=1e-6)
    m = sc.score_matrix(np.arange(6), np.arange(12))
    full = _norm(cache.image_global(np.arange(6))) @ _norm(cache.text_global(np.arange(12))).T
    np.testing.assert_allclose(m, full, atol=1e-6)
    # the generic pairwise matrix (base class) agrees with the fast one
    generic = type(sc).__mro__[1].score_matrix(sc, np.arange(6), np.arange(12))
    np.testing.assert_allclose(generic, m, atol=1e-6)


def test_maxsim_equals_numpy(real_cache):
    cache, enc, _ = real_cache
    sc = load_scorer("maxsim", cache, encoder=enc)
    for i, t in [(0, 0), (2, 5), (4, 1)]:
        p = _norm(cache.patches([i])[0].astype(np.float64))
        q = _norm(cache.tokens([t])[0].astype(np.float64))
        expected = (q @ p.T).max(1).mean()
        assert sc.score([i], [t])[0] == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("name", ["cosine", "maxsim", "sgi:0.25", "sgi"])
def test_score_pairs_equals_cached_score(real_cache, name):
    cache, enc, images = real_cache
    # "sgi" uses the concept parser (tflocal.concepts.segments); "sgi:0.25" the word-pair stand-in
    sc = load_scorer(name, cache, encoder=enc, batch_size=4, segmenter=words if ":" in name else None)
    img = np.array([0, 1, 2, 3, 4, 5, 0, 2])
    txt = np.array([0, 3, 4, 6, 9, 10, 11, 1])
    from_cache = sc.score(img, txt)
    raw = sc.score_pairs([images[i] for i in img], [str(cache.strings[t]) for t in txt])
    np.testing.assert_allclose(raw, from_cache, atol=1e-5)
    assert np.unique(np.round(from_cache, 5)).size > 4  # not a constant


def test_sgi_equals_direct_computation(real_cache):
    cache, enc, _ = real_cache
    sc = load_scorer("sgi:0.4", cache, encoder=enc, segmenter=words)
    i, t = 3, 6
    caption = str(cache.strings[t])
    segs = words(caption)
    seg = _norm(enc.encode_texts(segs).global_.numpy().astype(np.float64))
    regions = _norm(np.concatenate([cache.image_global([i]), cache.crops_global([i])[0]]).astype(np.float64))
    seg_part = (seg @ regions.T).max(1).mean()
    glob = float((_norm(cache.image_global([i])) * _norm(cache.text_global([t]))).sum())
    assert sc.score([i], [t])[0] == pytest.approx(0.6 * seg_part + 0.4 * glob, abs=1e-5)
    assert cache.crops_global([i]).shape == (1, len(crop_boxes()), enc.global_image_dim)


def test_sgi_score_hand_values():
    seg = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 0.0]]])
    mask = torch.tensor([[True, True], [False, False]])
    regions = torch.tensor([[[1.0, 0.0], [1.0, 1.0]], [[0.0, 1.0], [0.0, 1.0]]])
    glob = torch.tensor([0.2, 0.3])
    # row 0: seg0 best = 1, seg1 best = cos((0,1),(1,1)) = 1/sqrt2 -> mean (1 + .7071)/2; row 1: no segment
    out = sgi_score(seg, mask, regions, glob, weight=0.5)
    assert out[0].item() == pytest.approx(0.5 * (1 + 2**-0.5) / 2 + 0.5 * 0.2, abs=1e-6)
    assert out[1].item() == pytest.approx(0.3)


def test_bad_names_and_inputs(tmp_path, real_cache):
    cache, enc, _ = real_cache
    with pytest.raises(UserError, match="unknown scorer 'nope'"):
        load_scorer("nope", cache)
    with pytest.raises(UserError, match="sgi:0.3"):
        load_scorer("sgi:abc", cache, encoder=enc, segmenter=words)
    sc = load_scorer("cosine", cache, encoder=enc)
    with pytest.raises(UserError, match="image rows"):
        sc.score([99], [0])
    # no crops -> SGI refuses with what to do
    p = write_arrays(
        tmp_path / "nocrops.h5",
        {"encoder": "fake:test", **JOINT},
        ["a"],
        np.zeros((1, 4, 8)),
        np.ones((1, 8)),
        ["x"],
        [np.ones((2, 8))],
        np.ones((1, 8)),
        [0],
        [-1],
    )
    with open_cache(p) as c2, pytest.raises(UserError, match="--crops"):
        load_scorer("sgi", c2, encoder=enc, segmenter=words)


def test_checkpoint_scorer_equals_head_forward(tmp_path, real_cache):
    from tflocal.models import ModelConfig, PairBatch, build_head
    from tflocal.models.checkpoint import save_checkpoint

    cache, enc, images = real_cache
    # max_text_tokens set: load_head rebuilds from the signature, which has no context_length (reported)
    cfg = ModelConfig(width=16, depth=1, heads=2, readout="summary", max_text_tokens=int(cache.attrs["context_length"]))
    head = build_head("tflocal", cfg, cache.attrs).eval()
    path = save_checkpoint(tmp_path / "run1" / "last.pt", head, "tflocal", cfg, None, cache.signature, step=3)
    sc = load_scorer(str(path), cache, encoder=enc, batch_size=3)
    assert sc.name == "run1/last" and sc.checkpoint == str(path)
    img, txt = np.array([0, 1, 4, 5, 2]), np.array([0, 5, 2, 9, 11])
    got = sc.score(img, txt)
    for b in range(len(img)):  # one pair at a time, unpadded
        tok = torch.from_numpy(cache.tokens([txt[b]])[0].astype(np.float32))[None]
        p = torch.from_numpy(cache.patches([img[b]])[0].astype(np.float32))[None]
        batch = PairBatch(
            p, torch.ones(p.shape[:2], dtype=torch.bool), tok, torch.ones(tok.shape[:2], dtype=torch.bool),
            torch.from_numpy(cache.image_global([img[b]]).astype(np.float32)),  # the read-out's global path
            torch.from_numpy(cache.text_global([txt[b]]).astype(np.float32)),
        )  # fmt: skip
        with torch.no_grad():
            assert got[b] == pytest.approx(head(batch).item(), abs=1e-5)
    raw = sc.score_pairs([images[i] for i in img], [str(cache.strings[t]) for t in txt])
    np.testing.assert_allclose(raw, got, atol=1e-5)
    # a cache from another embedding space is refused
    other = write_arrays(
        tmp_path / "other.h5",
        {"encoder": "fake:other", **JOINT},
        ["a"],
        np.zeros((1, 16, 16)),
        np.ones((1, 16)),
        ["x"],
        [np.ones((2, 16))],
        np.ones((1, 16)),
        [0],
        [-1],
    )
    with open_cache(other) as c2, pytest.raises(UserError, match="encoder"):
        load_scorer(str(path), c2)


@pytest.mark.parametrize("readout", ["segments", "summary"])
def test_head_scorer_runs_each_image_once_per_batch_with_equal_scores(tmp_path, real_cache, readout):
    """Heads that accept ``pair_image`` get one copy of each distinct image per batch (their image
    side runs once per image, not once per pair); the scores equal the per-pair expansion."""
    from tflocal.models import ModelConfig, build_head
    from tflocal.models.checkpoint import save_checkpoint

    cache, enc, _ = real_cache
    cfg = ModelConfig(
        width=16, depth=1, heads=2, readout=readout, max_text_tokens=int(cache.attrs["context_length"])
    )
    head = build_head("tflocal", cfg, cache.attrs).eval()
    path = save_checkpoint(tmp_path / "r" / "best.pt", head, "tflocal", cfg, None, cache.signature, step=1)
    sc = load_scorer(str(path), cache, encoder=enc, batch_size=5)
    assert sc.dedup_images
    img = np.array([0, 0, 1, 1, 0, 2, 2, 2, 5, 5, 5, 3])
    txt = np.array([0, 1, 2, 3, 4, 5, 4, 11, 10, 11, 0, 6])
    seen = []
    forward = sc.head.forward
    sc.head.forward = lambda b: (seen.append((b.patches.shape[0], len(b))), forward(b))[1]
    got = sc.score(img, txt)
    assert seen == [(2, 5), (2, 5), (2, 2)]  # distinct images per batch of 5 pairs
    sc.dedup_images = False
    want = sc.score(img, txt)
    assert [n for n, _ in seen[3:]] == [5, 5, 2]
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_scorer_precision_autocasts_the_head(tmp_path, real_cache):
    """``precision``: bf16 runs a trained head under autocast (scores close to fp32, not equal);
    fp16 falls back to fp32 on a CPU; the built-in scorers stay fp32; an unknown precision is
    refused by name."""
    from tflocal.models import ModelConfig, build_head
    from tflocal.models.checkpoint import save_checkpoint

    cache, enc, _ = real_cache
    cfg = ModelConfig(
        width=32, depth=1, heads=2, readout="segments", max_text_tokens=int(cache.attrs["context_length"])
    )
    torch.manual_seed(0)
    head = build_head("tflocal", cfg, cache.attrs).eval()
    path = save_checkpoint(tmp_path / "p" / "best.pt", head, "tflocal", cfg, None, cache.signature, step=1)
    img, txt = np.repeat(np.arange(6), 12), np.tile(np.arange(12), 6)
    scores = {
        p: load_scorer(str(path), cache, encoder=enc, precision=p).score(img, txt)
        for p in ("fp32", "bf16", "fp16")
    }
    np.testing.assert_array_equal(scores["fp16"], scores["fp32"])
    assert not np.array_equal(scores["bf16"], scores["fp32"])
    spread = float(scores["fp32"].std())
    assert spread > 0 and float(np.abs(scores["bf16"] - scores["fp32"]).max()) < 0.1 * spread + 0.05
    with pytest.raises(UserError, match="precision"):
        load_scorer(str(path), cache, encoder=enc, precision="int8")
    # the built-in scorers are baselines: fp32 whatever is asked (a cosine row stays the model's own)
    for name in ("cosine", "maxsim", "sgi"):
        assert load_scorer(name, cache, encoder=enc, precision="bf16").precision == "fp32"
    with pytest.raises(UserError, match="precision"):
        load_scorer("cosine", cache, precision="int8")
