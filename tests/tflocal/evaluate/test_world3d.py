"""The world3d bench: a tiny folder in the world3d manifest format (solid-colour images, captions,
text negatives, minimal pairs of four categories), read by the ``world3d`` source, cached with the
fake encoder, and evaluated with a table of known scores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cache_tools.sources import open_source
from cache_tools.store.reader import open_cache
from cache_tools.write.writer import write_cache
from helpers.fakes import FakeEncoder, TableScorer
from tflocal.evaluate import BENCHMARKS, evaluate
from tflocal.evaluate.world3d import minimal_pairs, pair_metric
from tflocal.scoring.load import load_scorer

COLORS = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30), "gray": (128, 128, 128)}

PAIRS = {  # split -> [(pair id, category, c0, c1, colour of image 0, of image 1, negative line first)]
    "test_id": [
        ("pair000000", "color", "a red cube", "a blue cube", "red", "blue", False),
        ("pair000001", "plane", "a red cube left of a blue ball", "a red cube right of a blue ball", "red", "green", True),
    ],
    "test_ood": [("pair000000", "support", "a cube on top of a ball", "a ball on top of a cube", "gray", "green", False)],
    "test_novel": [("pair000000", "depth", "a cube in front of a ball", "a cube behind a ball", "blue", "gray", False)],
}  # fmt: skip


def _negatives(caption: str) -> list[dict]:
    return [
        {"text": f"{caption} swapped", "op": "swap", "kind": "attribute", "depth": 1, "positive": 0},
        {"text": f"{caption} replaced", "op": "replace", "kind": "object", "depth": 2, "positive": 0},
    ]


def _line(root: Path, split: str, rid: str, caption: str, colour: str, **extra) -> dict:
    path = root / "images" / split / f"{rid}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 32), COLORS[colour]).save(path)
    return {
        "id": rid,
        "image": f"images/{split}/{rid}.png",
        "captions": [caption],
        "negatives": _negatives(caption),
        "split": split,
        "scene": {"objects": [{"shape": "cube", "color": colour}]},
        "structured_captions": [{"objects": [caption]}],
        "held_out": split != "test_id",
        **extra,
    }


def make_world3d(root: Path) -> Path:
    """train (one item), test_id (two pairs + an item), test_ood and test_novel (one pair + an item)."""
    lines = {"train": [_line(root, "train", "tr0", "a green ball", "green")]}
    for split, pairs in PAIRS.items():
        out = []
        for pid, cat, c0, c1, col0, col1, neg_first in pairs:
            group = f"{split}/{pid}"
            orig = _line(
                root, split, f"{split}_{pid}_0", c0, col0, group=group, role="original", category=cat
            )
            neg = _line(root, split, f"{split}_{pid}_1", c1, col1, group=group, role="negative", category=cat)
            out += [neg, orig] if neg_first else [orig, neg]
        out.append(_line(root, split, f"{split}_item", "a gray ball", "gray"))
        lines[split] = out
    for split, items in lines.items():
        (root / f"{split}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in items))
    (root / "meta.json").write_text(json.dumps({"generator": "test"}))
    return root


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """(folder, cache of the test splits with crops)."""
    root = make_world3d(tmp_path_factory.mktemp("world3d"))
    src = open_source(f"world3d:{root}", **BENCHMARKS["world3d"].source_options)
    write_cache(
        list(src), FakeEncoder(context_length=16), root / "test.h5", batch_size=8, crops=True, progress=False
    )
    cache = open_cache(root / "test.h5")
    yield root, cache
    cache.close()


def _row(cache, image_id: str) -> int:
    return [str(i) for i in cache.image_ids].index(image_id)


def _caption(cache, image: int) -> int:
    """Text row of the first caption of cache image ``image``."""
    return int(np.flatnonzero((cache.image_index == image) & (cache.positive_index < 0))[0])


def values(rows) -> dict[tuple[str, str], tuple[float, int]]:
    return {(r.subset, r.metric): (pytest.approx(r.value), r.n) for r in rows}


def test_source_reads_group_role_and_category(world):
    root, _ = world
    src = open_source(f"world3d:{root}")
    assert src.name == "world3d"
    recs = {r.id: r for r in src}
    assert len(recs) == 1 + 5 + 3 + 3
    o, n = recs["test_id_pair000001_0"], recs["test_id_pair000001_1"]
    assert o.group == n.group == "test_id/pair000001"
    assert o.meta["role"] == "original" and n.meta["role"] == "negative"
    assert o.meta["category"] == n.meta["category"] == "plane" and o.meta["split"] == "test_id"
    assert recs["test_ood_item"].group == "" and "role" not in recs["test_ood_item"].meta
    assert [t.text for t in o.texts] == [
        "a red cube left of a blue ball",
        "a red cube left of a blue ball swapped",
        "a red cube left of a blue ball replaced",
    ]
    assert [(t.op, t.kind, t.meta["depth"]) for t in o.texts[1:]] == [
        ("swap", "attribute", 1),
        ("replace", "object", 2),
    ]
    assert [r.id for r in open_source(f"world3d:{root}", split="train")] == ["tr0"]


def test_registry_and_minimal_pairs(world):
    _, cache = world
    bench = BENCHMARKS["world3d"]
    assert bench.source == "world3d" and bench.source_options == {"split": "test_id,test_ood,test_novel"}
    images, captions, splits, cats = minimal_pairs(cache)
    assert len(images) == 4 and splits.count("test_id") == 2
    for (i0, i1), (c0, c1) in zip(images, captions):  # image 0 the original, caption k of image k
        assert (
            cache.image_meta(int(i0))["role"] == "original"
            and cache.image_meta(int(i1))["role"] == "negative"
        )
        assert c0 == _caption(cache, i0) and c1 == _caption(cache, i1)
    plane = cats.index("plane")  # its negative line came first in the manifest
    assert str(cache.strings[captions[plane, 0]]) == "a red cube left of a blue ball"


def test_rows_names_and_counts(world):
    _, cache = world
    rows = evaluate("world3d", cache, load_scorer("cosine", cache))
    assert all(r.benchmark == "world3d" and r.scorer == "cosine" for r in rows)
    v = {(r.subset, r.metric): r.n for r in rows}
    assert not any(s.startswith("train") for s, _ in v)
    for split, n_pairs in (("test_id", 2), ("test_ood", 1), ("test_novel", 1)):
        assert v[(f"{split}/all", "accuracy")] == 2 * (2 * n_pairs + 1)  # two negatives per line
        assert v[(f"{split}/swap/attribute", "accuracy")] == 2 * n_pairs + 1
        assert v[(f"{split}/depth2", "accuracy")] == 2 * n_pairs + 1
        for m in ("text", "image", "group"):
            assert v[(f"{split}/groups", m)] == n_pairs
    cats = {(s, m): n for (s, m), n in v.items() if m in ("text", "image", "group")}
    assert {s for s, _ in cats} == {
        "test_id/groups", "test_id/relation", "test_id/color", "test_id/plane",
        "test_ood/groups", "test_ood/relation", "test_ood/support",
        "test_novel/groups", "test_novel/relation", "test_novel/depth",
    }  # fmt: skip
    assert cats[("test_id/relation", "group")] == 1 and cats[("test_id/color", "text")] == 1
    # split by split; within one, the text-negative rows before the minimal pairs
    subsets = [r.subset for r in rows]
    splits = [s.split("/")[0] for s in subsets]
    assert list(dict.fromkeys(splits)) == ["test_id", "test_ood", "test_novel"]
    assert splits == sorted(splits, key=["test_id", "test_ood", "test_novel"].index)
    assert subsets.index("test_id/all") < subsets.index("test_id/groups") < subsets.index("test_id/color")


def test_exact_values_from_known_scores(world):
    _, cache = world
    t = np.zeros((cache.n_images, cache.n_texts))

    def put(split: str, pid: str, s00: float, s10: float, s11: float, s01: float) -> None:
        """s_ci: score of caption c with image i of the pair."""
        i0, i1 = _row(cache, f"{split}_{pid}_0"), _row(cache, f"{split}_{pid}_1")
        c0, c1 = _caption(cache, i0), _caption(cache, i1)
        t[i0, c0], t[i0, c1], t[i1, c1], t[i1, c0] = s00, s10, s11, s01

    # test_id color: everything right; plane: text right (0.5 > 0.4, 0.7 > 0.6), image wrong (0.5 < 0.6)
    put("test_id", "pair000000", 0.9, 0.1, 0.8, 0.2)
    put("test_id", "pair000001", 0.5, 0.4, 0.7, 0.6)
    # test_ood support: text wrong (0.3 < 0.4), image right (0.3 > 0.1, 0.5 > 0.4)
    put("test_ood", "pair000000", 0.3, 0.4, 0.5, 0.1)
    # test_novel depth: all scores 0, ties: every condition fails
    v = values(evaluate("world3d", cache, TableScorer(t)))
    assert v[("test_id/color", "text")] == (1.0, 1) and v[("test_id/color", "group")] == (1.0, 1)
    assert v[("test_id/plane", "text")] == (1.0, 1)
    assert v[("test_id/plane", "image")] == (0.0, 1) and v[("test_id/plane", "group")] == (0.0, 1)
    assert v[("test_id/relation", "text")] == (1.0, 1) and v[("test_id/relation", "group")] == (0.0, 1)
    assert v[("test_id/groups", "text")] == (1.0, 2)
    assert v[("test_id/groups", "image")] == (0.5, 2) and v[("test_id/groups", "group")] == (0.5, 2)
    assert v[("test_ood/support", "text")] == (0.0, 1) and v[("test_ood/support", "image")] == (1.0, 1)
    assert v[("test_ood/groups", "group")] == (0.0, 1)
    assert v[("test_novel/depth", "text")] == (0.0, 1) and v[("test_novel/depth", "image")] == (0.0, 1)
    # text negatives (scored 0): the four pair images of test_id beat both of theirs; its item ties
    assert v[("test_id/all", "accuracy")] == (0.8, 10) and v[("test_id/swap", "accuracy")] == (0.8, 5)
    assert v[("test_id/depth1", "accuracy")] == (0.8, 5)


def test_pair_metric_hand_values():
    s = np.zeros((3, 2, 2))
    s[0] = [[0.9, 0.2], [0.1, 0.8]]  # s[c, i]: all right
    s[1] = [[0.5, 0.6], [0.4, 0.7]]  # text right, image wrong
    s[2] = [[0.3, 0.1], [0.4, 0.5]]  # image right, text wrong
    res = pair_metric(s, ["a", "a", "a"], ["color", "equality", "comparative"])
    assert list(res) == ["a/groups", "a/relation", "a/color", "a/comparative", "a/equality"]
    assert res["a/groups"] == {"text": (2 / 3, 3), "image": (2 / 3, 3), "group": (1 / 3, 3)}
    assert res["a/relation"] == {"text": (0.5, 2), "image": (0.5, 2), "group": (0.0, 2)}
    assert res["a/equality"] == {"text": (1.0, 1), "image": (0.0, 1), "group": (0.0, 1)}


def test_pipeline_builds_crops_and_reports(world, tiny_openclip, tmp_path):
    """`tflocal eval --bench world3d --data DIR` with cosine and sgi: the cache is built from the
    world3d source with crops, and results.md holds the minimal-pair rows."""
    from tflocal.app.pipeline import run_pipeline
    from tflocal.evaluate.config import EvalConfig

    root, _ = world
    cfg = EvalConfig(
        bench="world3d",
        data=str(root),
        encoder=tiny_openclip,
        scorers=["cosine", "sgi:0.5"],
        heatmaps=0,
        out=str(tmp_path / "report"),
    )
    result = run_pipeline(cfg, progress=False)
    with open_cache(tmp_path / "report" / "cache.h5") as c:
        assert c.has_crops and c.n_images == 5 + 3 + 3
    md = (tmp_path / "report" / "results.md").read_text()
    assert "| world3d | test_id/groups | group |" in md and "| world3d | test_novel/depth | text |" in md
    assert {r.scorer for r in result.rows} == {"cosine", "sgi:0.5"}
    assert (tmp_path / "report" / "bars_world3d.png").is_file()
