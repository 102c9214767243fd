"""SugarCrepe, Winoground, BiVLC and VALSE sources on tiny fixtures in the published formats."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
from PIL import Image

from cache_tools.sources import open_source
from cache_tools.sources.parquet import require_pyarrow
from cache_tools.sources.records import ImageRecord, TextRecord
from tflocal.errors import UserError


def dump(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def png(path: Path, color=(255, 0, 0)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (6, 4), color).save(path)
    return path


def png_bytes(color) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (5, 3), color).save(buf, format="PNG")
    return buf.getvalue()


# --- SugarCrepe ----------------------------------------------------------------------------


@pytest.fixture
def sugarcrepe(tmp_path) -> Path:
    d = tmp_path / "sc"
    (d / "val2017").mkdir(parents=True)
    dump(
        d / "swap_att.json",
        {
            "0": {"filename": "1.jpg", "caption": "A red car. ", "negative_caption": "A car red."},
            "10": {"filename": "2.jpg", "caption": "A dog.", "negative_caption": ""},
            "2": {"filename": "2.jpg", "caption": "A big dog.", "negative_caption": "A dog big."},
        },
    )
    dump(
        d / "add_obj.json",
        {"0": {"filename": "2.jpg", "caption": "A dog.", "negative_caption": "A dog and a cat."}},
    )
    dump(
        d / "replace_rel.json",
        {
            "0": {
                "filename": "1.jpg",
                "caption": "A car on a road.",
                "negative_caption": "A car under a road.",
            }
        },
    )
    return d


def test_sugarcrepe_groups_items_by_image(sugarcrepe):
    src = open_source(f"sugarcrepe:{sugarcrepe}")
    recs = list(src)
    root = sugarcrepe / "val2017"
    # subsets in canonical order add_att, add_obj, ..., replace_rel, ..., swap_att; images by first use
    assert recs == [
        ImageRecord(
            "2.jpg",
            str(root / "2.jpg"),
            [
                TextRecord("A dog.", meta={"subset": "add_obj", "item": "0"}),
                TextRecord("A dog and a cat.", 0, "add", "object", {"subset": "add_obj", "item": "0"}),
                TextRecord("A big dog.", meta={"subset": "swap_att", "item": "2"}),
                TextRecord("A dog big.", 2, "swap", "attribute", {"subset": "swap_att", "item": "2"}),
            ],
        ),
        ImageRecord(
            "1.jpg",
            str(root / "1.jpg"),
            [
                TextRecord("A car on a road.", meta={"subset": "replace_rel", "item": "0"}),
                TextRecord(
                    "A car under a road.", 0, "replace", "relation", {"subset": "replace_rel", "item": "0"}
                ),
                TextRecord("A red car.", meta={"subset": "swap_att", "item": "0"}),
                TextRecord("A car red.", 2, "swap", "attribute", {"subset": "swap_att", "item": "0"}),
            ],
        ),
    ]
    assert src.skipped == [("swap_att/10", "empty or missing caption / negative_caption")]
    assert "subsets: add_obj, replace_rel, swap_att" in src.describe()


def test_sugarcrepe_subsets_option_old_names_and_images(sugarcrepe, tmp_path):
    (sugarcrepe / "add_obj.json").rename(sugarcrepe / "add_ent.json")
    imgs = tmp_path / "coco_val"
    imgs.mkdir()
    recs = list(open_source(f"sugarcrepe:{sugarcrepe}", subsets="add_obj", images=imgs))
    assert [(r.id, r.image, [t.meta["subset"] for t in r.texts]) for r in recs] == [
        ("2.jpg", str(imgs / "2.jpg"), ["add_obj", "add_obj"])
    ]
    with pytest.raises(UserError, match="add_rel"):
        open_source(f"sugarcrepe:{sugarcrepe}", subsets="add_rel")


def test_sugarcrepe_errors(tmp_path):
    with pytest.raises(UserError, match="swap_obj.json"):
        open_source(f"sugarcrepe:{tmp_path}")
    dump(tmp_path / "swap_obj.json", {})
    with pytest.raises(UserError, match="val2017"):
        open_source(f"sugarcrepe:{tmp_path}")


def test_sugarcrepe_text_only_reads_captions_without_images(sugarcrepe, tmp_path):
    with_images = list(open_source(f"sugarcrepe:{sugarcrepe}"))
    (sugarcrepe / "val2017").rmdir()
    with pytest.raises(UserError, match="val2017"):
        open_source(f"sugarcrepe:{sugarcrepe}")
    src = open_source(f"sugarcrepe:{sugarcrepe}", text_only=True)
    assert list(src) == with_images  # the same texts, and the paths the images would have
    assert src.skipped == [("swap_att/10", "empty or missing caption / negative_caption")]
    empty = tmp_path / "no_json"
    empty.mkdir()
    with pytest.raises(UserError, match="swap_obj.json"):
        open_source(f"sugarcrepe:{empty}", text_only=True)
    with pytest.raises(UserError, match="text_only"):
        open_source(f"valse:{sugarcrepe}", text_only=True)  # only SugarCrepe reads text alone


# --- Winoground ----------------------------------------------------------------------------


def wino_item(i: int, **kw) -> dict:
    item = {
        "id": i,
        "image_0": f"ex_{i}_img_0",
        "image_1": f"ex_{i}_img_1",
        "caption_0": f"an old person kisses a young person {i}",
        "caption_1": f"a young person kisses an old person {i}",
        "tag": "Noun",
        "secondary_tag": "",
        "num_main_preds": 1,
        "collapsed_tag": "Object",
    }
    return item | kw


def test_winoground_two_records_per_item(tmp_path):
    d = tmp_path / "winoground"
    png(d / "data" / "images" / "ex_0_img_0.png")
    lines = [json.dumps(wino_item(0)), "{oops", json.dumps(wino_item(1, caption_1="", tag="Verb"))]
    # as published: fine-grained "tag", Object / Relation / Both in "collapsed_tag"
    lines.append(json.dumps(wino_item(2, tag="Verb", collapsed_tag="Relation", secondary_tag="Symbolic")))
    (d / "data" / "examples.jsonl").write_text("\n".join(lines) + "\n")
    src = open_source(f"winoground:{d}")
    recs = list(src)
    root = d / "data" / "images"
    c0, c1 = "an old person kisses a young person 0", "a young person kisses an old person 0"
    tags = {"tag": "Noun", "secondary_tag": "", "num_main_preds": 1, "collapsed_tag": "Object"}
    assert recs[:2] == [
        ImageRecord(
            "ex_0_img_0",
            str(root / "ex_0_img_0.png"),
            [
                TextRecord(c0, meta={"item": "0", "caption": 0} | tags),
                TextRecord(c1, 0, "swap", "object", {"item": "0", "caption": 1} | tags),
            ],
            group="0",
            meta={"item": "0", "image": 0},
        ),
        ImageRecord(
            "ex_0_img_1",
            str(root / "ex_0_img_1.png"),
            [
                TextRecord(c1, meta={"item": "0", "caption": 1} | tags),
                TextRecord(c0, 0, "swap", "object", {"item": "0", "caption": 0} | tags),
            ],
            group="0",
            meta={"item": "0", "image": 1},
        ),
    ]
    assert [(r.id, r.group, r.texts[1].kind) for r in recs[2:]] == [
        ("ex_2_img_0", "2", "relation"),
        ("ex_2_img_1", "2", "relation"),
    ]
    assert recs[2].texts[0].meta["secondary_tag"] == "Symbolic"
    assert [s[0] for s in src.skipped] == ["examples.jsonl:2", "1"]
    assert "4 images, 4 captions, 4 negatives, 2 groups, 2 skipped" in src.describe()


def test_winoground_layouts_and_errors(tmp_path):
    with pytest.raises(UserError, match="examples.jsonl"):
        open_source(f"winoground:{tmp_path}")
    (tmp_path / "examples.jsonl").write_text(json.dumps(wino_item(0)) + "\n")
    with pytest.raises(UserError, match="images"):
        open_source(f"winoground:{tmp_path}")
    (tmp_path / "images").mkdir()
    assert next(iter(open_source(f"winoground:{tmp_path}"))).image == str(
        tmp_path / "images" / "ex_0_img_0.png"
    )


# --- BiVLC ---------------------------------------------------------------------------------


def bivlc_item(**kw) -> dict:
    item = {
        "image": "imgs/a.png",
        "caption": "A dog on a sofa.",
        "negative_caption": "A cat on a sofa.",
        "negative_image": "imgs/a_neg.png",
        "type": "replace",
        "subtype": "obj",
    }
    return item | kw


def expected_bivlc(
    iid: str, image, neg_image, op="replace", subtype="obj", kind="object"
) -> list[ImageRecord]:
    meta = {"item": iid, "type": op, "subtype": subtype}
    c, n = "A dog on a sofa.", "A cat on a sofa."
    return [
        ImageRecord(
            f"{iid}:original",
            image,
            [TextRecord(c, meta=meta), TextRecord(n, 0, op, kind, meta)],
            group=iid,
            meta={"role": "original", "item": iid},
        ),
        ImageRecord(
            f"{iid}:negative",
            neg_image,
            [TextRecord(n, meta=meta), TextRecord(c, 0, op, kind, meta)],
            group=iid,
            meta={"role": "negative", "item": iid},
        ),
    ]


def test_bivlc_jsonl(tmp_path):
    lines = [
        json.dumps(bivlc_item()),
        json.dumps(bivlc_item(id="x7", type="swap", subtype="att")),
        "not json",
        json.dumps(bivlc_item(negative_caption=" ")),
        json.dumps(bivlc_item(negative_image=None)),
    ]
    f = tmp_path / "bivlc_test.jsonl"
    f.write_text("\n".join(lines) + "\n")
    src = open_source(f"bivlc:{f}")
    recs = list(src)
    a, an = str(tmp_path / "imgs" / "a.png"), str(tmp_path / "imgs" / "a_neg.png")
    assert recs == expected_bivlc("0", a, an) + expected_bivlc("x7", a, an, "swap", "att", "attribute")
    assert src.skipped == [
        ("bivlc_test.jsonl:3", "malformed JSON (Expecting value)"),
        ("3", "empty or missing caption / negative_caption"),
        ("4", "missing image / negative_image"),
    ]
    # a directory holding the JSONL works too
    assert [r.id for r in open_source(f"bivlc:{tmp_path}")] == [r.id for r in recs]


def test_bivlc_json_dict_and_images_override(tmp_path):
    f = dump(tmp_path / "bivlc.json", {"k1": bivlc_item(), "k2": bivlc_item(subtype="rel")})
    imgs = tmp_path / "pics"
    imgs.mkdir()
    recs = list(open_source(f"bivlc:{f}", images=imgs))
    assert [r.id for r in recs] == ["k1:original", "k1:negative", "k2:original", "k2:negative"]
    assert recs[0].image == str(imgs / "imgs" / "a.png")
    assert recs[3].texts[1].kind == "relation"


def test_bivlc_empty_dir_is_user_error(tmp_path):
    with pytest.raises(UserError, match="parquet"):
        open_source(f"bivlc:{tmp_path}")


def test_parquet_without_pyarrow_says_pip_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(UserError, match="pip install pyarrow"):
        require_pyarrow()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "test-00000-of-00001.parquet").write_bytes(b"PAR1")
    src = open_source(f"bivlc:{tmp_path}")
    with pytest.raises(UserError, match="pip install pyarrow"):
        list(src)


def test_bivlc_parquet_hf_layout(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rows = [
        bivlc_item(
            image={"bytes": png_bytes((255, 0, 0)), "path": None},
            negative_image={"bytes": png_bytes((0, 0, 255)), "path": None},
        ),
        bivlc_item(
            image={"bytes": b"garbage", "path": None},
            negative_image={"bytes": png_bytes((0, 0, 255)), "path": None},
        ),
    ]
    (tmp_path / "data").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "data" / "test-00000-of-00001.parquet")
    pq.write_table(pa.Table.from_pylist(rows[:1]), tmp_path / "data" / "validation-00000-of-00001.parquet")
    src = open_source(f"bivlc:{tmp_path}", split="test")
    recs = list(src)
    assert [r.id for r in recs] == ["test/0:original", "test/0:negative"]
    assert recs[0].image.convert("RGB").getpixel((0, 0)) == (255, 0, 0)
    assert recs[1].image.convert("RGB").getpixel((0, 0)) == (0, 0, 255)
    assert src.skipped[0][0] == "test/1" and "undecodable" in src.skipped[0][1]
    assert len(open_source(f"bivlc:{tmp_path}")) == 4


# --- VALSE ---------------------------------------------------------------------------------


def valse_item(image: str, caption: str, foil: str, votes: int | None, dataset: str = "visual7w") -> dict:
    item = {"dataset": dataset, "image_file": image, "caption": caption, "foil": foil, "classes": "x"}
    if votes is not None:
        item["mturk"] = {"foil": 0, "caption": votes, "other": 3 - votes}
    return item


@pytest.fixture
def valse(tmp_path) -> Path:
    d = tmp_path / "valse"
    (d / "images" / "visual7w").mkdir(parents=True)
    (d / "images" / "actant-swap").mkdir(parents=True)
    dump(
        d / "existence.json",
        {
            "e0": valse_item("v1.jpg", "There are no dogs.", "There are dogs.", 3),
            "e1": valse_item("v2.jpg", "There is a cat.", "There is no cat.", 1),
            "e2": valse_item("v3.jpg", "", "x", 3),
        },
    )
    dump(
        d / "counting-hard.json",
        {"c0": valse_item("v1.jpg", "There are 2 dogs.", "There are 4 dogs.", None)},
    )
    dump(
        d / "actant-swap.json",
        {"a0": valse_item("s1.jpg", "A man hugs a dog.", "A dog hugs a man.", 2, "SWiG")},
    )
    return d


def test_valse_groups_by_image_with_validity(valse):
    src = open_source(f"valse:{valse}")
    recs = list(src)
    root = valse / "images"
    assert [(r.id, r.image) for r in recs] == [
        ("actant-swap/s1.jpg", str(root / "actant-swap" / "s1.jpg")),
        ("visual7w/v1.jpg", str(root / "visual7w" / "v1.jpg")),
        ("visual7w/v2.jpg", str(root / "visual7w" / "v2.jpg")),
    ]
    swap = {"piece": "actant-swap", "item": "a0", "valid": True, "dataset": "SWiG", "classes": "x"}
    swap["mturk"] = {"foil": 0, "caption": 2, "other": 1}
    assert recs[0].texts == [
        TextRecord("A man hugs a dog.", meta=swap),
        TextRecord("A dog hugs a man.", 0, "swap", "object", swap),
    ]
    v1 = recs[1].texts
    assert [(t.text, t.positive, t.op, t.kind, t.meta["piece"], t.meta["valid"]) for t in v1] == [
        ("There are 2 dogs.", -1, "", "", "counting-hard", None),
        ("There are 4 dogs.", 0, "replace", "", "counting-hard", None),
        ("There are no dogs.", -1, "", "", "existence", True),
        ("There are dogs.", 2, "replace", "", "existence", True),
    ]
    assert recs[2].texts[0].meta["valid"] is False
    assert src.skipped == [("existence/e2", "empty or missing caption / foil")]


def test_valse_pieces_option_and_images_root(valse, tmp_path):
    imgs = tmp_path / "flat"
    imgs.mkdir()
    recs = list(open_source(f"valse:{valse}", pieces="existence", images=imgs))
    assert [(r.id, r.image) for r in recs] == [
        ("v1.jpg", str(imgs / "v1.jpg")),
        ("v2.jpg", str(imgs / "v2.jpg")),
    ]
    with pytest.raises(UserError) as err:
        open_source(f"valse:{valse}", pieces="plurals")
    assert "plurals" in str(err.value) and "existence" in str(err.value)


def test_valse_needs_pieces_and_images(tmp_path):
    with pytest.raises(UserError, match="existence.json"):
        open_source(f"valse:{tmp_path}")
    dump(tmp_path / "data" / "plurals.json", {})
    with pytest.raises(UserError, match="images"):
        open_source(f"valse:{tmp_path}")


class _FakeBatch:
    def __init__(self, rows):
        self.rows = rows

    def to_pylist(self):
        return self.rows


class _FakeParquetFile:
    """Stands in for ``pyarrow.parquet.ParquetFile`` (pickled row lists) where pyarrow is absent."""

    def __init__(self, path):
        import pickle

        self.rows = pickle.loads(Path(path).read_bytes())

    def iter_batches(self, batch_size):
        for i in range(0, len(self.rows), batch_size):
            yield _FakeBatch(self.rows[i : i + batch_size])


@pytest.fixture
def fake_pyarrow(monkeypatch):
    """Rows written with :func:`write_rows` read back through the ParquetFile/iter_batches API."""
    import pickle
    import types

    mod = types.ModuleType("pyarrow.parquet")
    mod.ParquetFile = _FakeParquetFile
    pkg = types.ModuleType("pyarrow")
    pkg.parquet = mod
    monkeypatch.setitem(sys.modules, "pyarrow", pkg)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", mod)

    def write_rows(path: Path, rows: list[dict]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(rows))

    return write_rows


def test_bivlc_parquet_rows_decode_hf_image_structs(tmp_path, fake_pyarrow):
    red, blue = (
        {"bytes": png_bytes((255, 0, 0)), "path": None},
        {"bytes": png_bytes((0, 0, 255)), "path": None},
    )
    rows = [bivlc_item(image=red, negative_image=blue) for _ in range(70)]  # > one batch of 64
    rows[1] = bivlc_item(image={"bytes": b"garbage", "path": None}, negative_image=blue)
    rows[2] = bivlc_item(image={"bytes": None, "path": "x/y.png"}, negative_image=blue)
    fake_pyarrow(tmp_path / "data" / "test-00000-of-00001.parquet", rows)
    fake_pyarrow(tmp_path / "data" / "validation-00000-of-00001.parquet", rows[:1])
    src = open_source(f"bivlc:{tmp_path}")
    recs = list(src)
    assert [r.id for r in recs[:4]] == [
        "test/0:original",
        "test/0:negative",
        "test/2:original",
        "test/2:negative",
    ]
    assert recs[0].image.convert("RGB").getpixel((0, 0)) == (255, 0, 0)
    assert recs[1].image.convert("RGB").getpixel((0, 0)) == (0, 0, 255)
    assert recs[2].image == str(tmp_path / "data" / "x" / "y.png")
    assert recs[0].texts == expected_bivlc("test/0", None, None)[0].texts
    assert recs[-1].id == "validation/0:negative"
    assert len(recs) == 2 * 69 + 2
    assert src.skipped == [("test/1", "undecodable image bytes (UnidentifiedImageError)")]
    assert [r.id for r in open_source(f"bivlc:{tmp_path}", split="validation")] == [
        "validation/0:original",
        "validation/0:negative",
    ]
    with pytest.raises(UserError, match="split train"):
        open_source(f"bivlc:{tmp_path}", split="train")


def test_winoground_parquet(tmp_path, fake_pyarrow):
    item = wino_item(5) | {"image_0": {"bytes": png_bytes((0, 255, 0)), "path": None}}
    item["image_1"] = {"bytes": png_bytes((9, 9, 9)), "path": None}
    fake_pyarrow(tmp_path / "data" / "test-00000-of-00001.parquet", [item])
    recs = list(open_source(f"winoground:{tmp_path}"))
    assert [(r.id, r.group) for r in recs] == [("ex_5_img_0", "5"), ("ex_5_img_1", "5")]
    assert recs[1].image.convert("RGB").getpixel((1, 1)) == (9, 9, 9)
    assert recs[1].texts[0].text == "a young person kisses an old person 5"
