"""The segments read-out's number words, count peaks and compare term: today's head when off,
exactly today's scores at initialization when on, and on tiny synthetic worlds a count never
stated of an object in training and an attribute equality the old head cannot learn are
learned."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from helpers.pair_batches import TOWERS, make_batch, with_layout
from helpers.tiny_worlds import D, P, caption_batch, tiny, train, unit
from tflocal.concepts.layout import caption_layout_counts, layout_tensors
from tflocal.errors import UserError
from tflocal.models import ModelConfig, PairBatch, SegmentHead, build_head
from tflocal.models.checkpoint import load_checkpoint, load_head, save_checkpoint
from tflocal.models.segment_head import without_numbers

CFG = dict(width=32, depth=1, heads=4, readout="segments")


def head_of(seed: int = 0, **over) -> SegmentHead:
    torch.manual_seed(seed)
    return build_head("tflocal", {**CFG, **over}, TOWERS).eval()


def numbered_batch() -> PairBatch:
    """with_layout's batch (row 0: "two ..." tokens {0, 1}, "three ..." tokens {3, 4}) with the
    number words: token 0 of object 0, token 3 of object 1."""
    b = with_layout(make_batch(TOWERS), counts=True)
    b.number_tokens = torch.zeros_like(b.segments)
    b.number_tokens[0, 0, 0] = b.number_tokens[0, 1, 3] = True
    return b


def test_layout_marks_the_number_words_of_counted_phrases_only():
    text = "Two cylinders and three spheres left of a cube."
    toks = text.replace(".", " .").split()
    objects, _, _, counts, numbers = caption_layout_counts(text, toks)
    assert counts.tolist() == [2, 3, 1, 0]
    words = lambda m: [t for t, on in zip(toks, m) if on]  # noqa: E731
    assert [words(m) for m in numbers[:3]] == [["Two"], ["three"], []]
    assert not (numbers & ~objects).any()  # within each phrase
    assert [words(m) for m in without_numbers(torch.from_numpy(objects), torch.from_numpy(numbers))[:2]] == [
        ["cylinders"],
        ["spheres"],
    ]
    out = layout_tensors([text, "a red cube"], [toks, "a red cube".split()], n_tokens=4)
    assert out["number_tokens"].shape == (2, 4, 4) and out["number_tokens"][0, 0, 0]
    assert not out["number_tokens"][1].any()


def test_segments_blocks_start_as_the_identity_by_default_and_the_joint_ones_do_not():
    seg = head_of(depth=1)
    assert seg.cfg.block_init == "zero" and len(seg.text_blocks) == 1
    for block in (*seg.image_blocks, *seg.text_blocks):
        assert not block.proj.weight.any() and not block.mlp[3].weight.any()
    assert head_of(depth=1, block_init="default").image_blocks[0].proj.weight.any()
    joint = build_head("tflocal-joint", {**CFG, "depth": 1}, TOWERS)
    assert joint.cfg.block_init == "default" and joint.blocks[0].proj.weight.any()
    with pytest.raises(UserError, match="block_init"):
        ModelConfig(block_init="ones")


def test_new_options_are_off_by_default_and_read_nothing_new():
    cfg = ModelConfig()
    assert (cfg.number_words, cfg.count_term, cfg.count_form) == (None, None, None)  # filled in when built
    assert (cfg.count_peaks, cfg.compare_term) == (False, False)
    head = head_of()
    assert (head.cfg.number_words, head.cfg.count_term, head.cfg.count_form) == ("keep", False, "classes")
    assert "number_tokens" not in head.needs and head.compare_in is None
    assert "mix/compare" not in head.mix_weights()
    # 'count' without the count term changes nothing either
    assert "number_tokens" not in head_of(number_words="count").needs
    with pytest.raises(UserError, match="model.number_words='none' unknown"):
        ModelConfig(number_words="none")
    with pytest.raises(UserError, match="model.count_form='gauss' unknown"):
        ModelConfig(count_form="gauss")
    assert head.count_mlp is None and not head.count_density


@pytest.mark.parametrize("count_form", ["classes", "ordinal"])
@pytest.mark.parametrize("global_path", [False, True], ids=["local-only", "global-path"])
def test_new_terms_score_exactly_as_the_count_head_at_init(global_path, count_form):
    old = head_of(global_path=global_path, count_term=True)
    new = head_of(
        global_path=global_path,
        count_term=True,
        number_words="count",
        count_peaks=True,
        compare_term=True,
        count_form=count_form,
    )
    for k, v in old.state_dict().items():  # built first, from the same seed
        if not k.startswith(("count_mlp.0", "count_mlp.2")):  # other input / output widths
            assert torch.equal(new.state_dict()[k], v), k
    new.load_state_dict(
        {**new.state_dict(), **{k: v for k, v in old.state_dict().items() if not k.startswith("count_mlp")}}
    )
    b = numbered_batch()
    with torch.no_grad():
        old.relation_scale.fill_(3.0)
        new.relation_scale.fill_(3.0)
        want, got = old(b), new(b)
    assert torch.equal(got, want)
    assert {"mix/compare", "mix/counts"} <= set(new.mix_weights())
    assert new.needs.count("number_tokens") == 1
    with torch.no_grad():  # the compare term is wired: only row 0 has a relation
        new.compare_in[-1].bias.fill_(2.0)
        moved = new(b)
        assert moved[0] != want[0] and torch.equal(moved[1:], want[1:])
        new.compare_in[-1].bias.zero_()
        new.count_mlp[-1].bias.copy_(torch.arange(new.count_mlp[-1].bias.numel(), dtype=torch.float) + 1)
        moved = new(b)
        assert moved[0] != want[0] and torch.equal(moved[1:], want[1:])  # only row 0 states a number


@pytest.mark.parametrize("global_path", [False, True], ids=["local-only", "global-path"])
def test_the_density_count_scores_as_no_count_term_at_init_and_fits_only_true_pairs(global_path):
    plain = head_of(global_path=global_path)
    dens = head_of(global_path=global_path, count_term=True, count_form="density")
    for k, v in plain.state_dict().items():  # built first, from the same seed
        assert torch.equal(dens.state_dict()[k], v), k
    b = numbered_batch()
    with torch.no_grad():
        assert torch.equal(dens(b), plain(b))  # its weight starts at 0
        assert dens.auxiliary_losses(torch.ones(len(b), dtype=torch.bool)) == {}  # eval: nothing kept
        est = dens.count_estimates(b)
    assert est.shape == b.counts.shape and bool((est[b.segments.any(-1) == 0] == 0).all())
    assert {"counts", "number_tokens"} <= set(dens.needs) and "mix/counts" in dens.mix_weights()
    dens.train()
    dens(b)
    none = dens.auxiliary_losses(torch.zeros(len(b), dtype=torch.bool))["counts"]
    assert float(none.detach()) == 0.0  # no true pair: nothing to fit
    dens(b)
    positive = torch.zeros(len(b), dtype=torch.bool)
    positive[0] = True  # row 0 states "two" and "three"
    loss = dens.auxiliary_losses(positive)["counts"]
    with torch.no_grad():
        est0, n0, has0 = dens.count_estimates(b)[0], b.counts[0], b.segments[0].any(-1)
    want = torch.where(n0 >= 2, (est0 - n0).square(), torch.relu(1 - est0).square())[has0].sum() / has0.sum()
    assert bool((n0[has0] >= 2).any()) and torch.allclose(loss.detach(), want)
    assert dens.auxiliary_losses(positive) == {}  # forgotten once read
    loss.backward()
    assert dens.count_weights.grad is not None and dens.count_weights.grad.abs().sum() > 0
    assert dens.token_in[1].weight.grad.abs().sum() > 0  # and the phrases' cosines it counts with
    with pytest.raises(UserError, match="count_form 'density'"):
        plain.count_estimates(b)


def test_count_phrases_leave_their_number_words_out():
    """'count': the count term reads the phrases without their number words, the best-region
    match keeps them; 'drop': both leave them out, as a head given the shortened phrases."""
    b = numbered_batch()
    short = PairBatch(**{**b.__dict__, "segments": without_numbers(b.segments, b.number_tokens)})
    keep, count = head_of(count_term=True), head_of(count_term=True, number_words="count")
    with torch.no_grad():
        for h in (keep, count):  # the count term alone: no best-region match, no relation term
            h.count_mlp[-1].weight.normal_(generator=torch.Generator().manual_seed(1))
            h.scale.zero_()
            h.relation_scale.zero_()
        assert torch.equal(count(b), keep(short))
        assert not torch.equal(count(b), keep(b))
        drop = head_of(number_words="drop")
        assert torch.equal(drop(b), head_of()(short))
        assert not torch.equal(drop(b), head_of()(b))
    b.number_tokens = None
    with pytest.raises(UserError, match=r"needs PairBatch fields \['number_tokens'\]"):
        drop(b)


def test_checkpoints_saved_before_the_new_keys_load_as_before(tmp_path):
    old = head_of(global_path=True)
    path = save_checkpoint(tmp_path / "old.pt", old, "tflocal", old.cfg, None, dict(TOWERS), step=1)
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["model_cfg"]["block_init"] == "zero"  # resolved when built, and stored so
    for k in ("number_words", "count_peaks", "compare_term", "count_form", "block_init"):
        del ckpt["model_cfg"][k]
    torch.save(ckpt, path)
    legacy = load_checkpoint(path)["model_cfg"]
    assert (legacy["number_words"], legacy["count_peaks"], legacy["compare_term"]) == ("keep", False, False)
    assert legacy["count_form"] == "classes" and legacy["block_init"] == "default"
    model, _ = load_head(path)
    b = numbered_batch()
    with torch.no_grad():
        assert torch.equal(model(b), old(b))


# -- tiny synthetic worlds -----------------------------------------------------------------
KINDS = unit(torch.Generator().manual_seed(97), 3)  # three object words ("cube", "sphere", ...)
NUMBER = unit(torch.Generator().manual_seed(99), 8)  # the number words
HELD = (3, 0)
"""(count, kind) never seen in training."""


def held_out_count_world(n: int, seed: int, test: bool = False) -> PairBatch:
    """n images: background patches and one kind of object planted in k ∈ {2, 3} patches.
    Captions "k kind" (true), "5 − k kind", "k another kind". Training never plants 3 of kind
    0 nor states it; ``test``: every image plants kind 0, 3 or 2 times."""
    g = torch.Generator().manual_seed(seed)
    patches = unit(g, n, P)
    kind = torch.zeros(n, dtype=torch.long) if test else torch.randint(0, 3, (n,), generator=g)
    k = torch.randint(2, 4, (n,), generator=g)
    if not test:
        k = torch.where((kind == HELD[1]) & (k == HELD[0]), 2, k)
    for i in range(n):
        patches[i, torch.randperm(P, generator=g)[: int(k[i])]] = KINDS[kind[i]] + 0.05 * unit(g, int(k[i]))
    nums = torch.stack([k, 5 - k, k], 1)  # [n, 3]
    if not test:  # a false caption that would state the held-out count names another kind
        nums[:, 1] = torch.where((kind == HELD[1]) & (nums[:, 1] == HELD[0]), 4, nums[:, 1])
    other = (kind + 1 + torch.randint(0, 2, (n,), generator=g)) % 3
    tokens = torch.stack([NUMBER[nums], KINDS[torch.stack([kind, kind, other], 1)]], 2)  # [n, 3, 2, D]
    seg = torch.ones(n, 3, 1, 2, dtype=torch.bool)
    numbers = torch.zeros_like(seg)
    numbers[..., 0] = True
    none = torch.zeros(n, 3, 1, 2, dtype=torch.bool)
    return caption_batch(patches, tokens, seg, torch.full((n, 3, 1, 2), -1), none, nums[..., None], numbers)


def held_out_accuracy(head: torch.nn.Module) -> float:
    """Share of 400 images of kind 0 (3 or 2 copies) whose true count outscores the swapped one."""
    with torch.no_grad():
        scores = head(held_out_count_world(400, seed=7, test=True)).view(400, 3)
    return float((scores[:, 0] > scores[:, 1]).float().mean())


def test_a_count_never_stated_of_an_object_is_read_without_its_number_word(one_thread):
    counted = held_out_accuracy(train(tiny(count_term=True, number_words="count"), held_out_count_world))
    assert counted > 0.9, counted
    relative = held_out_accuracy(
        train(tiny(count_term=True, number_words="count", count_peaks=True), held_out_count_world)
    )
    assert relative > 0.9, relative
    # the ordinal form learns more slowly: 300 steps gave 0.93 on an AMD EPYC but 0.84 on a Xeon
    # (float paths differ by CPU); 600 give 0.92 on the Xeon
    ordinal = held_out_accuracy(
        train(tiny(count_term=True, count_form="ordinal"), held_out_count_world, steps=600)
    )
    assert ordinal > 0.9, ordinal
    density = held_out_accuracy(train(tiny(count_term=True, count_form="density"), held_out_count_world))
    assert density > 0.9, density
    # with its number word the phrase "3 kind-0" was never seen: the count term reads it badly
    kept = held_out_accuracy(train(tiny(count_term=True), held_out_count_world))
    assert kept < 0.62, kept
    without = held_out_accuracy(train(tiny(), held_out_count_world))
    assert without < 0.62, without


COLOURS = unit(torch.Generator().manual_seed(96), 4)  # the colour part of a region
SAME = unit(torch.Generator().manual_seed(95), 1)[0]  # the token of "same color as"


def same_colour_world(n: int, seed: int) -> PairBatch:
    """n images: objects A and B of one colour, C of another, each a region shape + colour at
    a random place. Captions name shapes only: "A same-colour-as B" (true), "A ... C", "A ...
    another shape"."""
    g = torch.Generator().manual_seed(seed)
    patches = unit(g, n, P)
    a, b, c, other = unit(g, n), unit(g, n), unit(g, n), unit(g, n)
    col = torch.randint(0, 4, (n,), generator=g)
    col2 = (col + 1 + torch.randint(0, 3, (n,), generator=g)) % 4
    for i in range(n):
        where = torch.randperm(P, generator=g)[:3]
        patches[i, where[0]] = F.normalize(a[i] + COLOURS[col[i]], dim=-1)
        patches[i, where[1]] = F.normalize(b[i] + COLOURS[col[i]], dim=-1)
        patches[i, where[2]] = F.normalize(c[i] + COLOURS[col2[i]], dim=-1)
    rel = SAME.expand(n, D)
    tokens = torch.stack(
        [torch.stack([a, rel, b], 1), torch.stack([a, rel, c], 1), torch.stack([a, rel, other], 1)], 1
    )  # [n, 3, 3, D]
    seg = torch.zeros(n, 3, 2, 3, dtype=torch.bool)
    seg[..., 0, 0] = seg[..., 1, 2] = True
    rel_tok = torch.zeros(n, 3, 1, 3, dtype=torch.bool)
    rel_tok[..., 0, 1] = True
    rels = torch.tensor([0, 1]).expand(n, 3, 1, 2)
    none = torch.zeros(n, 3, 2, 3, dtype=torch.bool)
    return caption_batch(patches, tokens, seg, rels, rel_tok, torch.zeros(n, 3, 2, dtype=torch.long), none)


def test_an_attribute_equality_is_learned_by_the_compare_term(one_thread):
    def accuracy(head: torch.nn.Module) -> float:
        head = train(head, same_colour_world)
        with torch.no_grad():
            scores = head(same_colour_world(400, seed=7)).view(400, 3)
        return float((scores[:, 0] > scores[:, 1]).float().mean())

    compare = accuracy(tiny(compare_term=True))
    direction = accuracy(tiny())
    assert compare > 0.9, compare
    assert direction < 0.62, direction
