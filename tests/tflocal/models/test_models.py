"""Heads: shapes, padding invariance, pure score functions against naive references, registry."""

from __future__ import annotations

import pytest
import torch

from helpers.pair_batches import JOINT, TOWERS, VIT, make_batch
from tflocal.errors import UserError
from tflocal.models import (
    HEADS,
    PAIR_FIELDS,
    ModelConfig,
    PairBatch,
    build_head,
    cosine_score,
    count_parameters,
    maxsim_score,
)

SMALL = ModelConfig(width=32, depth=2, heads=4, readout="summary")
"""The joint read-out (``tflocal`` builds it when asked: its default read-out is ``segments``)."""


def pad(batch: PairBatch, extra_p: int, extra_t: int) -> PairBatch:
    """Append masked patches / tokens filled with large random values."""
    B = len(batch)
    p, t = batch.patches, batch.tokens
    return PairBatch(
        patches=torch.cat([p, 100 * torch.randn(B, extra_p, p.shape[2])], 1),
        patch_mask=torch.cat([batch.patch_mask, torch.zeros(B, extra_p, dtype=torch.bool)], 1),
        tokens=torch.cat([torch.where(batch.token_mask[..., None], t, 50 * torch.randn_like(t)), 100 * torch.randn(B, extra_t, t.shape[2])], 1),
        token_mask=torch.cat([batch.token_mask, torch.zeros(B, extra_t, dtype=torch.bool)], 1),
        image_global=batch.image_global,
        text_global=batch.text_global,
    )  # fmt: skip


def naive_maxsim(tokens, token_mask, patches, patch_mask):
    out = []
    for b in range(tokens.shape[0]):
        q = [tokens[b, i] for i in range(tokens.shape[1]) if token_mask[b, i]]
        k = [patches[b, j] for j in range(patches.shape[1]) if patch_mask[b, j]]
        best = [max(float(torch.dot(x / x.norm(), y / y.norm())) for y in k) for x in q]
        out.append(sum(best) / len(best) if best else 0.0)
    return torch.tensor(out)


def test_maxsim_matches_naive_loop():
    g = torch.Generator().manual_seed(1)
    tokens, patches = torch.randn(4, 6, 8, generator=g), torch.randn(4, 5, 8, generator=g)
    token_mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1] * 6, [1, 0, 0, 0, 0, 0], [0] * 6], dtype=torch.bool)
    patch_mask = torch.tensor([[1, 1, 0, 0, 0], [1] * 5, [0, 0, 0, 0, 1], [1] * 5], dtype=torch.bool)
    got = maxsim_score(tokens, token_mask, patches, patch_mask)
    assert got.shape == (4,)
    torch.testing.assert_close(got, naive_maxsim(tokens, token_mask, patches, patch_mask), atol=1e-5, rtol=0)
    assert got[3] == 0.0  # no real token


def test_maxsim_hand_computed():
    tokens = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])  # two tokens: x axis and y axis
    patches = torch.tensor([[[3.0, 0.0], [1.0, 1.0]]])  # x axis, diagonal
    # token x: best cos 1 (patch 0); token y: best cos 1/sqrt(2) (patch 1); mean
    expected = (1.0 + 2**-0.5) / 2
    got = maxsim_score(
        tokens, torch.ones(1, 2, dtype=torch.bool), patches, torch.ones(1, 2, dtype=torch.bool)
    )
    assert got.item() == pytest.approx(expected, abs=1e-6)


def test_maxsim_rejects_mismatched_shapes():
    with pytest.raises(AssertionError):
        maxsim_score(
            torch.randn(2, 3, 4),
            torch.ones(2, 3, dtype=torch.bool),
            torch.randn(2, 5, 6),
            torch.ones(2, 5, dtype=torch.bool),
        )


def test_cosine_score():
    a = torch.tensor([[1.0, 0.0], [3.0, 4.0], [1.0, 1.0]])
    b = torch.tensor([[0.0, 2.0], [6.0, 8.0], [-1.0, -1.0]])
    torch.testing.assert_close(cosine_score(a, b), torch.tensor([0.0, 1.0, -1.0]))
    with pytest.raises(AssertionError):
        cosine_score(torch.randn(2, 3), torch.randn(2, 4))


@pytest.mark.parametrize("attrs", [VIT, TOWERS], ids=["vit", "towers"])
@pytest.mark.parametrize("name", ["tflocal", "global"])
def test_trainable_heads_shape_and_padding_invariance(name, attrs):
    head = build_head(name, SMALL, attrs).eval()
    batch = make_batch(attrs)
    with torch.no_grad():
        s = head(batch)
        s_pad = head(pad(batch, extra_p=4, extra_t=3))
    assert s.shape == (3,) and s.dtype == torch.float32
    torch.testing.assert_close(s_pad, s, atol=1e-5, rtol=1e-5)


def test_tflocal_padding_invariance_per_row():
    """A pair scored alone equals the same pair scored in a batch padded to a longer caption."""
    head = build_head("tflocal", SMALL, VIT).eval()
    batch = make_batch(VIT, B=3, T=5)
    with torch.no_grad():
        together = head(batch)
        n = int(batch.token_mask[2].sum())
        alone = head(PairBatch(patches=batch.patches[2:], patch_mask=batch.patch_mask[2:], tokens=batch.tokens[2:, :n], token_mask=batch.token_mask[2:, :n],
                               image_global=batch.image_global[2:], text_global=batch.text_global[2:]))  # fmt: skip
    torch.testing.assert_close(alone, together[2:], atol=1e-5, rtol=1e-5)


def test_tflocal_sees_content_position_and_order():
    head = build_head("tflocal", SMALL, VIT).eval()
    batch = make_batch(VIT, B=1, T=5)
    with torch.no_grad():
        s = head(batch)
        moved = PairBatch(**{**batch.__dict__, "patches": batch.patches.roll(1, dims=1)})
        reordered = PairBatch(**{**batch.__dict__, "tokens": batch.tokens.flip(1)})
        s_moved, s_reordered = head(moved), head(reordered)
    assert (s - s_moved).abs().item() > 1e-4  # 2-D positions matter
    assert (s - s_reordered).abs().item() > 1e-4  # token order matters


def test_tflocal_sinusoidal_positions_and_long_caption():
    head = build_head(
        "tflocal", ModelConfig(width=32, depth=1, heads=4, pos="sinusoidal", max_text_tokens=4, readout="summary"), VIT
    ).eval()
    assert count_parameters(head) == count_parameters(build_head("tflocal", ModelConfig(width=32, depth=1, heads=4, max_text_tokens=4, readout="summary"), VIT)) - (7 + 7 + 4) * 32  # fmt: skip
    with pytest.raises(ValueError, match="max_text_tokens"):
        head(make_batch(VIT, B=1, T=6))


def test_global_head_ignores_patches_and_tokens():
    head = build_head("global", SMALL, VIT).eval()
    batch = make_batch(VIT)
    only_globals = PairBatch(image_global=batch.image_global, text_global=batch.text_global)
    with torch.no_grad():
        torch.testing.assert_close(head(only_globals), head(batch))


def test_needs_lists_what_heads_read():
    batch = make_batch(JOINT)
    for name in HEADS:
        head = build_head(name, SMALL, JOINT).eval()
        assert set(head.needs) <= set(PAIR_FIELDS)
        reduced = PairBatch(**{f: getattr(batch, f) for f in head.needs})
        with torch.no_grad():
            assert head(reduced).shape == (3,)


def test_default_budgets_match():
    """The localized part of TFLocal's joint read-out and the global head have about the same
    budget; with its default global path on it holds exactly one global head more, plus two mix
    weights."""
    n_local = count_parameters(build_head("tflocal", {"global_path": False, "readout": "summary"}, VIT))
    n_global = count_parameters(build_head("global", None, VIT))
    assert 11e6 < n_local < 15e6
    assert abs(n_global - n_local) / n_local < 0.15
    assert count_parameters(build_head("tflocal", {"readout": "summary"}, VIT)) == n_local + n_global + 2
    assert count_parameters(build_head("maxsim", None, JOINT)) == 0
    assert count_parameters(build_head("cosine", None, JOINT)) == 0


def test_registry_refusals():
    with pytest.raises(UserError, match="unknown head 'nope'"):
        build_head("nope", None, VIT)
    with pytest.raises(UserError, match="maxsim"):
        build_head("maxsim", None, VIT)  # hidden space, 768 vs 512
    with pytest.raises(UserError, match="global_space"):
        build_head("cosine", None, TOWERS)
    with pytest.raises(UserError, match="not divisible"):
        build_head("tflocal", {"width": 30, "heads": 4}, VIT)
    with pytest.raises(UserError, match="model.depthh"):
        build_head("tflocal", {"depthh": 2}, VIT)


def test_pair_batch_to_and_select():
    batch = PairBatch(image_global=torch.arange(6.0).view(3, 2))
    moved = batch.to("cpu")
    assert moved.patches is None and len(moved) == 3
    torch.testing.assert_close(
        batch.select(torch.tensor([2, 0])).image_global, torch.tensor([[4.0, 5.0], [0.0, 1.0]])
    )


@pytest.mark.parametrize("kind", ["learned", "sinusoidal"])
def test_grid_positions_distinct_and_padding_zero(kind):
    from tflocal.models.layers import GridPositions

    pos = GridPositions((3, 3), 16, kind)(11)  # 9 grid cells + 2 padding slots
    assert pos.shape == (11, 16)
    d = torch.cdist(pos[:9], pos[:9])
    assert (d + torch.eye(9) * 1e3).min() > 1e-3  # every cell, incl. (r, c) vs (c, r), differs
    assert pos[9:].abs().sum() == 0


def test_word_region_attention_matches_the_blocks_own_attention():
    """TFLocal's word->region map: rows over real patches sum to 1, padding gets 0, and the
    weights are those the last block's scaled_dot_product_attention uses (same output)."""
    import torch

    from tflocal.models import PairBatch, build_head
    from tflocal.models.config import ModelConfig

    torch.manual_seed(0)
    attrs = {"grid": [2, 3], "image_dim": 10, "text_dim": 7, "context_length": 8}
    head = build_head("tflocal", ModelConfig(width=16, depth=2, heads=4, readout="summary"), attrs).eval()
    tmask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    b = PairBatch(
        patches=torch.randn(2, 6, 10),
        patch_mask=torch.ones(2, 6, dtype=torch.bool),
        tokens=torch.randn(2, 4, 7),
        token_mask=tmask,
    )
    with torch.no_grad():
        att = head.word_region_attention(b)
        assert att.shape == (2, 4, 6)
        torch.testing.assert_close(att.sum(-1), tmask.float())
        x, key_mask, _ = head._encode(b, upto=1)
        block = head.blocks[-1]
        w = block.attention_weights(x, key_mask)  # [B, h, S, S]
        B, S, d = x.shape
        v = block.qkv(block.ln1(x)).view(B, S, 3, block.heads, d // block.heads).permute(2, 0, 3, 1, 4)[2]
        manual = x + block.proj((w @ v).transpose(1, 2).reshape(B, S, d))
        manual = manual + block.mlp(block.ln2(manual))
        torch.testing.assert_close(manual, block(x, key_mask), atol=1e-5, rtol=1e-5)


def test_tflocal_scores_the_same_with_images_deduplicated():
    """PairBatch.pair_image (each image projected once) gives the scores of the per-pair form."""
    import torch

    from tflocal.models import PairBatch, build_head
    from tflocal.models.config import ModelConfig

    torch.manual_seed(0)
    attrs = {"grid": [2, 3], "image_dim": 10, "text_dim": 7, "context_length": 8}
    head = build_head("tflocal", ModelConfig(width=16, depth=2, heads=4, readout="summary"), attrs).eval()
    patches = torch.randn(3, 6, 10)
    pair_image = torch.tensor([0, 0, 2, 1, 2])
    tokens, tmask = torch.randn(5, 4, 7), torch.rand(5, 4) > 0.3
    tmask[:, 0] = True
    dedup = PairBatch(
        patches=patches,
        patch_mask=torch.ones(3, 6, dtype=torch.bool),
        tokens=tokens,
        token_mask=tmask,
        pair_image=pair_image,
    )
    plain = dedup.expanded()
    assert plain.pair_image is None and plain.patches.shape == (5, 6, 10) and len(dedup) == len(plain) == 5
    with torch.no_grad():
        torch.testing.assert_close(head(dedup), head(plain), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(dedup.select(torch.tensor([4, 1])).patches, patches[[2, 0]])


def test_tflocal_align_readout_padding_invariant_and_matches_naive_alignment():
    """readout='summary+align' adds scale * mean over real tokens of the best cosine over real
    patches of the projected last-block states; padding changes nothing."""
    cfg = ModelConfig(width=32, depth=2, heads=4, readout="summary+align")
    head = build_head("tflocal", cfg, TOWERS).eval()
    plain = build_head("tflocal", ModelConfig(width=32, depth=2, heads=4, readout="summary"), TOWERS)
    assert count_parameters(head) == count_parameters(plain) + 2 * 32 * 32 + 1
    batch = make_batch(TOWERS)
    with torch.no_grad():
        s = head(batch)
        torch.testing.assert_close(head(pad(batch, extra_p=4, extra_t=3)), s, atol=1e-5, rtol=1e-5)
        x, key_mask, (P, T) = head._encode(batch, upto=cfg.depth)
        x = head.norm(x)
        txt, img = head.align["text"](x[:, 1 + P :]), head.align["image"](x[:, 1 : 1 + P])
        align = naive_maxsim(txt, batch.token_mask, img, batch.patch_mask)
        g = head.global_path.weight * head.global_path.head(batch)  # the global path (TOWERS has globals)
        expected = g + head.summary_scale * head.score(x[:, 0]).squeeze(-1) + head.align_scale * align
    torch.testing.assert_close(s, expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(UserError, match="readout"):
        ModelConfig(readout="mean")
