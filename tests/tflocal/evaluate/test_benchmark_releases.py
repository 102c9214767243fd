"""Benchmarks in their real published layouts: every item scored (or listed with its reason),
and the report's coverage line (items scored / in the data / published size)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cache_tools.sources import open_source
from cache_tools.store.reader import open_cache
from cache_tools.write.build import record_items
from cache_tools.write.writer import write_cache
from helpers.fakes import FakeEncoder
from tflocal.evaluate import evaluate
from tflocal.evaluate.coverage import Coverage, coverage
from tflocal.evaluate.report import write_markdown


class IndexScorer:
    """Any deterministic score will do: these tests count items, not accuracy."""

    name = "index"
    checkpoint = ""

    def score(self, image_idx, text_idx):
        return np.sin(np.asarray(image_idx) * 7.0 + np.asarray(text_idx) * 3.0)


def png_bytes(color) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), color).save(buf, format="PNG")
    return buf.getvalue()


def png(path: Path, color=(200, 10, 10)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 16), color).save(path)


def cache_of(spec: str, out: Path, **options):
    src = open_source(spec, **options)
    write_cache(
        src, FakeEncoder(), out, batch_size=4, progress=False, skipped_from_source=lambda: src.skipped
    )
    record_items(out, src)
    return src, open_cache(out)


def by_key(rows):
    return {(r.subset, r.metric): r.n for r in rows}


# --- BiVLC: the HF release's two test shards ------------------------------------------------------


def bivlc_rows(start: int, n: int, bad: int | None = None) -> list[dict]:
    rows = []
    for k in range(start, start + n):
        img = b"garbage" if k == bad else png_bytes((k * 30 % 255, 0, 0))
        rows.append(
            {
                "image": {"bytes": img, "path": None},
                "caption": f"a dog {k} on a sofa",
                "negative_image": {"bytes": png_bytes((0, 0, k * 30 % 255)), "path": None},
                "negative_caption": f"a sofa {k} on a dog",
                "type": ["replace", "swap", "add"][k % 3],
                "subtype": "obj",
            }
        )
    return rows


def write_bivlc(d: Path, bad: int | None = None) -> Path:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    (d / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(bivlc_rows(0, 3, bad)), d / "data" / "test-00000-of-00002.parquet")
    pq.write_table(pa.Table.from_pylist(bivlc_rows(3, 3, bad)), d / "data" / "test-00001-of-00002.parquet")
    return d


def test_bivlc_two_shards_every_item_scored(tmp_path):
    d = write_bivlc(tmp_path / "bivlc")
    src, cache = cache_of(f"bivlc:{d}", tmp_path / "b.h5")
    ids = sorted({str(g) for g in cache.image_group})
    assert ids == [f"test/{k}" for k in range(6)]  # the second shard continues the count
    assert src.skipped == [] and src.stats()["items"] == 6
    rows = evaluate("bivlc", cache, IndexScorer())
    assert by_key(rows)[("all", "text")] == 6 == by_key(rows)[("all", "group")]
    assert sum(n for (s, m), n in by_key(rows).items() if m == "text" and s != "all") == 6
    cov = coverage("bivlc", rows, cache)
    assert (cov.scored, cov.in_data, cov.published) == (6, 6, 2933)
    assert cov.line().startswith("WARNING bivlc: 6 items scored / 6 in the data / 2,933 published")
    assert "not the full published release" in cov.line() and "not scored" not in cov.line()


def test_bivlc_unreadable_item_is_listed_not_lost(tmp_path):
    d = write_bivlc(tmp_path / "bivlc", bad=4)
    src, cache = cache_of(f"bivlc:{d}", tmp_path / "b.h5")
    rows = evaluate("bivlc", cache, IndexScorer())
    assert by_key(rows)[("all", "text")] == 5
    assert [i for i, _ in cache.skipped] == ["test/4"]
    cov = coverage("bivlc", rows, cache)
    assert (cov.scored, cov.in_data, cov.skipped) == (5, 6, 1)
    assert "1 items of the data not scored" in cov.line()


def test_duplicate_on_the_last_line_is_recorded(tmp_path):
    png(tmp_path / "a.png")
    png(tmp_path / "b.png")
    lines = [
        {"id": "x", "image": "a.png", "captions": ["a red square"]},
        {"id": "y", "image": "b.png", "captions": ["a blue square"]},
        {"id": "x", "image": "b.png", "captions": ["a repeated id"]},
    ]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    src, cache = cache_of(f"jsonl:{tmp_path / 'm.jsonl'}", tmp_path / "c.h5")
    assert list(cache.image_ids) == ["x", "y"]
    assert [i for i, _ in cache.skipped] == ["x"] and "duplicate record id" in cache.skipped[0][1]


# --- Winoground: data/examples.jsonl + data/images/ ----------------------------------------------

WINO_TAGS = [("Noun", "Object"), ("Verb", "Relation"), ("Adjective-Color", "Both"), ("Verb", "Relation")]


def test_winoground_release_layout_rows_per_collapsed_tag(tmp_path):
    d = tmp_path / "winoground"
    lines = []
    for i, (tag, collapsed) in enumerate(WINO_TAGS):
        for x in (0, 1):
            png(d / "data" / "images" / f"ex_{i}_img_{x}.png", (i * 40, x * 200, 0))
        item = {"id": i, "image_0": f"ex_{i}_img_0", "image_1": f"ex_{i}_img_1"}
        item |= {"caption_0": f"an old person kisses a young person {i}"}
        item |= {"caption_1": f"a young person kisses an old person {i}"}
        item |= {"tag": tag, "secondary_tag": "", "num_main_preds": 1, "collapsed_tag": collapsed}
        lines.append(json.dumps(item))
    (d / "data" / "examples.jsonl").write_text("\n".join(lines) + "\n")
    src, cache = cache_of(f"winoground:{d}", tmp_path / "w.h5")
    kinds = {str(cache.kind[t]) for t in range(cache.n_texts) if cache.positive_index[t] >= 0}
    assert kinds == {"object", "relation", ""}  # Both has no single kind
    rows = evaluate("winoground", cache, IndexScorer())
    n = by_key(rows)
    assert n[("all", "text")] == 4 == src.stats()["items"]
    assert (n[("Object", "group")], n[("Relation", "group")], n[("Both", "group")]) == (1, 2, 1)
    cov = coverage("winoground", rows, cache)
    assert (cov.scored, cov.in_data, cov.published) == (4, 4, 400)


# --- VALSE: pieces with the official dataset names ---------------------------------------------

VALSE_PIECES = {
    "existence": ("visual7w", "visual7w/images", "v7w_1.jpg"),
    "plurals": ("coco2017", "val2017", "000000000139.jpg"),
    "relations": ("coco_2017", "val2017", "000000000285.jpg"),
    "foil-it": ("FOIL dataset", "val2014", "COCO_val2014_000000000042.jpg"),
    "actant-swap": ("SWiG", "SWiG", "hugging_1.jpg"),
}


def test_valse_official_dataset_names_every_valid_item_scored(tmp_path):
    d = tmp_path / "valse"
    for piece, (dataset, folder, image) in VALSE_PIECES.items():
        png(d / "images" / folder / image)
        items = {
            f"{piece}_{k}": {
                "dataset": dataset,
                "image_file": image,
                "caption": f"{piece} caption {k}",
                "foil": f"{piece} foil {k}",
                "mturk": {"foil": 0, "caption": 3 - k, "other": k},  # k=2: only 1 vote, not valid
            }
            for k in range(3)
        }
        (d / "data").mkdir(parents=True, exist_ok=True)
        (d / "data" / f"{piece}.json").write_text(json.dumps(items))
    src, cache = cache_of(f"valse:{d}", tmp_path / "v.h5")
    assert cache.skipped == []  # every image found where the official names point
    assert sorted(str(i) for i in cache.image_ids) == sorted(
        f"{f}/{im}" for _, f, im in VALSE_PIECES.values()
    )
    rows = evaluate("valse", cache, IndexScorer())
    n = by_key(rows)
    assert n[("all", "accuracy")] == 10 == src.stats()["items"]  # 5 pieces x 2 valid items
    assert all(n[(p, "accuracy")] == 2 for p in VALSE_PIECES)
    cov = coverage("valse", rows, cache)
    assert (
        cov.complete and cov.line() == "valse: 10 items scored / 10 in the data / published size: as counted"
    )


# --- the report --------------------------------------------------------------------------------


def test_coverage_lines_and_markdown(tmp_path):
    ok = Coverage("sugarcrepe", 7511, 7511, 7511, 0)
    assert ok.complete and ok.line() == "sugarcrepe: 7,511 items scored / 7,511 in the data / 7,511 published"
    old = Coverage("winoground", 400, None, 400, 0)
    assert old.complete and "? (not recorded in the cache)" in old.line()
    short = Coverage("vg_relation", 23900, 23937, 23937, 37)
    assert short.line().startswith("WARNING vg_relation: 23,900 items scored / 23,937 in the data")
    from tflocal.evaluate.report import Row

    path = write_markdown(
        [Row("vg_relation", "all", "accuracy", 0.5, 23900, "cosine")], tmp_path / "r.md", notes=[short.line()]
    )
    assert path.read_text().rstrip().endswith("(37) give each reason")


def test_tflocal_eval_prints_and_writes_the_coverage(tiny_openclip, tmp_path, capsys):
    from tflocal.app.cli import main

    d = write_bivlc(tmp_path / "bivlc", bad=1)
    out = tmp_path / "res"
    args = ["eval", "--bench", "bivlc", "--data", str(d), "--encoder", tiny_openclip, "--out", str(out)]
    assert main([*args, "--heatmaps", "0"]) == 0
    printed = capsys.readouterr().out
    assert "WARNING bivlc: 5 items scored / 6 in the data / 2,933 published" in printed
    cov = json.loads((out / "coverage.json").read_text())
    assert cov == {
        "benchmark": "bivlc",
        "scored": 5,
        "in_data": 6,
        "published": 2933,
        "skipped": 1,
        "complete": False,
    }
    assert "WARNING bivlc: 5 items scored" in (out / "results.md").read_text()
    rows = json.loads((out / "results.json").read_text())
    assert all(isinstance(r["n"], int) and r["n"] > 0 for r in rows)
