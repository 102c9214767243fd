"""The head interface: every registered head declares what its callers read, a head that forgets
a declaration is refused when its class is defined, and ``tflocal`` builds the segments read-out
by default."""

from __future__ import annotations

import pytest
import torch

from helpers.pair_batches import JOINT, TOWERS, make_batch
from tflocal.models import HEADS, READOUT_HEADS, ModelConfig, SegmentHead, TFLocalHead, build_head
from tflocal.models.base import Head
from tflocal.models.global_head import GLOBAL_HEADS, DualGlobalHead, GlobalHead
from tflocal.pairs.batch import PAIR_FIELDS, PairBatch
from tflocal.retrieval.head_sides import TOWERS as LATE_TOWERS
from tflocal.retrieval.head_sides import separable_global

SMALL = {"width": 16, "depth": 1, "heads": 2}
SPEC = {"maxsim": JOINT, "cosine": JOINT}
"""The cache each head is built for (maxsim and cosine need joint spaces; TOWERS otherwise)."""


def every_head() -> list[tuple[str, dict]]:
    """(registry name, model config) of every head class the registry can build."""
    named = [(n, SMALL) for n in [*HEADS, *READOUT_HEADS]]
    forms = [("global", {**SMALL, "global_form": f}) for f in GLOBAL_HEADS]
    joint = [("tflocal", {**SMALL, "readout": r}) for r in ("summary", "summary+align")]
    return named + forms + joint


@pytest.mark.parametrize(("name", "cfg"), every_head(), ids=lambda x: str(x))
def test_every_registered_head_is_a_head_and_declares_its_interface(name, cfg):
    head = build_head(name, cfg, SPEC.get(name, TOWERS)).eval()
    assert isinstance(head, Head)
    assert isinstance(head.needs, tuple) and head.needs and set(head.needs) <= set(PAIR_FIELDS)
    assert all(isinstance(f, bool) for f in (head.accepts_pair_image, head.separable, head.word_maps))
    assert isinstance(head.mix_weights(), dict)
    assert head.auxiliary_scores() == {}  # eval mode: nothing kept for a loss of its own
    assert head.max_text is None or head.max_text > 0
    # the declarations say what the forward does: scores [B] from a batch of only ``needs``
    full = make_batch(SPEC.get(name, TOWERS))
    T = full.tokens.shape[1]
    layout = {
        "segments": torch.ones(3, 1, T, dtype=torch.bool),
        "relation_tokens": torch.zeros(3, 1, T, dtype=torch.bool),
        "relations": torch.full((3, 1, 2), -1),
    }
    batch = PairBatch(**{n: layout[n] if n in layout else getattr(full, n) for n in head.needs})
    with torch.no_grad():
        assert head(batch).shape == (3,)


def test_declarations_match_what_the_callers_use():
    """accepts_pair_image: the heads that gather per-pair images; separable: the heads whose image
    side an index stores (a late-interaction tower, or the dual global head as a global path);
    word_maps: the heads with word -> region maps of their own."""
    classes = {*HEADS.values(), *READOUT_HEADS.values(), *GLOBAL_HEADS.values()}
    assert {c for c in classes if c.accepts_pair_image} == {TFLocalHead, SegmentHead}
    assert {c for c in classes if c.separable} == {*LATE_TOWERS, DualGlobalHead}
    assert {c for c in classes if c.word_maps} == {TFLocalHead, SegmentHead}
    dual = build_head("tflocal", {**SMALL, "global_form": "dual"}, TOWERS)
    assert (
        isinstance(dual.global_path_head(), DualGlobalHead)
        and separable_global(dual) is dual.global_path_head()
    )
    mlp = build_head("tflocal", SMALL, TOWERS)
    assert isinstance(mlp.global_path_head(), GlobalHead) and separable_global(mlp) is None
    assert build_head("tflocal", {**SMALL, "global_path": False}, TOWERS).global_path_head() is None
    assert build_head("maxsim", None, JOINT).global_path_head() is None


def test_a_head_without_needs_is_refused_when_defined():
    with pytest.raises(TypeError, match="declares no `needs`"):

        class Forgetful(Head):
            def forward(self, batch: PairBatch) -> torch.Tensor:
                return torch.zeros(len(batch))


@pytest.mark.parametrize(
    ("needs", "match"),
    [(["tokens"], "must be a tuple"), (("tokens", "pixels"), r"names \['pixels'\], not PairBatch fields")],
)
def test_a_head_declaring_bad_needs_is_refused_when_defined(needs, match):
    with pytest.raises(TypeError, match=match):
        type("Bad", (Head,), {"needs": needs, "forward": lambda self, batch: batch.tokens[:, 0, 0]})


def test_word_maps_must_match_an_own_word_region_attention():
    with pytest.raises(TypeError, match="word_maps=True but it does not override"):
        type("Claims", (Head,), {"needs": ("tokens",), "word_maps": True, "forward": lambda s, b: b.tokens})
    with pytest.raises(TypeError, match="word_maps=False but it overrides"):
        type("Hides", (Head,), {"needs": ("tokens",), "forward": lambda s, b: b.tokens,
                                "word_region_attention": lambda s, b: b.tokens})  # fmt: skip


def test_a_head_without_forward_cannot_be_built():
    class NoForward(Head):
        needs = ("tokens",)

    with pytest.raises(TypeError, match="abstract"):
        NoForward()


def test_a_subclass_inherits_the_declarations_of_its_parent():
    class Narrow(SegmentHead):
        pass

    assert Narrow.needs == SegmentHead.needs and Narrow.accepts_pair_image and Narrow.separable


def test_the_defaults_of_the_interface():
    class Plain(Head):
        needs = ("image_global", "text_global")

        def forward(self, batch: PairBatch) -> torch.Tensor:
            return (batch.image_global * batch.text_global).sum(-1)

    head = Plain()
    assert (head.accepts_pair_image, head.separable, head.word_maps, head.max_text) == (
        False,
        False,
        False,
        None,
    )
    assert head.mix_weights() == {} and head.auxiliary_scores() == {} and head.global_path_head() is None
    assert head.state_dict() == {}  # the interface adds no parameter, buffer or submodule
    with pytest.raises(NotImplementedError, match="Plain draws no word -> region maps"):
        head.word_region_attention(make_batch(TOWERS))


def test_the_default_readout_is_segments():
    assert ModelConfig().readout == "segments"
    head = build_head("tflocal", None, TOWERS)
    assert type(head) is SegmentHead and head.cfg.readout == "segments"
    assert type(build_head("tflocal", {"readout": "summary"}, TOWERS)) is TFLocalHead
    # the joint read-out by name: summary from the default config, as with an explicit summary
    joint = build_head("tflocal-joint", None, TOWERS)
    assert (
        type(joint) is TFLocalHead and joint.cfg == build_head("tflocal", {"readout": "summary"}, TOWERS).cfg
    )
    assert joint.cfg.readout == "summary" and joint.cfg.local_loss is False
    assert build_head("tflocal-joint", {"readout": "summary+align"}, TOWERS).cfg.readout == "summary+align"


def test_a_checkpoint_saved_before_readout_existed_loads_as_the_joint_readout(tmp_path):
    """A checkpoint's model_cfg holds every key it had when saved; one without ``readout`` was a
    joint summary head, and loads as one whatever the default read-out is now."""
    from tflocal.models.checkpoint import load_head, save_checkpoint

    cfg = {**SMALL, "readout": "summary"}
    head = build_head("tflocal", cfg, TOWERS)
    path = save_checkpoint(tmp_path / "old.pt", head, "tflocal", head.cfg, None, dict(TOWERS), step=1)
    ckpt = torch.load(path, weights_only=True)
    del ckpt["model_cfg"]["readout"]
    torch.save(ckpt, path)
    loaded, info = load_head(path)
    assert type(loaded) is TFLocalHead and loaded.cfg == head.cfg
    assert all(torch.equal(v, head.state_dict()[k]) for k, v in loaded.state_dict().items())
