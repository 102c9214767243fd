"""Source registry and the generic JSONL / ShapesWorld manifests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from cache_tools.sources import SOURCES, open_source, parse_spec
from cache_tools.sources.records import ImageRecord, TextRecord
from tflocal.errors import UserError


def png(path: Path, color=(255, 0, 0), size=(8, 6)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def write_jsonl(path: Path, lines: list) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


# --- registry ------------------------------------------------------------------------------


def test_registry_lists_every_format():
    assert set(SOURCES) == {
        "jsonl",
        "shapesworld",
        "world3d",
        "coco",
        "karpathy",
        "sugarcrepe",
        "bivlc",
        "winoground",
        "aro",
        "vg_relation",
        "vg_attribution",
        "coco_order",
        "flickr_order",
        "valse",
        "wds",
    }


def test_unknown_format_lists_choices(tmp_path):
    with pytest.raises(UserError) as err:
        open_source(f"nosuch:{tmp_path}")
    msg = str(err.value)
    assert "nosuch" in msg and "sugarcrepe" in msg and "winoground" in msg and "jsonl" in msg


def test_spec_without_format_is_user_error(tmp_path):
    with pytest.raises(UserError, match="FORMAT:PATH"):
        parse_spec(str(tmp_path).lstrip("/").replace(":", ""))
    assert parse_spec("SugarCrepe:/a/b:c") == ("sugarcrepe", "/a/b:c")


@pytest.mark.parametrize("fmt", sorted(SOURCES))
def test_missing_path_names_it(tmp_path, fmt):
    missing = tmp_path / "not_here"
    with pytest.raises(UserError) as err:
        open_source(f"{fmt}:{missing}")
    assert str(missing) in str(err.value)


def test_unknown_option_names_it_and_the_choices(tmp_path):
    m = write_jsonl(tmp_path / "m.jsonl", [{"image": "a.png", "caption": "x"}])
    with pytest.raises(UserError) as err:
        open_source(f"jsonl:{m}", colour="red")
    assert "colour" in str(err.value) and "split" in str(err.value)


def test_images_override_must_be_a_directory(tmp_path):
    m = write_jsonl(tmp_path / "m.jsonl", [{"image": "a.png", "caption": "x"}])
    with pytest.raises(UserError, match="not_a_dir"):
        open_source(f"jsonl:{m}", images=tmp_path / "not_a_dir")


# --- jsonl ---------------------------------------------------------------------------------


@pytest.fixture
def manifest(tmp_path) -> Path:
    png(tmp_path / "imgs" / "a.png")
    png(tmp_path / "imgs" / "b.png", (0, 0, 255))
    png(tmp_path / "imgs" / "b_neg.png", (0, 255, 0))
    return write_jsonl(
        tmp_path / "manifest.jsonl",
        [
            {
                "id": "a",
                "image": "imgs/a.png",
                "captions": ["a red cube", "  a cube that is red  "],
                "negatives": [
                    "a blue cube",
                    {"text": "a red ball", "op": "replace", "kind": "obj", "depth": 1, "positive": 1},
                ],
                "scene": {"n": 1},
            },
            "{not json",
            "",
            {"image": "imgs/b.png", "caption": "a blue cube", "negative_images": ["imgs/b_neg.png"]},
            {"id": "c", "image": "imgs/a.png", "captions": ["", 3]},
            {"id": "d", "captions": ["no image"]},
            {
                "id": "e",
                "image": "imgs/a.png",
                "captions": ["ok"],
                "negatives": [{"text": " "}, {"text": "x", "positive": 5}],
            },
        ],
    )


def test_jsonl_records_exact(manifest, tmp_path):
    src = open_source(f"jsonl:{manifest}")
    recs = list(src)
    assert [r.id for r in recs] == ["a", "imgs/b.png", "imgs/b.png#neg0", "e"]
    a = recs[0]
    assert a == ImageRecord(
        "a",
        str(tmp_path / "imgs" / "a.png"),
        [
            TextRecord("a red cube"),
            TextRecord("a cube that is red"),
            TextRecord("a blue cube", 0),
            TextRecord("a red ball", 1, "replace", "object", {"depth": 1}),
        ],
        group="",
        meta={"scene": {"n": 1}},
    )
    b, bneg = recs[1], recs[2]
    assert b.texts == [TextRecord("a blue cube")] and b.group == "imgs/b.png"
    assert (
        bneg.texts == [] and bneg.group == "imgs/b.png" and bneg.image == str(tmp_path / "imgs" / "b_neg.png")
    )
    assert bneg.meta == {"role": "negative_image", "of": "imgs/b.png"}
    assert Path(b.image).is_file() and Path(a.image).is_file()
    assert recs[3].texts == [TextRecord("ok")]


def test_jsonl_skips_bad_entries_and_goes_on(manifest):
    src = open_source(f"jsonl:{manifest}")
    list(src)
    items = dict(src.skipped)
    assert "malformed JSON" in items["manifest.jsonl:2"]
    assert "empty" in items["manifest.jsonl:5 (c) caption 0"]
    assert "empty" in items["manifest.jsonl:5 (c) caption 1"]
    assert "no usable caption" in items["manifest.jsonl:5"]
    assert '"image"' in items["manifest.jsonl:6"]
    assert "empty" in items["manifest.jsonl:7 (e) negative 0"]
    assert "positive=5" in items["manifest.jsonl:7 (e) negative 1"]
    assert len(src.skipped) == 7


def test_jsonl_is_deterministic_and_len_matches(manifest):
    src = open_source(f"jsonl:{manifest}")
    first, second = list(src), list(src)
    assert first == second
    assert len(src) == 4
    assert len(open_source(f"jsonl:{manifest}")) == 4  # len before any iteration


def test_jsonl_duplicate_ids_are_skipped(tmp_path):
    m = write_jsonl(
        tmp_path / "m.jsonl",
        [{"image": "x.png", "caption": "one"}, {"image": "x.png", "caption": "two"}],
    )
    src = open_source(f"jsonl:{m}")
    recs = list(src)
    assert [r.texts[0].text for r in recs] == ["one"]
    assert src.skipped[0][0] == "x.png" and "duplicate" in src.skipped[0][1]


def test_jsonl_images_override(tmp_path):
    m = write_jsonl(
        tmp_path / "m.jsonl", [{"image": "x.png", "caption": "one"}, {"image": "/abs/y.png", "caption": "t"}]
    )
    other = tmp_path / "elsewhere"
    other.mkdir()
    recs = list(open_source(f"jsonl:{m}", images=other))
    assert recs[0].image == str(other / "x.png")
    assert recs[1].image == "/abs/y.png"


@pytest.fixture
def shapes_dir(tmp_path) -> Path:
    d = tmp_path / "shapes"
    d.mkdir()
    for split, n in (("train", 2), ("test_id", 1), ("test_ood", 1)):
        write_jsonl(
            d / f"{split}.jsonl",
            [
                {
                    "id": f"{split}-{i}",
                    "image": f"images/{split}/{i}.png",
                    "captions": [f"caption {split} {i}"],
                    "negatives": [{"text": f"neg {i}", "op": "swap", "kind": "attribute", "depth": 2}],
                }
                for i in range(n)
            ],
        )
    return d


def test_jsonl_dir_reads_all_manifests_with_split_meta(shapes_dir):
    recs = list(open_source(f"jsonl:{shapes_dir}"))
    # files in name order: test_id, test_ood, train
    assert [r.id for r in recs] == ["test_id-0", "test_ood-0", "train-0", "train-1"]
    assert [r.meta["split"] for r in recs] == ["test_id", "test_ood", "train", "train"]
    assert recs[2].image == str(shapes_dir / "images" / "train" / "0.png")
    assert recs[2].texts[1] == TextRecord("neg 0", 0, "swap", "attribute", {"depth": 2})


def test_shapesworld_alias_and_split_option(shapes_dir):
    src = open_source(f"shapesworld:{shapes_dir}", split="train")
    assert src.name == "shapesworld"
    assert [r.id for r in src] == ["train-0", "train-1"]
    assert [r.id for r in open_source(f"shapesworld:{shapes_dir}", split="test_id,test_ood")] == [
        "test_id-0",
        "test_ood-0",
    ]
    with pytest.raises(UserError) as err:
        open_source(f"shapesworld:{shapes_dir}", split="val")
    assert "val" in str(err.value) and "test_ood" in str(err.value)


def test_describe_counts(shapes_dir, manifest):
    text = open_source(f"shapesworld:{shapes_dir}").describe()
    assert text.startswith(f"shapesworld:{shapes_dir} - 4 images, 4 captions, 4 negatives, 0 skipped")
    assert "train.jsonl" in text
    text = open_source(f"jsonl:{manifest}").describe()
    assert "4 images, 4 captions, 2 negatives, 1 groups, 7 skipped" in text


def test_empty_dir_is_user_error(tmp_path):
    with pytest.raises(UserError, match=r"\*\.jsonl"):
        open_source(f"jsonl:{tmp_path}")
