"""The caption prior: each caption's mean score over the reference images is taken out, exactly,
and it turns a text-side comparison that a caption-only bias decides into the right one."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cache_tools.sources.records import ImageRecord, TextRecord
from cache_tools.store.reader import open_cache
from cache_tools.write.writer import write_cache
from helpers.fakes import FakeEncoder
from tflocal.errors import UserError
from tflocal.scoring.base import Scorer
from tflocal.scoring.load import load_scorer
from tflocal.scoring.prior import DEFAULT_REFERENCES, CaptionPriorScorer, parse_prior, strip_prior


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """8 random images x 2 captions each, encoded by the fake (joint-space) encoder."""
    root = tmp_path_factory.mktemp("prior")
    recs = []
    for i in range(8):
        rng = np.random.default_rng(i)
        img = Image.fromarray((rng.random((32, 32, 3)) * 255).astype("uint8"))
        texts = [TextRecord(f"a red cube number {i}"), TextRecord(f"a blue ball {i}", positive=0, op="swap")]
        recs.append(ImageRecord(id=f"im{i}", image=img, texts=texts))
    write_cache(recs, FakeEncoder(dim=16, text_dim=16), root / "c.h5", batch_size=4, progress=False)
    c = open_cache(root / "c.h5")
    yield c
    c.close()


def test_prior_names_parse_and_bad_forms_name_the_form():
    assert parse_prior("prior@runs/a/best.pt") == (DEFAULT_REFERENCES, "runs/a/best.pt")
    assert parse_prior("prior:16@sgi@runs/g.pt") == (16, "sgi@runs/g.pt")
    assert strip_prior("prior:8@maxsim") == "maxsim" and strip_prior("maxsim") == "maxsim"
    for bad in ("prior:x@maxsim", "prior:0@maxsim", "prior@", "prior:4", "priorx@maxsim"):
        with pytest.raises(UserError, match="prior:N@SCORER"):
            parse_prior(bad)


def test_prior_is_the_mean_over_the_reference_images(cache):
    base = load_scorer("cosine", cache, progress=False)
    sc = load_scorer("prior:5@cosine", cache, progress=False)
    assert isinstance(sc, CaptionPriorScorer) and sc.name == "cosine - caption prior"
    refs = sc.references
    assert refs.size == 5 and len(set(refs.tolist())) == 5 and refs.max() < cache.n_images
    img, txt = np.arange(8).repeat(2), np.tile([0, 3], 8)
    full = base.score_matrix(np.arange(cache.n_images), np.arange(cache.n_texts))  # [I, J]
    want = full[img, txt] - full[refs][:, txt].mean(axis=0)
    np.testing.assert_allclose(sc.score(img, txt), want, rtol=1e-5, atol=1e-6)
    m = sc.score_matrix(np.arange(8), np.asarray([0, 3, 5]))
    np.testing.assert_allclose(m, full[:8][:, [0, 3, 5]] - full[refs][:, [0, 3, 5]].mean(axis=0), atol=1e-6)
    # for one caption the images keep their order; the same seed draws the same references
    assert (np.argsort(m[:, 1]) == np.argsort(full[:8, 3])).all()
    assert (load_scorer("prior:5@cosine", cache, progress=False).references == refs).all()
    # more references than images: all of them
    assert load_scorer("prior:100@cosine", cache, progress=False).references.size == cache.n_images


class Biased(Scorer):
    """s(i, c) = match(i, c) + bias(c): a caption-only part larger than what the image adds."""

    name = "biased"

    def __init__(self, cache, bias):
        super().__init__(cache, progress=False)
        self.bias = bias

    def score(self, image_idx, text_idx):
        i, t = np.asarray(image_idx), np.asarray(text_idx)
        return ((i % 2) == (t % 2)).astype(np.float32) + self.bias[t]

    def score_pairs_batch(self, pairs):  # pragma: no cover - scored by rows only
        raise AssertionError


def test_prior_turns_a_biased_text_comparison_right(cache):
    bias = np.zeros(cache.n_texts, np.float32)
    bias[0] = 3.0  # caption 0 (true of the even images) wins on every image before the prior
    base = Biased(cache, bias)
    pairs = [(0, 0, 1), (1, 1, 0)]  # image, its caption, the other caption
    assert [base.score([i], [c])[0] > base.score([i], [o])[0] for i, c, o in pairs] == [True, False]
    sc = CaptionPriorScorer(base, references=8)
    assert [sc.score([i], [c])[0] > sc.score([i], [o])[0] for i, c, o in pairs] == [True, True]


def test_prior_refuses_raw_inputs_and_a_missing_cache(cache):
    sc = load_scorer("prior@cosine", cache, progress=False)
    with pytest.raises(UserError, match="cache rows only"):
        sc.score_pairs([Image.new("RGB", (8, 8))], ["a cube"])
    with pytest.raises(UserError, match="pass cache="):
        load_scorer("prior@cosine", None)


def test_an_sgi_scorer_under_a_prior_still_builds_crops():
    from tflocal.app.pipeline import _uses_sgi
    from tflocal.evaluate.config import EvalConfig

    def cfg(*names):
        return EvalConfig(bench="world3d", scorers=list(names))

    assert _uses_sgi(cfg("cosine", "prior:8@sgi:0.5@runs/g/best.pt"))
    assert not _uses_sgi(cfg("cosine", "prior@maxsim"))
