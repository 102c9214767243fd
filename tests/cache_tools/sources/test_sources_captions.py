"""COCO captions and Karpathy-split sources."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cache_tools.sources import open_source
from cache_tools.sources.records import TextRecord
from tflocal.errors import UserError


def dump(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def coco(tmp_path) -> Path:
    (tmp_path / "coco" / "val2017").mkdir(parents=True)
    return dump(
        tmp_path / "coco" / "annotations" / "captions_val2017.json",
        {
            "images": [
                {"id": 7, "file_name": "000000000007.jpg"},
                {"id": 3, "file_name": "000000000003.jpg"},
                {"id": 9, "file_name": "000000000009.jpg"},
                {"id": 10},
            ],
            "annotations": [
                {"image_id": 3, "id": 100, "caption": "A dog. "},
                {"image_id": 7, "id": 101, "caption": "A cat."},
                {"image_id": 3, "id": 102, "caption": "A brown dog."},
                {"image_id": 7, "id": 103, "caption": "   "},
            ],
        },
    )


def test_coco_records_in_image_order_with_annotation_order(coco, tmp_path):
    src = open_source(f"coco:{coco}")
    recs = list(src)
    root = tmp_path / "coco" / "val2017"
    assert [(r.id, r.image) for r in recs] == [
        ("000000000007.jpg", str(root / "000000000007.jpg")),
        ("000000000003.jpg", str(root / "000000000003.jpg")),
    ]
    assert recs[0].texts == [TextRecord("A cat.", meta={"annotation_id": 101})]
    assert recs[1].texts == [
        TextRecord("A dog.", meta={"annotation_id": 100}),
        TextRecord("A brown dog.", meta={"annotation_id": 102}),
    ]
    assert recs[1].meta == {"coco_id": 3}
    assert dict(src.skipped) == {
        "annotation 103": "empty or missing caption",
        "000000000009.jpg": "no caption",
        "image 10": 'missing "file_name"',
    }


def test_coco_image_folder_beside_json_or_override(tmp_path):
    j = dump(
        tmp_path / "captions_train2017.json", {"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": []}
    )
    with pytest.raises(UserError, match="train2017"):
        open_source(f"coco:{j}")
    (tmp_path / "train2017").mkdir()
    assert open_source(f"coco:{j}").image_root == tmp_path / "train2017"
    other = tmp_path / "imgs"
    other.mkdir()
    assert open_source(f"coco:{j}", images=other).image_root == other


def test_coco_rejects_non_coco_json(tmp_path):
    (tmp_path / "val2017").mkdir()
    j = dump(tmp_path / "captions_val2017.json", {"foo": 1})
    with pytest.raises(UserError, match="annotations"):
        list(open_source(f"coco:{j}"))


KARPATHY = {
    "dataset": "coco",
    "images": [
        {
            "filepath": "val2014",
            "filename": "COCO_val2014_1.jpg",
            "split": "test",
            "cocoid": 1,
            "imgid": 0,
            "sentences": [{"raw": "A man riding a horse.", "tokens": []}, {"raw": "A horse and rider."}],
        },
        {
            "filepath": "train2014",
            "filename": "COCO_train2014_2.jpg",
            "split": "restval",
            "cocoid": 2,
            "imgid": 1,
            "sentences": [{"raw": "Two cats."}],
        },
        {
            "filepath": "val2014",
            "filename": "COCO_val2014_3.jpg",
            "split": "val",
            "cocoid": 3,
            "imgid": 2,
            "sentences": [{"raw": ""}],
        },
    ],
}


def test_karpathy_all_splits(tmp_path):
    j = dump(tmp_path / "dataset_coco.json", KARPATHY)
    src = open_source(f"karpathy:{j}")
    recs = list(src)
    assert [r.id for r in recs] == ["val2014/COCO_val2014_1.jpg", "train2014/COCO_train2014_2.jpg"]
    assert recs[0].image == str(tmp_path / "val2014" / "COCO_val2014_1.jpg")
    assert recs[0].texts == [
        TextRecord("A man riding a horse.", meta={"caption_index": 0}),
        TextRecord("A horse and rider.", meta={"caption_index": 1}),
    ]
    assert recs[0].meta == {"cocoid": 1, "imgid": 0, "split": "test"}
    assert dict(src.skipped) == {
        "val2014/COCO_val2014_3.jpg caption 0": "empty caption",
        "val2014/COCO_val2014_3.jpg": "no usable caption",
    }


def test_karpathy_split_option(tmp_path):
    j = dump(tmp_path / "dataset_coco.json", KARPATHY)
    assert [r.meta["split"] for r in open_source(f"karpathy:{j}", split="test")] == ["test"]
    assert [r.meta["split"] for r in open_source(f"karpathy:{j}", split="train,restval")] == ["restval"]
    imgs = tmp_path / "images"
    imgs.mkdir()
    rec = next(iter(open_source(f"karpathy:{j}", split="test", images=imgs)))
    assert rec.image == str(imgs / "val2014" / "COCO_val2014_1.jpg")


def test_karpathy_flickr_without_filepath_uses_flickr30k_images(tmp_path):
    j = dump(
        tmp_path / "dataset_flickr30k.json",
        {
            "images": [
                {"filename": "1000.jpg", "split": "test", "imgid": 0, "sentences": [{"raw": "A dog runs."}]}
            ]
        },
    )
    assert next(iter(open_source(f"karpathy:{j}"))).image == str(tmp_path / "1000.jpg")
    (tmp_path / "flickr30k-images").mkdir()
    rec = next(iter(open_source(f"karpathy:{j}")))
    assert rec.id == "1000.jpg" and rec.image == str(tmp_path / "flickr30k-images" / "1000.jpg")


def test_karpathy_reads_blip_per_split_list(tmp_path):
    j = dump(
        tmp_path / "coco_karpathy_test.json",
        [
            {"image": "val2014/a.jpg", "caption": ["one.", "two."], "image_id": "a"},
            {"image": "val2014/b.jpg", "caption": "three."},
        ],
    )
    recs = list(open_source(f"karpathy:{j}", split="test"))
    assert [(r.id, [t.text for t in r.texts]) for r in recs] == [
        ("val2014/a.jpg", ["one.", "two."]),
        ("val2014/b.jpg", ["three."]),
    ]
    assert recs[0].meta == {"image_id": "a"}


def test_karpathy_needs_a_file(tmp_path):
    with pytest.raises(UserError, match="not a file"):
        open_source(f"karpathy:{tmp_path}")
