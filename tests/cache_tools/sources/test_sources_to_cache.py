"""A source's stream goes through the cache writer and comes back intact from the reader."""

from __future__ import annotations

import json

from PIL import Image

from cache_tools.sources import open_source
from cache_tools.store.reader import open_cache
from cache_tools.write.writer import write_cache
from helpers.fakes import FakeEncoder


def test_sugarcrepe_pairs_survive_the_cache(tmp_path):
    d = tmp_path / "sc"
    (d / "val2017").mkdir(parents=True)
    for name, color in (("1.jpg", (255, 0, 0)), ("2.jpg", (0, 0, 255))):
        Image.new("RGB", (32, 32), color).save(d / "val2017" / name)
    items = {
        "0": {"filename": "1.jpg", "caption": "a red car", "negative_caption": "a car red"},
        "1": {"filename": "2.jpg", "caption": "a big dog", "negative_caption": ""},
        "2": {"filename": "3.jpg", "caption": "a missing image", "negative_caption": "an image missing"},
        "3": {"filename": "2.jpg", "caption": "a blue dog", "negative_caption": "a dog blue"},
    }
    (d / "swap_att.json").write_text(json.dumps(items))
    (d / "add_obj.json").write_text(
        json.dumps({"0": {"filename": "1.jpg", "caption": "a car", "negative_caption": "a car and a cat"}})
    )
    src = open_source(f"sugarcrepe:{d}")
    write_cache(
        src,
        FakeEncoder(),
        tmp_path / "c.h5",
        batch_size=2,
        progress=False,
        skipped_from_source=lambda: src.skipped,
    )
    cache = open_cache(tmp_path / "c.h5")
    assert list(cache.image_ids) == ["1.jpg", "2.jpg"]  # 3.jpg unreadable: skipped by the writer
    pairs = {}
    for t in range(cache.n_texts):
        p = int(cache.positive_index[t])
        if p < 0:
            continue
        meta, pmeta = cache.text_meta(t), cache.text_meta(p)
        assert (meta["subset"], meta["item"]) == (pmeta["subset"], pmeta["item"])
        assert cache.image_index[t] == cache.image_index[p]
        pairs[(meta["subset"], meta["item"])] = (
            str(cache.strings[p]),
            str(cache.strings[t]),
            str(cache.op[t]),
        )
    assert pairs == {
        ("add_obj", "0"): ("a car", "a car and a cat", "add"),
        ("swap_att", "0"): ("a red car", "a car red", "swap"),
        ("swap_att", "3"): ("a blue dog", "a dog blue", "swap"),
    }
    skipped = dict(cache.skipped)
    assert skipped["swap_att/1"] == "empty or missing caption / negative_caption"
    assert any("3.jpg" in item for item in skipped)
    cache.close()
