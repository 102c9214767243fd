"""TFLocal's segments read-out: padding, deduplicated images, a naive reference, relation geometry."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from helpers.pair_batches import TOWERS, make_batch, with_layout
from tflocal.errors import UserError
from tflocal.models import ModelConfig, PairBatch, SegmentHead, build_head, maxsim_score
from tflocal.models.segment_head import grid_coordinates

CFG = ModelConfig(width=32, depth=1, heads=4, readout="segments")


def padded(batch: PairBatch, extra_p: int, extra_t: int) -> PairBatch:
    B = len(batch)
    p, t = batch.patches, batch.tokens
    K, R = batch.segments.shape[1], batch.relation_tokens.shape[1]
    no = lambda *s: torch.zeros(*s, dtype=torch.bool)  # noqa: E731
    return PairBatch(
        patches=torch.cat([p, 100 * torch.randn(B, extra_p, p.shape[2])], 1),
        patch_mask=torch.cat([batch.patch_mask, no(B, extra_p)], 1),
        tokens=torch.cat([torch.where(batch.token_mask[..., None], t, 50 * torch.randn_like(t)), 100 * torch.randn(B, extra_t, t.shape[2])], 1),
        token_mask=torch.cat([batch.token_mask, no(B, extra_t)], 1),
        segments=torch.cat([batch.segments, no(B, K, extra_t)], 2),
        relation_tokens=torch.cat([batch.relation_tokens, no(B, R, extra_t)], 2),
        relations=batch.relations,
        image_global=batch.image_global,
        text_global=batch.text_global,
    )  # fmt: skip


@pytest.fixture(params=[False, True], ids=["local-only", "global-path"])
def head(request) -> SegmentHead:
    torch.manual_seed(0)
    h = build_head("tflocal", {**CFG.__dict__, "global_path": request.param}, TOWERS).eval()
    with torch.no_grad():
        h.relation_scale.fill_(3.0)  # make the relation term matter in the comparisons
        if h.global_path is not None:  # and the global path and the word-level fallback
            h.global_path.weight.fill_(0.7)
            h.word_scale.fill_(2.0)
    return h


def global_term(head: SegmentHead, b: PairBatch) -> torch.Tensor:
    """w_global · g [B] (zeros without a global path)."""
    if head.global_path is None:
        return torch.zeros(len(b))
    return head.global_path.weight * head.global_path.head(b)


def test_build_head_picks_segment_head_and_depth_zero_only_there():
    assert isinstance(
        build_head("tflocal", {"readout": "segments", "depth": 0, "width": 16, "heads": 2}, TOWERS),
        SegmentHead,
    )
    with pytest.raises(UserError, match="depth at least 1"):
        ModelConfig(depth=0, readout="summary")  # the joint read-out needs a block


def test_padding_does_not_change_scores(head):
    b = with_layout(make_batch(TOWERS))
    with torch.no_grad():
        ref = head(b)
        out = head(padded(b, extra_p=3, extra_t=4))
    assert ref.shape == (3,)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_padding_changes_no_gradient(head):
    """Padded patches and tokens (filled with large noise) change neither the scores nor any
    parameter's gradient in training: nothing of the head reads a padded position (its text side
    runs on the real tokens only, packed)."""
    b = with_layout(make_batch(TOWERS))
    head.train()
    grads = []
    for batch in (b, padded(b, extra_p=3, extra_t=5)):
        head.zero_grad()
        (head(batch) * torch.tensor([1.0, -2.0, 0.5])).sum().backward()
        grads.append({n: p.grad.clone() for n, p in head.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and "token_in.1.weight" in grads[0]
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-5, rtol=1e-4, msg=name)


def test_deduplicated_images_score_the_same(head):
    b = with_layout(make_batch(TOWERS))
    dedup = PairBatch(**{**b.__dict__, "patches": b.patches[:1], "patch_mask": b.patch_mask[:1],
                         "pair_image": torch.zeros(3, dtype=torch.long)})  # fmt: skip
    same = PairBatch(**{**b.__dict__, "patches": b.patches[[0, 0, 0]], "patch_mask": b.patch_mask[[0, 0, 0]]})
    with torch.no_grad():
        torch.testing.assert_close(head(dedup), head(same))


def test_matches_a_naive_loop(head):
    b = with_layout(make_batch(TOWERS))
    with torch.no_grad():
        out = head(b)
        v = head.encode_image(b.patches, b.patch_mask)  # [B, P, d] unit norm
        u = head.encode_text(b.tokens, b.token_mask)  # [B, T, d]
        xy = grid_coordinates(head.grid, v.shape[1])
        for i in range(3):
            phrases = [F.normalize(u[i, s].sum(0), dim=0) for s in b.segments[i] if s.any()]
            if phrases:
                match = sum(float((v[i] @ e).max()) for e in phrases) / len(phrases)
            else:
                match = float(
                    maxsim_score(u[i : i + 1], b.token_mask[i : i + 1], v[i : i + 1], b.patch_mask[i : i + 1])
                )
            rel = 0.0
            for r in range(b.relations.shape[1]):
                s_, o_ = b.relations[i, r].tolist()
                if s_ < 0:
                    continue
                where = [torch.softmax(float(head.sharpness) * (v[i] @ phrases[k]), 0) @ xy for k in (s_, o_)]
                w = head.relation_in(b.tokens[i, b.relation_tokens[i, r]].mean(0))
                rel += float(w @ (where[0] - where[1]))
            scale = head.scale if phrases or head.global_path is None else head.word_scale
            expect = float(global_term(head, b)[i]) + float(scale) * match + float(head.relation_scale) * rel
            assert abs(float(out[i]) - expect) < 1e-4, (i, float(out[i]), expect)


def test_relation_term_follows_where_the_objects_are(head):
    """Subject found in the left column and object in the right one: w · (subject − object) with
    w = (1, 0) is −2; naming them the other way round gives +2."""
    with torch.no_grad():
        head.relation_in[1].weight.zero_()
        head.relation_in[1].bias.copy_(torch.tensor([1.0, 0.0]))
    P = 6  # 2x3 grid, row-major: x = -1 at columns 0, +1 at column 2
    sim = torch.full((1, 2, P), -1.0)
    sim[0, 0, 0] = sim[0, 0, 3] = 1.0  # object 0 in column 0
    sim[0, 1, 2] = sim[0, 1, 5] = 1.0  # object 1 in column 2
    with torch.no_grad():
        head.sharpness.fill_(50.0)
    b = PairBatch(tokens=torch.zeros(1, 3, TOWERS["text_dim"]), token_mask=torch.ones(1, 3, dtype=torch.bool),
                  relation_tokens=torch.tensor([[[False, True, False]]]), relations=torch.tensor([[[0, 1]]]))  # fmt: skip
    with torch.no_grad():
        left = head._relations(b, sim, torch.ones(1, P, dtype=torch.bool))
        b.relations = torch.tensor([[[1, 0]]])
        right = head._relations(b, sim, torch.ones(1, P, dtype=torch.bool))
    assert float(left) == pytest.approx(-2.0, abs=1e-3) and float(right) == pytest.approx(2.0, abs=1e-3)


def test_caption_without_objects_falls_back_to_word_maxsim(head):
    b = with_layout(make_batch(TOWERS))
    with torch.no_grad():
        v = head.encode_image(b.patches, b.patch_mask)
        u = head.encode_text(b.tokens, b.token_mask)
        scale = head.scale if head.global_path is None else head.word_scale
        expect = global_term(head, b) + scale * maxsim_score(u, b.token_mask, v, b.patch_mask)
        torch.testing.assert_close(head(b)[2], expect[2])


def test_missing_layout_is_a_clear_error(head):
    with pytest.raises(UserError, match="segments read-out needs"):
        head(make_batch(TOWERS))


def test_word_region_attention_rows(head):
    b = with_layout(make_batch(TOWERS))
    with torch.no_grad():
        att = head.word_region_attention(b)
    assert att.shape == (3, 5, 6)
    torch.testing.assert_close(att.sum(-1), b.token_mask.float())
    torch.testing.assert_close(att[0, 0], att[0, 1])  # tokens of one phrase look where the phrase does
    assert not torch.allclose(att[0, 0], att[0, 3])
