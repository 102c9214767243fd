"""Benchmark metrics on hand-computed score arrays."""

from __future__ import annotations

import numpy as np
import pytest

from tflocal.evaluate.aro import SYMMETRIC_RELATIONS, vg_attribution_metric, vg_relation_metric
from tflocal.evaluate.groups import group_metric
from tflocal.evaluate.metrics import macro_accuracy, pair_correct, precision_at_1, winoground_correct
from tflocal.evaluate.shapesworld import shapes_metric
from tflocal.evaluate.sugarcrepe import sugarcrepe_metric
from tflocal.evaluate.valse import valse_metric


def test_pair_correct_is_strict():
    assert pair_correct(np.array([0.5, 0.3, 0.1]), np.array([0.4, 0.3, 0.2])).tolist() == [True, False, False]


def test_winoground_conditions():
    # item 0: everything right; item 1: text wrong (c1 beats c0 on i0), image right; item 2: text right, image wrong
    s = np.array(
        [
            [[0.9, 0.2], [0.1, 0.8]],
            [[0.5, 0.1], [0.7, 0.8]],
            [[0.6, 0.7], [0.1, 0.8]],
        ]
    )
    c = winoground_correct(s)
    assert c["text"].tolist() == [True, False, True]
    assert c["image"].tolist() == [True, True, False]
    assert c["group"].tolist() == [True, False, False]
    res = group_metric(s, types=["replace", "swap", "swap"])
    assert res["all"]["text"] == (pytest.approx(2 / 3), 3)
    assert res["swap"]["image"] == (0.5, 2) and res["replace"]["group"] == (1.0, 1)


def test_precision_at_1_counts_ties_with_the_true_caption():
    s = np.array([[0.9, 0.1, 0.2], [0.5, 0.5, 0.1], [0.3, 0.4, 0.1]])
    assert precision_at_1(s).tolist() == [True, True, False]


def test_macro_accuracy_exclusions_and_minimum():
    correct = np.array([1, 0, 1, 1, 0, 1], bool)
    groups = ["a", "a", "b", "b", "c", "d"]
    macro, kept = macro_accuracy(correct, groups, exclude={"c"}, min_count=1)
    assert macro == pytest.approx((0.5 + 1 + 1) / 3) and set(kept) == {"a", "b", "d"}
    macro, kept = macro_accuracy(correct, groups, min_count=2)
    assert macro == pytest.approx(0.75) and set(kept) == {"a", "b"}


def test_sugarcrepe_metric():
    res = sugarcrepe_metric(
        np.array([0.5, 0.3, 0.2, 0.1]),
        np.array([0.4, 0.3, 0.1, 0.9]),
        ["swap_att", "add_obj", "replace_rel", "replace_rel"],
    )
    assert res == {"swap_att": (1.0, 1), "add_obj": (0.0, 1), "replace_rel": (0.5, 2), "all": (0.5, 4)}


def test_vg_relation_drops_symmetric_relations():
    assert "near" in SYMMETRIC_RELATIONS and "on" not in SYMMETRIC_RELATIONS
    pos = np.array([1, 0, 0, 1, 1.0])
    neg = np.array([0, 1, 1, 0, 0.0])
    macro, n_rel, micro, n = vg_relation_metric(pos, neg, ["on", "on", "near", "left of", "left of"])
    assert (macro, n_rel, micro, n) == (pytest.approx(0.75), 2, pytest.approx(0.6), 5)


def test_vg_attribution_needs_25_items_per_pair():
    labels = ["red_blue"] * 26 + ["big_small"] * 25 + ["wet_dry"] * 3
    correct = [1] * 13 + [0] * 13 + [1] * 20 + [0] * 5 + [1] * 3
    pos = np.array(correct, float)
    macro, n_pairs, micro, n = vg_attribution_metric(pos, np.full(len(pos), 0.5), labels)
    assert n_pairs == 2 and macro == pytest.approx((0.5 + 0.8) / 2)
    assert micro == pytest.approx(36 / 54) and n == 54


def test_valse_keeps_valid_items():
    res = valse_metric(
        pos=np.array([1, 0, 0, 1, 1, 0.0]),
        neg=np.array([0, 1, 1, 0, 0, 1.0]),
        pieces=["existence"] * 3 + ["plurals"] * 3,
        valid=[True, True, True, None, False, False],
    )
    assert res["existence"] == (pytest.approx(1 / 3), 3) and res["plurals"] == (1.0, 1)
    assert res["all"] == (0.5, 4) and res["macro"] == (pytest.approx(2 / 3), 2)


def test_shapes_metric_subset_names():
    res = shapes_metric(
        pos=np.array([1, 1, 0, 1, 1.0]),
        neg=np.zeros(5),
        splits=["test_id", "test_id", "test_ood", "test_ood", "test_ood"],
        ops=["swap", "replace", "swap", "swap", "add"],
        kinds=["attribute", "object", "attribute", "attribute", "relation"],
        depths=[1, 2, 1, 2, 2],
    )
    assert res["test_id/all"] == (1.0, 2)
    assert res["test_ood/all"] == (pytest.approx(2 / 3), 3)
    assert res["test_ood/swap/attribute"] == (0.5, 2) and res["test_ood/swap"] == (0.5, 2)
    assert res["test_ood/depth1"] == (0.0, 1) and res["test_ood/depth2"] == (1.0, 2)
    assert res["test_id/replace/object"] == (1.0, 1)
