"""`tflocal search` with a tiny random open_clip cache: first stage and re-ranking vs numpy."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cache_tools.encoders import load_encoder
from cache_tools.sources.records import ImageRecord, TextRecord
from cache_tools.store.reader import open_cache
from cache_tools.write.writer import write_cache
from helpers.tiny_models import make_tiny_openclip
from tflocal.app.cli import main
from tflocal.retrieval.first_stage import build_faiss_index, search_text
from tflocal.scoring.load import load_scorer

QUERY = "a red cube left of a blue ball"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("search")
    enc = load_encoder(make_tiny_openclip(d))
    recs = []
    for i in range(12):
        img = Image.fromarray((np.random.default_rng(i).random((36, 36, 3)) * 255).astype("uint8"))
        recs.append(ImageRecord(f"img{i:02d}", img, [TextRecord(f"photo {i}")]))
    write_cache(recs, enc, d / "c.h5", batch_size=6, progress=False)
    return d / "c.h5", enc


def _norm(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_search_text_first_stage_and_maxsim_rerank(setup):
    path, enc = setup
    with open_cache(path) as cache:
        index = build_faiss_index(cache.image_global(range(cache.n_images)))
        q = enc.encode_texts([QUERY])
        cos = _norm(cache.image_global(range(12))) @ _norm(q.global_.detach().numpy())[0]
        rows, scores, first = search_text(cache, index, load_scorer("cosine", cache, encoder=enc), QUERY, k=5)
        np.testing.assert_array_equal(rows, np.argsort(-cos)[:5])
        np.testing.assert_allclose(scores, np.sort(cos)[::-1][:5], atol=1e-5)

        ms = load_scorer("maxsim", cache, encoder=enc)
        rows, scores, first = search_text(cache, index, ms, QUERY, k=4, k_rerank=8)
        cand = np.argsort(-cos)[:8]
        tok = _norm(q.tokens[0].detach().numpy().astype(np.float16).astype(np.float64))
        direct = np.array(
            [(tok @ _norm(cache.patches([i])[0].astype(np.float64)).T).max(1).mean() for i in cand]
        )
        np.testing.assert_array_equal(rows, cand[np.argsort(-direct, kind="stable")][:4])
        np.testing.assert_allclose(scores, np.sort(direct)[::-1][:4], atol=1e-5)
        np.testing.assert_allclose(first, cos[rows], atol=1e-5)


def test_search_command_prints_ranked_ids(setup, tmp_path, capsys):
    path, enc = setup
    idx = tmp_path / "i.faiss"
    assert main(["search", "--cache", str(path), "--index", str(idx), "--query", QUERY, "-k", "3"]) == 0
    assert idx.is_file()
    out = capsys.readouterr().out
    with open_cache(path) as cache:
        cos = (
            _norm(cache.image_global(range(12)))
            @ _norm(enc.encode_texts([QUERY]).global_.detach().numpy())[0]
        )
        want = [str(cache.image_ids[i]) for i in np.argsort(-cos)[:3]]
    printed = [line.split()[-1] for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert printed == want
    # second run loads the saved index, re-ranks with maxsim
    assert (
        main(["search", "--cache", str(path), "--index", str(idx), "--scorer", "maxsim", "--query", QUERY])
        == 0
    )
    assert "scorer maxsim" in capsys.readouterr().out
