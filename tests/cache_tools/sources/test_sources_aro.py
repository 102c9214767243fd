"""ARO sources (VG-Relation, VG-Attribution, COCO/Flickr-Order) and the word-order perturbations."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from cache_tools.encoders.images import load_image
from cache_tools.sources import open_source
from cache_tools.sources.records import TextRecord
from cache_tools.sources.word_order import (
    PERTURBATIONS,
    perturb,
    pos_tag,
    pre_caption,
    shuffle_allbut_nouns_and_adj,
    shuffle_nouns_and_adj,
    shuffle_trigrams,
    shuffle_within_trigrams,
    tokenize,
    trigrams,
)
from tflocal.errors import UserError


def dump(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


class Reverse(random.Random):
    """A 'shuffle' that reverses, so that shuffled outputs can be written down by hand."""

    def shuffle(self, x):  # type: ignore[override]
        x.reverse()


# --- word order ----------------------------------------------------------------------------


def test_pre_caption_matches_aro():
    assert pre_caption('A Man, riding. a "horse"!  ') == "a man, riding a horse"
    assert pre_caption("one two three four", max_words=2) == "one two"


def test_tokenize_and_tag():
    toks = tokenize("A man in a red shirt rides a yellow surfboard, near the old building.")
    assert toks == [
        "A",
        "man",
        "in",
        "a",
        "red",
        "shirt",
        "rides",
        "a",
        "yellow",
        "surfboard",
        ",",
        "near",
        "the",
    ] + [
        "old",
        "building",
        ".",
    ]
    tags = pos_tag(toks)
    nouns = [t for t, g in zip(toks, tags) if g == "NOUN"]
    adjs = [t for t, g in zip(toks, tags) if g == "ADJ"]
    assert nouns == ["man", "shirt", "surfboard", "building"]
    assert adjs == ["red", "yellow", "old"]
    assert pos_tag(["walking", "quickly", "beautiful", "3"]) == ["OTHER", "OTHER", "ADJ", "OTHER"]


TOKS = ["a", "red", "man", "rides", "a", "yellow", "horse", "near", "water"]
# tags:  O    ADJ    N      O       O    ADJ       N        O       N


def test_shuffles_with_a_reversing_rng():
    assert shuffle_nouns_and_adj(TOKS, Reverse()) == [
        "a",
        "yellow",
        "water",
        "rides",
        "a",
        "red",
        "horse",
        "near",
        "man",
    ]
    assert shuffle_allbut_nouns_and_adj(TOKS, Reverse()) == [
        "near",
        "red",
        "man",
        "a",
        "rides",
        "yellow",
        "horse",
        "a",
        "water",
    ]
    assert trigrams(TOKS[:7]) == [["a", "red", "man"], ["rides", "a", "yellow"], ["horse"]]
    assert shuffle_within_trigrams(TOKS, Reverse()) == [
        "man",
        "red",
        "a",
        "yellow",
        "a",
        "rides",
        "water",
        "near",
        "horse",
    ]
    assert shuffle_trigrams(TOKS[:7], Reverse()) == ["horse", "rides", "a", "yellow", "a", "red", "man"]


def test_shuffles_keep_their_invariants():
    toks = tokenize("a small brown dog chases a big white cat across the green park with a red ball today")
    tags = pos_tag(toks)
    for seed in range(5):
        out = shuffle_nouns_and_adj(toks, random.Random(seed))
        assert Counter(out) == Counter(toks)
        assert all(o == t for o, t, g in zip(out, toks, tags) if g == "OTHER")
        assert all(pos_tag([o]) == [g] for o, g in zip(out, tags) if g != "OTHER")
        out = shuffle_allbut_nouns_and_adj(toks, random.Random(seed))
        assert Counter(out) == Counter(toks)
        assert all(o == t for o, t, g in zip(out, toks, tags) if g != "OTHER")
        out = shuffle_within_trigrams(toks, random.Random(seed))
        assert [sorted(a) for a in trigrams(out)] == [sorted(b) for b in trigrams(toks)]


def test_perturb_is_deterministic_per_seed_and_key():
    cap = "A young boy in a blue shirt throws a red frisbee to a brown dog on the grass."
    a = perturb(cap, "img#0", seed=0)
    assert list(a) == list(PERTURBATIONS)
    assert a == perturb(cap, "img#0", seed=0)
    assert a != perturb(cap, "img#0", seed=1)
    assert a != perturb(cap, "img#1", seed=0)
    for text in a.values():
        assert text == pre_caption(text) and Counter(text.split()) == Counter(pre_caption(cap).split())


# --- VG-Relation / VG-Attribution ------------------------------------------------------------


@pytest.fixture
def aro_dir(tmp_path) -> Path:
    d = tmp_path / "aro"
    img = Image.new("RGB", (20, 10), (0, 0, 0))
    img.paste((255, 0, 0), (10, 0, 20, 10))  # right half red
    (d / "images").mkdir(parents=True)
    img.save(d / "images" / "1.png")
    base = {"image_id": "1", "image_path": "1.png", "bbox_x": 10, "bbox_y": 2, "bbox_w": 6, "bbox_h": 5}
    dump(
        d / "visual_genome_relation.json",
        [
            base
            | {
                "relation_name": "on",
                "true_caption": "the cup is on the table",
                "false_caption": "the table is on the cup",
            },
            base
            | {"relation_name": "next to", "true_caption": "the dog is next to the cat", "false_caption": ""},
            base
            | {"bbox_x": 0, "relation_name": "near", "true_caption": "a near b", "false_caption": "b near a"},
            {"image_path": "2.png", "true_caption": "x", "false_caption": "y", "relation_name": "on"},
        ],
    )
    dump(
        d / "visual_genome_attribution.json",
        [
            base
            | {
                "attributes": ["white", "black"],
                "obj1_name": "cat",
                "true_caption": "the white cat and the black dog",
            }
            | {"false_caption": "the black cat and the white dog"}
        ],
    )
    return d


def test_vg_relation_records(aro_dir):
    src = open_source(f"aro:{aro_dir}", subset="vg_relation")
    recs = list(src)
    assert [r.id for r in recs] == ["1.png#0", "1.png#2"]
    r = recs[0]
    assert r.image == str(aro_dir / "images" / "1.png")
    assert r.box == (10.0, 2.0, 16.0, 7.0)
    meta = {"subset": "vg_relation", "item": 0, "image_id": "1", "relation_name": "on"}
    assert r.texts == [
        TextRecord("the cup is on the table", meta=meta),
        TextRecord("the table is on the cup", 0, "swap", "object", meta),
    ]
    assert recs[1].texts[0].meta["relation_name"] == "near" and recs[1].box == (0.0, 2.0, 6.0, 7.0)
    assert dict(src.skipped) == {
        "item 1": "empty or missing true_caption / false_caption",
        "item 3": "missing or non-numeric bbox_x/bbox_y/bbox_w/bbox_h",
    }
    # the writer's loader crops to the box: 6x5 pixels, all from the red half
    crop = load_image(r)
    assert (
        crop.size == (6, 5) and crop.getpixel((0, 0)) == (255, 0, 0) and crop.getpixel((5, 4)) == (255, 0, 0)
    )


def test_vg_attribution_via_alias(aro_dir):
    recs = list(open_source(f"vg_attribution:{aro_dir / 'visual_genome_attribution.json'}"))
    assert len(recs) == 1
    t = recs[0].texts
    assert (t[1].text, t[1].positive, t[1].op, t[1].kind) == (
        "the black cat and the white dog",
        0,
        "swap",
        "attribute",
    )
    assert t[0].meta["attributes"] == ["white", "black"] and t[0].meta["obj1_name"] == "cat"


def test_aro_errors(aro_dir, tmp_path):
    with pytest.raises(UserError) as err:
        open_source(f"aro:{aro_dir}")
    assert "vg_relation" in str(err.value) and "flickr_order" in str(err.value)
    with pytest.raises(UserError, match="coco_karpathy_test.json"):
        open_source(f"aro:{aro_dir}", subset="coco_order")
    with pytest.raises(UserError, match="fixed"):
        open_source(f"vg_relation:{aro_dir}", subset="coco_order")
    bare = tmp_path / "bare"
    dump(bare / "visual_genome_relation.json", [])
    with pytest.raises(UserError, match="images"):
        open_source(f"vg_relation:{bare}")


# --- COCO-Order / Flickr30k-Order ------------------------------------------------------------


def test_coco_order_records(tmp_path):
    d = tmp_path / "coco"
    caps = ["A man riding a brown horse on the beach.", "  ", "Two dogs play with a red ball in the park."]
    dump(d / "coco_karpathy_test.json", [{"image": "val2014/a.jpg", "caption": caps, "image_id": 1}])
    src = open_source(f"coco_order:{d}", perturbations="tflocal")
    recs = list(src)
    assert len(recs) == 1 and recs[0].id == "val2014/a.jpg" and recs[0].image == str(d / "val2014" / "a.jpg")
    texts = recs[0].texts
    assert len(texts) == 10
    assert texts[0] == TextRecord(
        "a man riding a brown horse on the beach", meta={"caption_index": 0, "perturbation": "original"}
    )
    assert (
        texts[5].text == "two dogs play with a red ball in the park" and texts[5].meta["caption_index"] == 2
    )
    expected = perturb(caps[0], "val2014/a.jpg#0", seed=0)
    assert [(t.text, t.positive, t.op, t.meta["perturbation"]) for t in texts[1:5]] == [
        (v, 0, "order", k) for k, v in expected.items()
    ]
    assert {t.positive for t in texts[6:]} == {5}
    assert src.skipped == [("val2014/a.jpg caption 1", "empty caption")]
    assert list(open_source(f"coco_order:{d}", perturbations="tflocal")) == recs
    other = list(open_source(f"aro:{d}", subset="coco_order", seed=3, perturbations="tflocal"))[0].texts
    assert other[0] == texts[0] and [t.text for t in other] != [t.text for t in texts]


def test_flickr_order_from_karpathy_json_uses_test_split(tmp_path):
    (tmp_path / "flickr30k-images").mkdir()
    j = dump(
        tmp_path / "dataset_flickr30k.json",
        {
            "images": [
                {"filename": "1.jpg", "split": "train", "sentences": [{"raw": "A cat."}]},
                {"filename": "2.jpg", "split": "test", "sentences": [{"raw": "A dog sleeps on a mat."}]},
            ]
        },
    )
    recs = list(open_source(f"flickr_order:{j}", max_words=3, perturbations="tflocal"))
    assert [r.id for r in recs] == ["2.jpg"]
    assert recs[0].image == str(tmp_path / "flickr30k-images" / "2.jpg")
    assert recs[0].texts[0].text == "a dog sleeps"
    assert all(len(t.text.split()) <= 3 for t in recs[0].texts)
