"""Each benchmark's item reconstruction from a cache, with a table of known scores per pair.

The caches are laid out the way the data sources write them (see cache_tools/sources); the
scorer looks each (image, text) score up in a table, so every expected value is computed by
hand from the table.
"""

from __future__ import annotations

import numpy as np
import pytest

from cache_tools.store.reader import open_cache
from cache_tools.write.arrays import write_arrays
from helpers.fakes import JOINT, TableScorer
from tflocal.evaluate import BENCHMARKS, evaluate
from tflocal.evaluate.report import ROW_KEYS
from tflocal.retrieval.first_stage import recall_at_k
from tflocal.scoring.load import load_scorer


def make_cache(
    path, images: list[dict], texts: list[dict], d: int = 8, seed: int = 0, source: str = "test:x"
):
    """images: {id, group?, meta?}; texts: {text?, image, positive=-1, op="", kind="", meta={}}."""
    rng = np.random.default_rng(seed)
    n, m = len(images), len(texts)
    p = write_arrays(
        path,
        {"encoder": "fake:test", "source": source, **JOINT},
        [im["id"] for im in images],
        rng.normal(size=(n, 4, d)),
        rng.normal(size=(n, d)),
        [t.get("text", f"t{j}") for j, t in enumerate(texts)],
        [rng.normal(size=(3, d)).astype(np.float32) for _ in texts],
        rng.normal(size=(m, d)),
        [t["image"] for t in texts],
        [t.get("positive", -1) for t in texts],
        op=[t.get("op", "") for t in texts],
        kind=[t.get("kind", "") for t in texts],
        text_meta=[t.get("meta", {}) for t in texts],
        image_meta=[im.get("meta", {}) for im in images],
        image_group=[im.get("group", "") for im in images],
    )
    return open_cache(p)


def values(rows) -> dict[tuple[str, str], tuple[float, int]]:
    return {(r.subset, r.metric): (pytest.approx(r.value), r.n) for r in rows}


def test_registry_lists_every_benchmark():
    assert {
        "sugarcrepe",
        "bivlc",
        "winoground",
        "vg_relation",
        "vg_attribution",
        "coco_order",
        "flickr_order",
        "valse",
        "shapesworld",
        "coco_retrieval",
        "flickr_retrieval",
    } <= set(BENCHMARKS)


def test_sugarcrepe(tmp_path):
    meta = [
        {"subset": s, "item": str(k)}
        for k, s in enumerate(["swap_att", "add_obj", "replace_rel", "replace_rel"])
    ]
    texts = []
    for k, (img, m) in enumerate(zip([0, 0, 1, 1], meta)):
        texts += [{"image": img, "meta": m}, {"image": img, "positive": 2 * k, "op": "x", "meta": m}]
    cache = make_cache(tmp_path / "sc.h5", [{"id": "a"}, {"id": "b"}], texts)
    t = np.zeros((2, 8))
    t[0, [0, 1, 2, 3]] = [0.5, 0.4, 0.3, 0.3]  # correct; tie = wrong
    t[1, [4, 5, 6, 7]] = [0.2, 0.1, 0.1, 0.9]  # correct; wrong
    rows = evaluate("sugarcrepe", cache, TableScorer(t))
    assert [r.subset for r in rows] == ["add_obj", "replace_rel", "swap_att", "all"]
    v = {(r.subset): (r.value, r.n) for r in rows}
    assert v == {"swap_att": (1.0, 1), "add_obj": (0.0, 1), "replace_rel": (0.5, 2), "all": (0.5, 4)}
    assert all(r.benchmark == "sugarcrepe" and r.scorer == "table" and r.encoder == "fake:test" for r in rows)


def _two_by_two(path, role_key: str):
    """Item A stored image-1-first (tests the ordering), item B in order; captions as the sources write them."""
    if role_key == "image":
        metas = [{"image": 1}, {"image": 0}, {"image": 0}, {"image": 1}]
    else:
        metas = [{"role": "negative"}, {"role": "original"}, {"role": "original"}, {"role": "negative"}]
    images = [{"id": f"r{i}", "group": g, "meta": m} for i, (g, m) in enumerate(zip("AABB", metas))]
    types = ["replace", "replace", "replace", "replace", "swap", "swap", "swap", "swap"]
    texts = []
    for r in range(4):
        texts += [
            {"image": r, "meta": {"type": types[2 * r]}},
            {"image": r, "positive": 2 * r, "meta": {"type": types[2 * r]}},
        ]
    cache = make_cache(path, images, texts)
    t = np.zeros((4, 8))
    # item A: c0 = text 2 (pos of row 1 = image 0), c1 = text 0 (pos of row 0 = image 1)
    t[1, 2], t[1, 0], t[0, 0], t[0, 2] = 0.9, 0.1, 0.8, 0.2  # all conditions hold
    # item B: c0 = text 4 (row 2), c1 = text 6 (row 3): text fails, image holds
    t[2, 4], t[2, 6], t[3, 6], t[3, 4] = 0.5, 0.7, 0.8, 0.1
    return cache, TableScorer(t)


def test_winoground(tmp_path):
    cache, scorer = _two_by_two(tmp_path / "w.h5", "image")
    v = values(evaluate("winoground", cache, scorer))
    assert v == {("all", "text"): (0.5, 2), ("all", "image"): (1.0, 2), ("all", "group"): (0.5, 2)}


def test_bivlc_per_type(tmp_path):
    cache, scorer = _two_by_two(tmp_path / "b.h5", "role")
    v = values(evaluate("bivlc", cache, scorer))
    assert v[("all", "group")] == (0.5, 2)
    assert v[("replace", "text")] == (1.0, 1) and v[("replace", "group")] == (1.0, 1)
    assert v[("swap", "text")] == (0.0, 1) and v[("swap", "image")] == (1.0, 1)


def test_vg_relation(tmp_path):
    rels = ["on", "on", "near", "left of", "left of"]
    correct = [1, 0, 0, 1, 1]
    texts, t = [], np.zeros((5, 10))
    for k, rel in enumerate(rels):
        meta = {"subset": "vg_relation", "item": str(k), "relation_name": rel}
        texts += [{"image": k, "meta": meta}, {"image": k, "positive": 2 * k, "op": "swap", "meta": meta}]
        t[k, 2 * k], t[k, 2 * k + 1] = (0.6, 0.4) if correct[k] else (0.4, 0.6)
    cache = make_cache(tmp_path / "r.h5", [{"id": f"i{k}"} for k in range(5)], texts)
    v = values(evaluate("vg_relation", cache, TableScorer(t)))
    assert v == {("all", "macro_accuracy"): (0.75, 2), ("all", "accuracy"): (0.6, 5)}


def test_vg_attribution(tmp_path):
    labels = [["red", "blue"]] * 26 + [["big", "small"]] * 25 + [["wet", "dry"]] * 3
    correct = [1] * 13 + [0] * 13 + [1] * 20 + [0] * 5 + [1] * 3
    n = len(labels)
    texts, t = [], np.zeros((n, 2 * n))
    for k, (lab, c) in enumerate(zip(labels, correct)):
        meta = {"attributes": lab}
        texts += [{"image": k, "meta": meta}, {"image": k, "positive": 2 * k, "meta": meta}]
        t[k, 2 * k], t[k, 2 * k + 1] = (1, 0) if c else (0, 1)
    cache = make_cache(tmp_path / "a.h5", [{"id": f"i{k}"} for k in range(n)], texts)
    v = values(evaluate("vg_attribution", cache, TableScorer(t)))
    assert v == {("all", "macro_accuracy"): (0.65, 2), ("all", "accuracy"): (36 / 54, 54)}


def test_order_sets(tmp_path):
    texts = []
    for img, n_caps in [(0, 2), (1, 1)]:
        for _ in range(n_caps):
            pos = len(texts)
            texts.append({"image": img})
            texts += [
                {"image": img, "positive": pos, "op": "order", "meta": {"procedure": "aro"}} for _ in range(4)
            ]
    cache = make_cache(tmp_path / "o.h5", [{"id": "a"}, {"id": "b"}], texts)
    t = np.zeros((2, 15))
    t[0, 0:5] = [0.9, 0.1, 0.2, 0.3, 0.4]  # right
    t[0, 5:10] = [0.5, 0.5, 0.1, 0.1, 0.1]  # tie with the true caption: right (ARO's argmax)
    t[1, 10:15] = [0.3, 0.1, 0.4, 0.1, 0.1]  # wrong
    for name in ("coco_order", "flickr_order"):
        rows = evaluate(name, cache, TableScorer(t))
        assert [(r.benchmark, r.subset, r.metric, r.n) for r in rows] == [(name, "all", "precision@1", 3)]
        assert rows[0].value == pytest.approx(2 / 3)
    # negatives not (all) made by ARO's procedure: the row says so
    texts[-1]["meta"] = {"procedure": "tflocal"}
    rows = evaluate(
        "coco_order", make_cache(tmp_path / "o2.h5", [{"id": "a"}, {"id": "b"}], texts), TableScorer(t)
    )
    assert [(r.subset, r.n) for r in rows] == [
        ("all (tflocal perturbations, not comparable to published)", 3)
    ]


def test_valse(tmp_path):
    valid = [True, True, True, None, False]
    pieces = ["existence"] * 3 + ["plurals"] * 2
    correct = [1, 0, 0, 1, 1]
    texts, t = [], np.zeros((1, 10))
    for k, (p, ok, c) in enumerate(zip(pieces, valid, correct)):
        meta = {"piece": p, "item": str(k), "valid": ok}
        texts += [{"image": 0, "meta": meta}, {"image": 0, "positive": 2 * k, "meta": meta}]
        t[0, 2 * k], t[0, 2 * k + 1] = (0.3, 0.2) if c else (0.2, 0.3)
    cache = make_cache(tmp_path / "v.h5", [{"id": "a"}], texts)
    v = values(evaluate("valse", cache, TableScorer(t)))
    assert v[("existence", "accuracy")] == (1 / 3, 3) and v[("plurals", "accuracy")] == (1.0, 1)
    assert v[("all", "accuracy")] == (0.5, 4) and v[("all", "macro_accuracy")] == (2 / 3, 2)


def test_shapesworld(tmp_path):
    images = [{"id": f"i{k}", "meta": {"split": s}} for k, s in enumerate(["train", "test_id", "test_ood"])]
    spec = [  # image, op, kind, depth, correct
        (0, "swap", "attribute", 1, 0),
        (1, "swap", "attribute", 1, 1),
        (1, "replace", "object", 2, 0),
        (2, "swap", "attribute", 1, 0),
        (2, "swap", "attribute", 2, 1),
        (2, "add", "relation", 3, 1),
    ]
    texts, t = [], np.zeros((3, 12))
    for k, (img, op, kind, depth, c) in enumerate(spec):
        texts += [
            {"image": img},
            {"image": img, "positive": 2 * k, "op": op, "kind": kind, "meta": {"depth": depth}},
        ]
        t[img, 2 * k], t[img, 2 * k + 1] = (1, 0) if c else (0, 1)
    cache = make_cache(tmp_path / "s.h5", images, texts)
    v = values(evaluate("shapesworld", cache, TableScorer(t)))
    assert not any(s.startswith("train") for s, _ in v)
    assert v[("test_id/all", "accuracy")] == (0.5, 2)
    assert v[("test_ood/all", "accuracy")] == (2 / 3, 3)
    assert v[("test_ood/swap/attribute", "accuracy")] == (0.5, 2)
    assert v[("test_ood/depth1", "accuracy")] == (0.0, 1) and v[("test_ood/depth3", "accuracy")] == (1.0, 1)
    assert v[("test_id/replace/object", "accuracy")] == (0.0, 1)
    assert ("test_id/ordinary", "accuracy") not in v  # one test_id image: no other image to compare with


def test_shapesworld_ordinary_pairs(tmp_path):
    """Each caption against the caption of another image of the same split."""
    from tflocal.evaluate.shapesworld import ordinary_pairs

    splits = ["test_id", "test_id", "test_id", "test_ood", "test_ood", "train"]
    images = [{"id": f"i{k}", "meta": {"split": s}} for k, s in enumerate(splits)]
    texts = [{"image": k} for k in range(6)] + [{"image": 0}]  # image 0 has two captions
    cache = make_cache(tmp_path / "o.h5", images, texts)
    img, pos, other, sp = ordinary_pairs(cache, {i: s for i, s in enumerate(splits) if s != "train"})
    assert sorted(pos.tolist()) == [0, 1, 2, 3, 4, 6]
    for i, p, o, s in zip(img, pos, other, sp):
        j = cache.image_index[o]
        assert cache.image_index[p] == i and j != i and splits[j] == s and cache.positive_index[o] == -1
    # a scorer that prefers the own caption gets 100%; scores from a table: own 1, others 0
    t = np.zeros((6, 7))
    for k in range(7):
        t[cache.image_index[k], k] = 1
    v = values(evaluate("shapesworld", cache, TableScorer(t)))
    assert v[("test_id/ordinary", "accuracy")] == (1.0, 4) and v[("test_ood/ordinary", "accuracy")] == (
        1.0,
        2,
    )


def test_retrieval_equals_brute_force(tmp_path):
    rng = np.random.default_rng(3)
    n, d = 30, 8
    ig = rng.normal(size=(n + 5, d)).astype(np.float32)
    img_of = np.repeat(np.arange(n + 5), 2)
    tg = ig[img_of] + rng.normal(size=(2 * (n + 5), d)).astype(np.float32)
    images = [{"id": f"i{k}", "meta": {"split": "test" if k < n else "train"}} for k in range(n + 5)]
    texts = [{"image": int(i)} for i in img_of]
    p = write_arrays(
        tmp_path / "r.h5",
        {"encoder": "fake:test", **JOINT},
        [im["id"] for im in images],
        rng.normal(size=(n + 5, 4, d)),
        ig,
        [f"t{j}" for j in range(len(texts))],
        [rng.normal(size=(3, d)).astype(np.float32) for _ in texts],
        tg,
        img_of,
        [-1] * len(texts),
        image_meta=[im["meta"] for im in images],
    )
    cache = open_cache(p)
    sims = (ig[:n] / np.linalg.norm(ig[:n], axis=1, keepdims=True)) @ (
        tg[: 2 * n] / np.linalg.norm(tg[: 2 * n], axis=1, keepdims=True)
    ).T  # test split only
    t2i = np.argsort(-sims.T, axis=1)[:, :10]
    i2t = np.argsort(-sims, axis=1)[:, :10]
    expect = {("t2i", f"R@{k}"): np.mean([img_of[j] in t2i[j, :k] for j in range(2 * n)]) for k in (1, 5, 10)}
    expect |= {
        ("i2t", f"R@{k}"): np.mean([bool({2 * i, 2 * i + 1} & set(i2t[i, :k])) for i in range(n)])
        for k in (1, 5, 10)
    }
    rows = evaluate("coco_retrieval", cache, load_scorer("cosine", cache))
    assert {(r.subset, r.metric): r.value for r in rows} == pytest.approx(expect)
    assert {r.scorer for r in rows} == {"cosine"} and 0 < expect[("t2i", "R@1")] < 1

    # re-ranking the top 5 with maxsim: the numpy re-rank of the brute-force top 5
    ms = load_scorer("maxsim", cache)
    rows = evaluate("coco_retrieval", cache, ms, k_rerank=5)
    rer = {(r.subset, r.metric): r.value for r in rows if r.scorer == "maxsim"}
    top = np.argsort(-sims.T, axis=1)[:, :5]
    s = ms.score(top.ravel(), np.repeat(np.arange(2 * n), 5)).reshape(-1, 5)
    reranked = np.take_along_axis(top, np.argsort(-s, axis=1, kind="stable"), 1)
    want = recall_at_k(reranked, [{int(img_of[j])} for j in range(2 * n)], ks=(1, 5))
    assert rer[("t2i", "R@1")] == pytest.approx(want["R@1"]) and rer[("t2i", "R@5")] == pytest.approx(
        want["R@5"]
    )
    assert ("t2i", "R@10") not in rer  # only 5 re-ranked
    assert all(tuple(vars(r)) == ROW_KEYS for r in rows)
