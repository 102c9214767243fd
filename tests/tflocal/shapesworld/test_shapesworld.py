"""ShapesWorld: negatives false for their scene, held-out combinations, determinism, rendering."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from PIL import Image

from helpers import ROOT
from tflocal.errors import UserError
from tflocal.shapesworld import (
    HELD_OUT_COLOR_SHAPE,
    HELD_OUT_RELATIONS,
    caption_true_for_scene,
    from_text,
    generate,
    mentions_held_out,
    relation_holds,
)
from tflocal.shapesworld.vocab import COLORS


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("shapes")
    meta = generate(out, 120, 20, 28, seed=5, workers=1, progress=False)
    rows = {
        s: [json.loads(x) for x in (out / f"{s}.jsonl").read_text().splitlines()]
        for s in ("train", "test_id", "test_ood")
    }
    return out, meta, rows


def _scene(*objs):
    return {"image_size": 224, "grid": 3, "objects": [dict(o) for o in objs], "relations": []}


RED_CIRCLE = {
    "shape": "circle",
    "color": "red",
    "size": "small",
    "texture": "plain",
    "x": 37.0,
    "y": 37.0,
    "r": 15,
}
BLUE_SQUARE = {
    "shape": "square",
    "color": "blue",
    "size": "large",
    "texture": "striped",
    "x": 187.0,
    "y": 37.0,
    "r": 28,
}


@pytest.mark.parametrize(
    "text,truth",
    [
        ("a red circle left of a blue square", True),
        ("a small red circle to the left of a large striped blue square", True),
        ("a blue square right of a red circle", True),
        ("a blue square left of a red circle", False),  # swap relation
        ("a blue circle left of a red square", False),  # swap attribute
        ("a large red circle left of a blue square", False),  # replace attribute
        ("a red circle above a blue square", False),  # replace relation (same row)
        ("a red circle and a red circle", False),  # two mentions need two objects
        ("a red circle and a green star", False),  # add object
        ("a dotted blue square", False),  # add attribute
    ],
)
def test_truth_function_by_hand(text, truth):
    struct = from_text(text)
    assert struct is not None
    assert caption_true_for_scene(struct, _scene(RED_CIRCLE, BLUE_SQUARE)) is truth


def test_every_negative_is_false_and_every_caption_true(data):
    _, _, rows = data
    n = 0
    for split_rows in rows.values():
        for row in split_rows:
            scene = row["scene"]
            for cap, struct in zip(row["captions"], row["structured_captions"]):
                assert from_text(cap) == struct  # text says exactly the structured caption
                assert caption_true_for_scene(struct, scene)
            for neg in row["negatives"]:
                st = from_text(neg["text"])
                assert st is not None, neg
                assert not caption_true_for_scene(st, scene), (row["captions"], neg)
                n += 1
    assert n > 500


def test_operators_depths_and_swap_attribute_coverage(data):
    _, meta, rows = data
    negs = [n for r in rows["train"] for n in r["negatives"]]
    for d in (1, 2, 3):
        assert sum(1 for n in negs if n["op"] == "swap" and n["kind"] == "attribute" and n["depth"] == d) >= 5
    labels = {(n["op"], n["kind"]) for n in negs if n["depth"] == 1}
    for key in [
        ("swap", "attribute"),
        ("swap", "relation"),
        ("swap", "object"),
        ("replace", "attribute"),
        ("replace", "object"),
        ("replace", "relation"),
        ("add", "attribute"),
        ("add", "object"),
    ]:
        assert key in labels
    assert meta["counts"]["train"]["negatives"] == len(negs)


def test_no_held_out_combination_in_train(data):
    _, meta, rows = data
    pairs = {tuple(p) for p in meta["config"]["held_out_color_shape"]}
    facts = [tuple(f) for f in meta["config"]["held_out_relations"]]
    assert pairs == set(HELD_OUT_COLOR_SHAPE) and facts == HELD_OUT_RELATIONS
    for row in rows["train"] + rows["test_id"]:
        objs, cell = row["scene"]["objects"], 224 / 3
        assert not any((o["color"], o["shape"]) in pairs for o in objs)
        for a, rel, b in facts:
            assert not any(
                x["shape"] == a and y["shape"] == b and relation_holds(x, y, rel, cell)
                for x in objs
                for y in objs
                if x is not y
            )
    for row in rows["train"]:
        for text in row["captions"] + [n["text"] for n in row["negatives"]]:
            assert not mentions_held_out(from_text(text), pairs, facts), text


def test_ood_images_hold_a_held_out_combination_named_by_the_first_caption(data):
    _, meta, rows = data
    pairs = [tuple(p) for p in meta["config"]["held_out_color_shape"]]
    facts = [tuple(f) for f in meta["config"]["held_out_relations"]]
    kinds = set()
    for row in rows["test_ood"]:
        assert mentions_held_out(row["structured_captions"][0], pairs, facts)
        kinds.add("pair" if "pair" in row["held_out"] else "fact")
    assert kinds == {"pair", "fact"}


def test_layout_meta_and_pixels(data):
    out, meta, rows = data
    assert meta["counts"]["test_ood"]["images"] == 28 and json.loads((out / "meta.json").read_text()) == meta
    for row in rows["test_id"][:10]:
        assert row["image"] == f"images/test_id/{row['id'].split('/')[1]}.png"
        img = Image.open(out / row["image"])
        assert img.size == (224, 224) and img.mode == "RGB"
        for o in row["scene"]["objects"]:
            if o["texture"] == "plain":
                assert img.getpixel((round(o["x"]), round(o["y"]))) == COLORS[o["color"]]


def _digest(d: Path) -> dict[str, str]:
    return {
        str(p.relative_to(d)): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(d.rglob("*"))
        if p.is_file()
    }


def test_same_seed_same_files_any_worker_count(tmp_path):
    generate(tmp_path / "a", 12, 3, 3, seed=1, workers=1, progress=False)
    generate(tmp_path / "b", 12, 3, 3, seed=1, workers=2, progress=False)
    generate(tmp_path / "c", 12, 3, 3, seed=2, workers=1, progress=False)
    a, b, c = _digest(tmp_path / "a"), _digest(tmp_path / "b"), _digest(tmp_path / "c")
    assert len(a) == 18 + 4 and a == b
    assert a["train.jsonl"] != c["train.jsonl"]


def test_splits_rendered_in_several_calls_give_the_same_files(tmp_path):
    """The quickstart renders train first and the test splits later (beside training)."""
    whole = generate(tmp_path / "a", 12, 3, 3, seed=1, workers=1, progress=False, n_test_novel=3)
    generate(tmp_path / "b", 12, 3, 3, seed=1, workers=1, progress=False, n_test_novel=3, splits=["train"])
    first = json.loads((tmp_path / "b" / "meta.json").read_text())
    assert set(first["counts"]) == {"train"}
    parts = generate(tmp_path / "b", 12, 3, 3, seed=1, workers=1, progress=False, n_test_novel=3,
                     splits=["test_id", "test_ood", "test_novel"])  # fmt: skip
    assert parts == whole
    for f in sorted((tmp_path / "a").rglob("*")):
        if f.is_file():
            assert f.read_bytes() == (tmp_path / "b" / f.relative_to(tmp_path / "a")).read_bytes(), f
    with pytest.raises(UserError, match="unknown split"):
        generate(tmp_path / "c", 1, 1, 1, progress=False, splits=["val"])


def test_shapes_cli(tmp_path):
    from tflocal.app.cli import main
    from tflocal.shapesworld.config import split_counts

    assert split_counts(10000, None, None) == (8000, 1000, 1000)
    assert split_counts(100, 50, 5) == (50, 5, 5)
    assert main(["shapes", "--out", str(tmp_path), "--n", "10", "--seed", "3", "--workers", "1"]) == 0
    assert len((tmp_path / "train.jsonl").read_text().splitlines()) == 8


def test_counterfactual_twins_are_verified_minimal_pairs(tmp_path):
    """--counterfactual: each twin differs from its image by one attribute swapped between two
    objects; its caption (a SWAP negative of the image) is true for it, every caption of the
    original is false for it, no held-out combination appears, and the pair shares a group so
    training uses each image as the other's negative image."""
    from cache_tools.sources import open_source
    from tflocal.pairs.candidates import build_units

    meta = generate(tmp_path, 60, 4, 4, seed=3, workers=1, progress=False, counterfactual=True)
    rows = [json.loads(x) for x in (tmp_path / "train.jsonl").read_text().splitlines()]
    by_id = {r["id"]: r for r in rows}
    twins = [r for r in rows if "counterfactual_of" in r]
    assert meta["config"]["counterfactual"] and meta["counts"]["train"]["counterfactual_images"] == len(twins)
    assert 0.3 * 60 < len(twins) <= 60  # most images with 2+ objects get one
    pairs = {tuple(p) for p in meta["config"]["held_out_color_shape"]}
    for twin in twins:
        orig = by_id[twin["counterfactual_of"]]
        assert twin["group"] == orig["group"] == orig["id"] and twin["id"] == orig["id"] + "cf"
        a, b = orig["scene"]["objects"], twin["scene"]["objects"]
        diffs = [
            (i, k) for i in range(len(a)) for k in ("shape", "color", "size", "texture") if a[i][k] != b[i][k]
        ]
        assert len(diffs) == 2 and diffs[0][1] == diffs[1][1]  # one attribute, two objects
        (i, k), (j, _) = diffs
        assert (a[i][k], a[j][k]) == (b[j][k], b[i][k]) and all(
            (a[m]["x"], a[m]["y"]) == (b[m]["x"], b[m]["y"]) for m in range(len(a))
        )
        assert twin["captions"][0] in [n["text"] for n in orig["negatives"] if n["op"] == "swap"]
        assert caption_true_for_scene(from_text(twin["captions"][0]), twin["scene"])
        assert not any(caption_true_for_scene(from_text(c), twin["scene"]) for c in orig["captions"])
        assert twin["negatives"][0]["text"] in orig["captions"] and twin["negatives"][0]["op"] == "swap"
        assert not any((o["color"], o["shape"]) in pairs for o in b)
        assert Image.open(tmp_path / twin["image"]).size == (224, 224)
    # the JSONL source keeps the group, so the training units pair each image with its twin
    src = open_source(f"shapesworld:{tmp_path}", split="train")
    records = list(src)
    group = {r.id: r.group for r in records}
    assert all(group[t["id"]] == group[t["counterfactual_of"]] == t["counterfactual_of"] for t in twins)

    class _Cache:  # the fields build_units reads, from the records in cache order
        def __init__(self, recs):
            self.image_group = [r.group for r in recs]
            self.n_images = len(recs)
            img, pos = [], []
            for k, r in enumerate(recs):
                base = len(img)
                for t in r.texts:
                    img.append(k)
                    pos.append(-1 if t.positive < 0 else base + t.positive)
            self.image_index, self.positive_index, self.n_texts = img, pos, len(img)

    units = build_units(_Cache(records))
    ids = [r.id for r in records]
    for u in range(len(units)):
        me = ids[units.image[u]]
        mates = [ids[m] for m in units.neg_images[u] if m >= 0]
        twin_id = me + "cf" if me + "cf" in group else by_id[me].get("counterfactual_of")
        assert mates == ([twin_id] if twin_id else [])


def test_rename_keeps_case_and_re_agrees_articles():
    from tflocal.shapesworld.novel import rename

    assert rename("An orange circle is left of a large blue square.") == (
        "A tangerine disc is left of a massive cobalt tile."
    )
    assert rename("there is a green star and an orange hexagon") == (
        "there is an emerald pentagram and a tangerine honeycomb"
    )


def test_novel_names_are_outside_the_shipped_vocabulary_and_one_to_one():
    import re

    from tflocal.shapesworld.novel import NOVEL_NAMES
    from tflocal.shapesworld.vocab import SHAPES, SIZES, TEXTURES

    shipped = ROOT / "tflocal" / "concepts" / "data" / "vocab.json"
    known = set(re.findall(r"[a-z]+", shipped.read_text().lower()))
    closed = {*SHAPES, *COLORS, *SIZES, *TEXTURES} - {"plain"}
    assert set(NOVEL_NAMES) == closed and len(set(NOVEL_NAMES.values())) == len(NOVEL_NAMES)
    assert not set(NOVEL_NAMES.values()) & (known | closed)


RELATION_WORDS = {"left", "right", "above", "below", "of", "to", "the", "is", "a", "an"}
"""Words a REPLACE may bring in besides a novel name: a relation ("left of" -> "above"), an article."""


def test_test_novel_split_same_held_out_scenes_novel_words_negatives_still_false(tmp_path):
    """Every test_novel caption is true and every negative false for its scene once the names are
    mapped back; no caption uses a closed ShapesWorld word; the first caption names a held-out
    combination; SWAP, REPLACE and ADD all occur, and a REPLACE stays within the novel names."""
    import re

    from tflocal.shapesworld.novel import NOVEL_NAMES, rename
    from tflocal.shapesworld.vocab import SHAPES, SIZES, TEXTURES

    meta = generate(tmp_path, 4, 2, 2, seed=5, workers=1, progress=False, n_test_novel=24)
    rows = [json.loads(x) for x in (tmp_path / "test_novel.jsonl").read_text().splitlines()]
    assert len(rows) == meta["counts"]["test_novel"]["images"] == 24
    back = {v: k for k, v in NOVEL_NAMES.items()}
    closed = {*SHAPES, *COLORS, *SIZES, *TEXTURES}
    pairs = [tuple(p) for p in meta["config"]["held_out_color_shape"]]
    facts = [tuple(f) for f in meta["config"]["held_out_relations"]]
    ops, vocab, replaced_words = set(), set(NOVEL_NAMES.values()), set()
    for row in rows:
        assert row["split"] == "test_novel" and row["names"] == "novel"
        assert mentions_held_out(row["structured_captions"][0], pairs, facts)
        for text in row["captions"] + [n["text"] for n in row["negatives"]]:
            words = re.findall(r"[a-z]+", text.lower())
            assert not set(words) & closed, text
            assert not re.search(r"\ban [bcdfgmprstvw]|\ba [aeio]", text.lower()), text  # articles agree
        for text in row["captions"]:
            assert caption_true_for_scene(from_text(rename(text, back)), row["scene"]), text
        for neg in row["negatives"]:
            ops.add(neg["op"])
            assert not caption_true_for_scene(from_text(rename(neg["text"], back)), row["scene"]), neg
            if neg["op"] == "replace" and neg["depth"] == 1:
                new = set(re.findall(r"[a-z]+", neg["text"].lower())) - set(
                    re.findall(r"[a-z]+", row["captions"][neg["positive"]].lower())
                )
                assert new and new <= vocab | RELATION_WORDS, (neg, row["captions"])
                replaced_words |= new & vocab
    assert {"swap", "replace", "add"} <= ops and len(replaced_words) > 5


def test_shapes_cli_renders_test_novel(tmp_path):
    from tflocal.app.cli import main

    assert main(["shapes", "--out", str(tmp_path), "--n", "20", "--n-novel", "3", "--workers", "1"]) == 0
    assert len((tmp_path / "test_novel.jsonl").read_text().splitlines()) == 3


def test_vary_names_renames_a_share_of_train_only_never_with_a_novel_word(tmp_path):
    """--vary-names: about that share of train images use other names (one map per image, kept
    across its captions and negatives, so every caption stays true and every negative false),
    no train text uses a test_novel word, and the test splits keep the closed names."""
    import re

    from tflocal.shapesworld.novel import NOVEL_NAMES, TRAIN_NAMES, rename

    assert not {w for alts in TRAIN_NAMES.values() for w in alts} & (
        set(NOVEL_NAMES.values()) | set(NOVEL_NAMES)
    )
    meta = generate(tmp_path, 60, 4, 4, seed=3, workers=1, progress=False, vary_names=0.5)
    assert meta["config"]["vary_names"] == 0.5
    rows = [json.loads(x) for x in (tmp_path / "train.jsonl").read_text().splitlines()]
    renamed = [r for r in rows if isinstance(r.get("names"), dict)]
    assert 15 <= len(renamed) <= 45
    novel = set(NOVEL_NAMES.values())
    for row in rows:
        texts = row["captions"] + [n["text"] for n in row["negatives"]]
        assert not {w for t in texts for w in re.findall(r"[a-z]+", t.lower())} & novel
    used = set()
    for row in renamed:
        back = {v: k for k, v in row["names"].items()}
        used |= set(row["names"].values())
        for text in row["captions"]:
            assert caption_true_for_scene(from_text(rename(text, back)), row["scene"]), text
        for neg in row["negatives"]:
            assert not caption_true_for_scene(from_text(rename(neg["text"], back)), row["scene"]), neg
    assert len(used) > 10
    for split in ("test_id", "test_ood"):
        assert all(
            "names" not in json.loads(x) for x in (tmp_path / f"{split}.jsonl").read_text().splitlines()
        )
    # the same seed gives the same render
    again = generate(tmp_path / "again", 60, 4, 4, seed=3, workers=2, progress=False, vary_names=0.5)
    assert (tmp_path / "again" / "train.jsonl").read_text() == (tmp_path / "train.jsonl").read_text()
    assert again["counts"] == meta["counts"]


def test_vary_names_out_of_range_is_one_clear_error(tmp_path, capsys):
    from tflocal.app.cli import main

    assert main(["shapes", "--out", str(tmp_path), "--n", "20", "--vary-names", "1.5"]) == 2
    err = capsys.readouterr().err
    assert "--vary-names" in err and "0..1" in err and "Traceback" not in err
