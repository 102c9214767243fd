"""SGI over towers whose global spaces are not aligned: each (segment, region) and the (image,
caption) global pair scored by a trained global head (``sgi@CKPT`` / ``sgi:W@CKPT``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cache_tools.encoders.base import TextOutput
from cache_tools.sources.records import ImageRecord, TextRecord
from cache_tools.store.reader import open_cache
from cache_tools.write.writer import write_cache
from helpers.fakes import FakeEncoder
from tflocal.errors import UserError
from tflocal.evaluate.config import EvalConfig
from tflocal.models import ModelConfig, PairBatch, build_head
from tflocal.models.checkpoint import save_checkpoint
from tflocal.scoring.load import is_sgi, load_scorer


class UnalignedEncoder(FakeEncoder):
    """The fake encoder with two unaligned towers: image globals [16] (mean of patches), text
    globals [12] (mean of the caption's tokens), ``global_space="none"``."""

    def __init__(self) -> None:
        super().__init__(dim=16, text_dim=12)
        self.name = "fake:unaligned"
        self.space, self.global_space = "hidden", "none"
        self.global_text_dim = 12

    def encode_texts(self, texts: list[str]) -> TextOutput:
        out = super().encode_texts(texts)
        return TextOutput(
            out.tokens, out.token_strings, torch.stack([t.mean(0) for t in out.tokens]), out.truncated
        )


def words(caption: str) -> list[str]:
    """A stand-in concept parser: every pair of consecutive words is a segment; 'none' has none."""
    if caption.startswith("none"):
        return []
    w = caption.split()
    return [" ".join(w[i : i + 2]) for i in range(0, len(w) - 1, 2)]


def _records(n: int) -> tuple[list[ImageRecord], list[Image.Image]]:
    images, recs = [], []
    for i in range(n):
        img = Image.fromarray((np.random.default_rng(i).random((36, 40, 3)) * 255).astype("uint8"))
        images.append(img)
        texts = [TextRecord(f"a red cube left of ball {i}"), TextRecord("none at all", positive=0, op="swap")]
        recs.append(ImageRecord(id=f"im{i}", image=img, texts=texts))
    return recs, images


@pytest.fixture(scope="module")
def unaligned(tmp_path_factory):
    """(cache with crops, cache without crops, encoder, images, global-head ckpt, tflocal-head ckpt)."""
    root = tmp_path_factory.mktemp("sgi_head")
    enc = UnalignedEncoder()
    recs, images = _records(4)
    write_cache(recs, enc, root / "crops.h5", batch_size=4, crops=True, progress=False)
    write_cache(_records(2)[0], enc, root / "plain.h5", batch_size=4, crops=False, progress=False)
    cache = open_cache(root / "crops.h5")
    torch.manual_seed(5)
    cfg = ModelConfig(width=8, depth=1, global_mlp_ratio=2.0)
    head = build_head("global", cfg, cache.attrs).eval()
    ckpt = save_checkpoint(root / "global" / "best.pt", head, "global", cfg, None, cache.signature, step=1)
    tcfg = ModelConfig(
        width=8, depth=1, heads=2, readout="summary", max_text_tokens=int(cache.attrs["context_length"])
    )
    other = build_head("tflocal", tcfg, cache.attrs).eval()
    tflocal_ckpt = save_checkpoint(
        root / "tfl" / "best.pt", other, "tflocal", tcfg, None, cache.signature, step=1
    )
    plain = open_cache(root / "plain.h5")
    yield cache, plain, enc, images, head, ckpt, tflocal_ckpt
    cache.close()
    plain.close()


def _head(head, image_global: np.ndarray, text_global: np.ndarray) -> float:
    """The head's score of one (image global [D_gi], text global [D_gt]) pair."""
    batch = PairBatch(
        image_global=torch.as_tensor(image_global, dtype=torch.float32)[None],
        text_global=torch.as_tensor(text_global, dtype=torch.float32)[None],
    )
    with torch.no_grad():
        return float(head(batch)[0])


def test_sgi_with_head_equals_hand_computation(unaligned):
    cache, _, enc, _, head, ckpt, _ = unaligned
    assert not cache.spec.joint_globals and cache.spec.global_image_dim != cache.spec.global_text_dim
    sc = load_scorer(f"sgi:0.4@{ckpt}", cache, encoder=enc, segmenter=words, batch_size=3)
    assert sc.name == "sgi:0.4@global/best" and sc.checkpoint == str(ckpt)
    img = np.array([0, 1, 2, 3, 3, 0])
    txt = np.array([0, 2, 4, 6, 0, 1])  # text 1: 'none at all', no segment -> the head's global score
    got = sc.score(img, txt)
    seg_part = {}
    for b, (i, t) in enumerate(zip(img, txt)):
        caption = str(cache.strings[t])
        glob = _head(head, cache.image_global([i])[0], cache.text_global([t])[0])
        segs = words(caption)
        if not segs:
            assert got[b] == pytest.approx(glob, abs=1e-5)
            continue
        regions = np.concatenate([cache.image_global([i]), cache.crops_global([i])[0]])  # [1 + C, 16]
        seg_emb = enc.encode_texts(segs).global_.numpy()  # [S, 12]
        best = [max(_head(head, r, s) for r in regions) for s in seg_emb]
        seg_part[b] = float(np.mean(best))
        assert got[b] == pytest.approx(0.6 * float(np.mean(best)) + 0.4 * glob, abs=1e-5)
    assert np.unique(np.round(got, 5)).size > 3  # not a constant
    # weight 0: the segment part alone
    only = load_scorer(f"sgi@{ckpt}", cache, encoder=enc, segmenter=words)
    assert only.name == "sgi@global/best"
    assert (
        only.score([2], [4])[0] == pytest.approx(seg_part[2], abs=1e-5) and abs(seg_part[2] - got[2]) > 1e-4
    )


def test_sgi_with_head_raw_inputs_equal_cached(unaligned):
    cache, _, enc, images, _, ckpt, _ = unaligned
    sc = load_scorer(f"sgi:0.5@{ckpt}", cache, encoder=enc, segmenter=words)
    img, txt = np.array([0, 1, 2, 3]), np.array([0, 3, 4, 7])
    raw = sc.score_pairs([images[i] for i in img], [str(cache.strings[t]) for t in txt])
    np.testing.assert_allclose(raw, sc.score(img, txt), atol=1e-5)


def test_sgi_without_head_on_unaligned_globals_says_what_to_give(unaligned):
    cache, _, enc, *_ = unaligned
    with pytest.raises(UserError, match=r"global_space='none'.*sgi@CKPT or sgi:W@CKPT"):
        load_scorer("sgi:0.3", cache, encoder=enc, segmenter=words)


def test_sgi_head_errors(unaligned, tmp_path):
    cache, plain, enc, _, _, ckpt, tflocal_ckpt = unaligned
    with pytest.raises(UserError, match="not a global head"):
        load_scorer(f"sgi@{tflocal_ckpt}", cache, encoder=enc, segmenter=words)
    with pytest.raises(UserError, match="after '@'"):
        load_scorer("sgi:0.3@", cache, encoder=enc, segmenter=words)
    with pytest.raises(UserError, match="not found"):
        load_scorer(f"sgi@{tmp_path / 'missing.pt'}", cache, encoder=enc, segmenter=words)
    with pytest.raises(UserError, match="weight after ':'"):
        load_scorer(f"sgi:x@{ckpt}", cache, encoder=enc, segmenter=words)
    with pytest.raises(UserError, match="--crops"):
        load_scorer(f"sgi@{ckpt}", plain, encoder=enc, segmenter=words)


def test_every_sgi_spec_asks_for_crops():
    assert all(is_sgi(s) for s in ["sgi", "sgi:0.3", "sgi@runs/global/best.pt", "sgi:0.3@runs/g/best.pt"])
    assert not any(is_sgi(s) for s in ["cosine", "runs/sgi/best.pt", "sgix", "maxsim"])
    from tflocal.app.pipeline import _uses_sgi

    assert _uses_sgi(EvalConfig(bench="world3d", scorers=["cosine", "sgi:0.3@runs/global/best.pt"]))
    assert not _uses_sgi(EvalConfig(bench="world3d", scorers=["cosine", "runs/global/best.pt"]))
