"""``equality_negatives``: train captions "A is the same color as B" get negatives that only the
colours make false; off by default, where the render is as before."""

from __future__ import annotations

import random
from dataclasses import asdict

import pytest

from tflocal.world3d.captions import from_text
from tflocal.world3d.generate import WorldConfig, build_item, equality_negatives, generate
from tflocal.world3d.truth import caption_true_for_scene

BASE = asdict(WorldConfig(seed=3))
ON = asdict(WorldConfig(seed=3, equality_negatives=2))


def _no_relation(struct: dict) -> dict:
    return {"objects": struct["objects"], "relations": []}


def test_negatives_are_false_only_because_of_the_colours():
    found = 0
    for i in range(40):
        for line in build_item((BASE, "train", i, "")):
            scene = line["scene"]
            for struct in line["structured_captions"]:
                negs = equality_negatives(struct, scene, random.Random(i), 5)
                if not any(r[1] == "same color as" for r in struct["relations"]):
                    assert negs == []
                    continue
                found += len(negs)
                j = struct["relations"][0][2]
                for neg in negs:
                    assert "color" not in neg["objects"][j] and neg["relations"] == struct["relations"]
                    assert [m for k, m in enumerate(neg["objects"]) if k != j] == [
                        m for k, m in enumerate(struct["objects"]) if k != j
                    ]
                    assert not caption_true_for_scene(neg, scene)
                    assert caption_true_for_scene(_no_relation(neg), scene)
    assert found > 0


def test_train_items_get_them_and_nothing_else_changes():
    added = 0
    for i in range(40):
        off, on = build_item((BASE, "train", i, "")), build_item((ON, "train", i, ""))
        assert [line["captions"] for line in off] == [line["captions"] for line in on]
        for a, b in zip(off, on):
            assert [n for n in b["negatives"] if n in a["negatives"]] == a["negatives"]
            for neg in [n for n in b["negatives"] if n not in a["negatives"]]:
                added += 1
                st = from_text(neg["text"])
                assert any(r[1] == "same color as" for r in st["relations"]), neg
                assert not caption_true_for_scene(st, b["scene"])
                assert caption_true_for_scene(_no_relation(st), b["scene"])
    assert added > 0
    for i in range(10):  # test splits keep their negatives
        assert build_item((BASE, "test_id", i, "")) == build_item((ON, "test_id", i, ""))


def test_the_default_render_keeps_its_settings(tmp_path):
    meta = generate(tmp_path / "w", 2, 0, 0, workers=1, progress=False)
    assert "equality_negatives" not in meta["config"]
    meta = generate(tmp_path / "w", 2, 0, 0, workers=1, progress=False)  # resumes as before
    with pytest.raises(Exception, match="other settings"):
        generate(tmp_path / "w", 2, 0, 0, workers=1, progress=False, equality_negatives=1)
