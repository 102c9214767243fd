"""The segments read-out's pair relation and count terms: exactly the old head at
initialization, old checkpoints load as before, and on tiny synthetic worlds a count and a
comparative the old head cannot learn are learned by the new terms."""

from __future__ import annotations

import pytest
import torch

from helpers.pair_batches import TOWERS, make_batch, with_layout
from helpers.tiny_worlds import GRID, D, P, caption_batch, tiny, train, unit
from tflocal.errors import UserError
from tflocal.models import ModelConfig, PairBatch, SegmentHead, build_head
from tflocal.models.checkpoint import load_checkpoint, load_head, save_checkpoint
from tflocal.models.segment_head import MAX_COUNT

CFG = dict(width=32, depth=1, heads=4, readout="segments")
NEW = dict(relation_form="both", count_term=True)


def pair_of_heads(global_path: bool, **new) -> tuple[SegmentHead, SegmentHead]:
    """(old head, head with the new terms), both built under seed 0."""
    torch.manual_seed(0)
    old = build_head("tflocal", {**CFG, "global_path": global_path}, TOWERS).eval()
    torch.manual_seed(0)
    head = build_head("tflocal", {**CFG, "global_path": global_path, **(new or NEW)}, TOWERS).eval()
    return old, head


@pytest.mark.parametrize("global_path", [False, True], ids=["local-only", "global-path"])
def test_new_terms_score_exactly_as_the_old_head_at_init(global_path):
    old, head = pair_of_heads(global_path)
    with torch.no_grad():
        old.relation_scale.fill_(3.0)  # make the relation term matter in the comparison
    missing, unexpected = head.load_state_dict(old.state_dict(), strict=False)
    assert (
        not unexpected and missing and all(k.startswith(("pair_", "predicate_in", "count_")) for k in missing)
    )
    b = with_layout(make_batch(TOWERS), counts=True)
    with torch.no_grad():
        want, got = old(b), head(b)
    assert torch.equal(got, want)
    # the same seed gives the old head's weights without loading them too
    torch.manual_seed(0)
    fresh = build_head("tflocal", {**CFG, "global_path": global_path, **NEW}, TOWERS)
    for k, v in old.state_dict().items():
        if k != "relation_scale":
            assert torch.equal(fresh.state_dict()[k], v), k
    # and the new terms are wired: moving their last layers moves the scores of the rows they read
    with torch.no_grad():
        head.pair_mlp[-1].bias.fill_(0.5)
        moved = head(b)
        assert moved[0] != want[0] and torch.equal(moved[1:], want[1:])  # only row 0 has a relation
        head.pair_mlp[-1].bias.zero_()
        head.count_mlp[-1].bias.copy_(torch.arange(MAX_COUNT, dtype=torch.float))
        moved = head(b)
        assert moved[0] != want[0] and torch.equal(moved[1:], want[1:])  # only row 0 states a number


def test_relation_forms_build_the_terms_they_name_and_log_their_weights():
    _, pair = pair_of_heads(False, relation_form="pair")
    assert pair.relation_in is None and pair.pair_mlp is not None and pair.count_mlp is None
    assert set(pair.mix_weights()) == {"mix/objects", "mix/pair_relations"}
    assert "counts" not in pair.needs
    _, both = pair_of_heads(True)
    assert set(both.mix_weights()) == {
        "mix/objects", "mix/relations", "mix/pair_relations", "mix/counts", "mix/global", "mix/words"
    }  # fmt: skip
    assert both.needs.count("counts") == 1
    old, _ = pair_of_heads(False)
    assert old.pair_mlp is None and old.count_mlp is None and "counts" not in old.needs
    with torch.no_grad():  # word maps do not read the new terms
        b = with_layout(make_batch(TOWERS), counts=True)
        o2, n2 = pair_of_heads(False)
        torch.testing.assert_close(n2.word_region_attention(b), o2.word_region_attention(b))
    with pytest.raises(UserError, match="relation_form='depth' unknown"):
        ModelConfig(relation_form="depth")


def test_count_term_asks_for_counts():
    _, head = pair_of_heads(False)
    b = with_layout(make_batch(TOWERS), counts=True)
    b.counts = None
    with pytest.raises(UserError, match=r"needs PairBatch fields \['counts'\]"):
        head(b)


def test_checkpoints_saved_before_the_new_keys_load_as_before(tmp_path):
    old, _ = pair_of_heads(True)
    path = save_checkpoint(tmp_path / "old.pt", old, "tflocal", old.cfg, None, dict(TOWERS), step=1)
    ckpt = torch.load(path, weights_only=True)
    for k in ("relation_form", "count_term"):
        del ckpt["model_cfg"][k]  # as written before these keys existed
    torch.save(ckpt, path)
    legacy = load_checkpoint(path)["model_cfg"]
    assert (legacy["relation_form"], legacy["count_term"]) == ("direction", False)
    model, _ = load_head(path)
    assert model.pair_mlp is None and model.count_mlp is None
    b = with_layout(make_batch(TOWERS), counts=True)
    with torch.no_grad():
        assert torch.equal(model(b), old(b))


# -- tiny synthetic worlds -----------------------------------------------------------------
NUMBER = unit(torch.Generator().manual_seed(99), 8)  # token vectors of the number words
BIGGER = unit(torch.Generator().manual_seed(98), 1)[0]  # the token of "bigger than"


def count_world(n: int, seed: int) -> PairBatch:
    """n images: random background patches and one object vector planted in k ∈ {2, 3} patches.
    Captions (phrase = number token + object token): [k (true), 5 − k, k of another object]."""
    g = torch.Generator().manual_seed(seed)
    patches = unit(g, n, P)
    obj, other = unit(g, n), unit(g, n)
    k = torch.randint(2, 4, (n,), generator=g)
    for i in range(n):
        patches[i, torch.randperm(P, generator=g)[: int(k[i])]] = obj[i]
    nums = torch.stack([k, 5 - k, k], 1)  # [n, 3]
    tokens = torch.stack([NUMBER[nums], torch.stack([obj, obj, other], 1)], 2)  # [n, 3, 2, D]
    seg = torch.zeros(n, 3, 1, 2, dtype=torch.bool)
    seg[..., :] = True
    return caption_batch(
        patches,
        tokens,
        seg,
        torch.full((n, 3, 1, 2), -1),
        torch.zeros(n, 3, 1, 2, dtype=torch.bool),
        nums[..., None],
    )


def bigger_world(n: int, seed: int) -> PairBatch:
    """n images: object A over a 2x2 block, object B over one other patch, at random places.
    Captions "X bigger-than Y": [A > B (true), B > A, A > another object]."""
    g = torch.Generator().manual_seed(seed)
    patches = unit(g, n, P)
    a, b, other = unit(g, n), unit(g, n), unit(g, n)
    for i in range(n):
        r, c = (int(x) for x in torch.randint(0, GRID[0] - 1, (2,), generator=g))
        block = [(r + dr) * GRID[1] + c + dc for dr in (0, 1) for dc in (0, 1)]
        patches[i, block] = a[i]
        rest = [p for p in range(P) if p not in block]
        patches[i, rest[int(torch.randint(0, len(rest), (1,), generator=g))]] = b[i]
    rel = BIGGER.expand(n, D)
    tokens = torch.stack(
        [torch.stack([a, rel, b], 1), torch.stack([b, rel, a], 1), torch.stack([a, rel, other], 1)], 1
    )  # [n, 3, 3, D]
    seg = torch.zeros(n, 3, 2, 3, dtype=torch.bool)
    seg[..., 0, 0] = seg[..., 1, 2] = True
    rel_tok = torch.zeros(n, 3, 1, 3, dtype=torch.bool)
    rel_tok[..., 0, 1] = True
    rels = torch.tensor([0, 1]).expand(n, 3, 1, 2)
    return caption_batch(patches, tokens, seg, rels, rel_tok, torch.zeros(n, 3, 2, dtype=torch.long))


def train_and_test(head: torch.nn.Module, world, steps: int = 300, n: int = 32) -> float:
    """Train on candidate sets of 3 captions per image (positive first), then the share of 400
    held-out images whose true caption outscores the hard negative (caption 1)."""
    head = train(head, world, steps, n)
    with torch.no_grad():
        scores = head(world(400, seed=7)).view(400, 3)
    return float((scores[:, 0] > scores[:, 1]).float().mean())


def test_a_count_is_learned_by_the_count_term_only(one_thread):
    with_counts = train_and_test(tiny(count_term=True), count_world)
    without = train_and_test(tiny(), count_world)
    global_head = train_and_test(tiny("global", depth=2), count_world)
    assert with_counts > 0.9, with_counts
    assert without < 0.62, without  # its best region is the same for two copies and for three
    # a pooled image vector holds the count only as the object's share of the mean patch, drowned
    # in the background's: the global head stays close to chance, a little above it
    assert global_head < 0.65, global_head


def test_a_comparative_is_learned_by_the_pair_term_only(one_thread):
    pair = train_and_test(tiny(relation_form="both"), bigger_world)
    direction = train_and_test(tiny(), bigger_world)
    assert pair > 0.9, pair
    assert direction < 0.62, direction
