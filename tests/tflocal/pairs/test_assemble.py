"""One path from records to a PairBatch: every scorer gives the same scores for the same pairs
whether they are read from a cache or encoded on the fly from PIL images and strings."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cache_tools.sources.records import ImageRecord, TextRecord
from cache_tools.store.reader import open_cache
from cache_tools.write.writer import write_cache
from helpers.fakes import FakeEncoder
from tflocal.models import ModelConfig, build_head
from tflocal.models.checkpoint import save_checkpoint
from tflocal.pairs.assemble import from_cache, from_raw
from tflocal.scoring.load import load_scorer

CAPTIONS = [
    "a red circle left of a blue square",
    "a small green triangle above a large red circle",
    "a blue square",
]


@pytest.fixture(scope="module")
def cache_and_raw(tmp_path_factory):
    """5 random images x (2 captions + 1 swap negative), cached by the fake encoder with crops."""
    root = tmp_path_factory.mktemp("features")
    images, recs = [], []
    for i in range(5):
        rng = np.random.default_rng(10 + i)
        img = Image.fromarray((rng.random((36 + 4 * i, 44, 3)) * 255).astype("uint8"))
        images.append(img)
        texts = [TextRecord(CAPTIONS[i % 3]), TextRecord(CAPTIONS[(i + 1) % 3] + f" number {i}")]
        texts.append(
            TextRecord("a blue circle left of a red square", positive=0, op="swap", kind="attribute")
        )
        recs.append(ImageRecord(id=f"im{i}", image=img, texts=texts))
    enc = FakeEncoder(dim=16, text_dim=16)
    write_cache(recs, enc, root / "c.h5", batch_size=3, crops=True, progress=False)
    cache = open_cache(root / "c.h5")
    yield root, cache, enc, images
    cache.close()


HEADS = [
    ("global", {}),
    ("tflocal", {"readout": "summary"}),
    ("tflocal", {"readout": "summary+align"}),
    ("tflocal", {"readout": "segments"}),
    ("tflocal-segments", {"depth": 2}),
]


@pytest.mark.parametrize(
    "name", ["cosine", "maxsim", "sgi", "sgi:0.5", *[f"{h}/{i}" for i, (h, _) in enumerate(HEADS)]]
)
def test_every_scorer_scores_cache_and_raw_inputs_alike(cache_and_raw, name):
    root, cache, enc, images = cache_and_raw
    if "/" in name:  # a trained-head checkpoint (random weights: the read path is what is tested)
        head_name, i = name.split("/")
        torch.manual_seed(0)
        cfg = ModelConfig(**{"width": 16, "depth": 1, "heads": 2, **HEADS[int(i)][1]})
        head = build_head(head_name, cfg, cache.spec)
        name = str(
            save_checkpoint(root / f"ckpt{i}" / "last.pt", head, head_name, cfg, None, cache.signature, 1)
        )
    sc = load_scorer(name, cache, encoder=enc, batch_size=4)
    img = np.array([0, 1, 2, 3, 4, 0, 2, 4, 1])
    txt = np.array([0, 4, 7, 9, 13, 2, 5, 14, 1])
    cached = sc.score(img, txt)
    raw = sc.score_pairs([images[i] for i in img], [str(cache.strings[t]) for t in txt])
    np.testing.assert_allclose(raw, cached, rtol=0, atol=1e-6)
    assert np.unique(np.round(cached, 5)).size > 3  # the scores differ between pairs


def test_cache_and_raw_pair_batches_hold_the_same_values(cache_and_raw):
    _, cache, enc, images = cache_and_raw
    needs = ("patches", "patch_mask", "tokens", "token_mask", "image_global", "text_global",
             "segments", "relation_tokens", "relations", "crops", "captions")  # fmt: skip
    img, txt = np.array([3, 0, 3]), np.array([9, 1, 10])
    a = from_cache(cache, img, txt, needs)
    b = from_raw(enc, [images[i] for i in img], [str(cache.strings[t]) for t in txt], needs, cache.crop_boxes)
    for field in ("patches", "patch_mask", "tokens", "token_mask", "image_global", "text_global",
                  "segments", "relation_tokens", "relations"):  # fmt: skip
        x, y = getattr(a.batch, field), getattr(b.batch, field)
        assert x.dtype == y.dtype and x.shape == y.shape, field
        assert torch.equal(x, y), field
    assert torch.allclose(a.crops, b.crops, atol=1e-6) and a.captions == b.captions


@pytest.mark.parametrize("n_tokens", [None, 4, 12])
def test_layouts_from_cache_match_parsing_every_time(cache_and_raw, n_tokens):
    """The per-row layout memo gives exactly layout_tensors' tensors, first call and memo hits,
    with repeated rows and any padding width."""
    from tflocal.concepts.layout import layout_from_cache
    from tflocal.pairs.assemble import _LAYOUTS, layouts_from_cache

    _, cache, _, _ = cache_and_raw
    rows = np.array([3, 0, 3, 7, 1, 14, 0])
    _LAYOUTS.pop(cache, None)
    want = layout_from_cache(cache, rows, n_tokens)
    assert want["segments"].any()  # the captions parse into objects
    for _ in range(2):
        got = layouts_from_cache(cache, rows, n_tokens)
        assert got.keys() == want.keys()
        for k in want:
            assert got[k].dtype == want[k].dtype and torch.equal(got[k], want[k]), k
    assert set(_LAYOUTS[cache]) == set(rows.tolist())


def test_one_caption_against_many_images_is_a_view_with_the_gathered_values(cache_and_raw):
    """A single caption paired with N images: its text fields are stride-0 views over the N pairs,
    equal to the gathered copies that several captions get."""
    from tflocal.pairs.assemble import images_from_cache, pair_batch, texts_from_cache

    _, cache, _, _ = cache_and_raw
    needs = ("patches", "patch_mask", "tokens", "token_mask", "image_global", "text_global",
             "segments", "relation_tokens", "relations")  # fmt: skip
    images = images_from_cache(cache, np.arange(4), needs)
    one = texts_from_cache(cache, np.array([9]), needs)
    two = texts_from_cache(cache, np.array([9, 1]), needs)
    pair_image = torch.tensor([0, 1, 2, 3, 1])
    a = pair_batch(images, one, pair_image, torch.zeros(5, dtype=torch.long), needs)
    b = pair_batch(images, two, pair_image, torch.zeros(5, dtype=torch.long), needs)
    for field in ("tokens", "token_mask", "text_global", "segments", "relation_tokens", "relations"):
        x, y = getattr(a, field), getattr(b, field)
        assert x.shape == y.shape and x.shape[0] == 5 and torch.equal(x, y), field
        assert x.stride(0) == 0 and y.stride(0) != 0, field


@pytest.mark.parametrize("form", ["mlp", "dual"])
def test_one_caption_runs_its_text_side_once_and_scores_as_the_copies(cache_and_raw, form):
    """The segments read-out on a query's pairs (stride-0 text fields): its text tower and phrase
    vectors are computed on one row, and the scores equal those of the gathered copies."""
    from tflocal.models import ModelConfig, build_head
    from tflocal.pairs.assemble import images_from_cache, pair_batch, texts_from_cache

    _, cache, _, _ = cache_and_raw
    torch.manual_seed(0)
    cfg = ModelConfig(width=32, depth=1, heads=2, readout="segments", global_form=form)
    head = build_head("tflocal", cfg, cache.attrs).eval()
    needs = tuple(head.needs)
    images = images_from_cache(cache, np.arange(4), needs)
    pair_image = torch.tensor([0, 1, 2, 3, 1])
    rows_seen = []
    block = head.text_blocks[0]  # its caption rows, as the text side runs it (packed)
    packed = block.forward_packed

    def spy(x, real, key_mask):
        rows_seen.append(key_mask.shape[0])
        return packed(x, real, key_mask)

    block.forward_packed = spy
    with torch.inference_mode():
        for rows in ([9], [9, 1]):
            texts = texts_from_cache(cache, np.array(rows), needs)
            batch = pair_batch(images, texts, pair_image, torch.zeros(5, dtype=torch.long), needs)
            if len(rows) == 1:
                assert batch.tokens.stride(0) == 0
                one = head(batch)
            else:
                copies = head(batch)
    assert rows_seen == [1, 5]
    torch.testing.assert_close(one, copies, atol=1e-5, rtol=1e-5)
