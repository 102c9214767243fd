"""Chains of operators: a negative's ``chain`` in its manifest form, the evaluator's
``<split>/chain/<chain>`` rows (exact values on hand-made arrays and on a tiny fake cache), and
the chain plot."""

from __future__ import annotations

import random

import numpy as np
import pytest

from tflocal.concepts.negatives import CHAIN_SEP, Negative, chain_name, compose
from tflocal.evaluate.report import Row
from tflocal.evaluate.shapesworld import evaluate_shapesworld, shapes_metric


def test_chain_in_to_json_lists_ops_in_application_order():
    neg = compose(
        "a red circle left of a blue square", [("replace", None), ("swap", "attribute")], random.Random(0)
    )
    assert neg is not None and [op for op, _ in neg.steps] == ["replace", "swap"]
    js = neg.to_json(positive=1)
    assert js["chain"] == "replace" + CHAIN_SEP + "swap" == "replace>swap"
    assert js["op"] == "mixed" and js["depth"] == 2 and js["positive"] == 1
    assert set(js) == {"text", "op", "kind", "depth", "chain", "positive"}
    single = Negative("t", "swap", "attribute", 2, steps=[("swap", "attribute"), ("swap", "object")])
    assert single.to_json()["chain"] == "swap>swap" and chain_name(["add"]) == "add"


def test_shapes_metric_chain_rows_exact():
    res = shapes_metric(
        pos=np.array([1, 0, 1, 1, 0, 1.0]),
        neg=np.zeros(6),
        splits=["test_id"] * 4 + ["test_ood"] * 2,
        ops=["swap", "swap", "mixed", "swap", "swap", "add"],
        kinds=["attribute"] * 6,
        depths=[1, 2, 2, 2, 2, 1],
        chains=["swap", "swap>swap", "replace>swap", "swap>swap", "swap>swap", None],
    )
    assert res["test_id/chain/swap"] == (1.0, 1)
    assert res["test_id/chain/swap>swap"] == (0.5, 2)
    assert res["test_id/chain/replace>swap"] == (1.0, 1)
    assert res["test_ood/chain/swap>swap"] == (0.0, 1)
    assert sorted(k for k in res if "/chain/" in k) == [
        "test_id/chain/replace>swap",
        "test_id/chain/swap",
        "test_id/chain/swap>swap",
        "test_ood/chain/swap>swap",
    ]
    old = shapes_metric(np.ones(2), np.zeros(2), ["test_id"] * 2, ["swap"] * 2, ["attribute"] * 2, [1, 1])
    assert not any("/chain/" in k for k in old) and old["test_id/all"] == (1.0, 2)


class _Cache:
    """Two images (test_id, test_ood); texts: per image a positive and two negatives."""

    attrs: dict = {}
    path = "fake.h5"
    n_images = 2

    def __init__(self, chains: list[str | None]):
        self.image_index = np.array([0, 0, 0, 1, 1, 1])
        self.positive_index = np.array([-1, 0, 0, -1, 3, 3])
        self.op = np.array(["", "swap", "swap", "", "swap", "add"], dtype=object)
        self.kind = np.array(["", "attribute", "attribute", "", "object", "relation"], dtype=object)
        self._chains = chains

    def text_meta(self, t: int) -> dict:
        c = self._chains[t]
        return {"depth": 1 if c is None else c.count(">") + 1, **({"chain": c} if c else {})}

    def image_meta(self, i: int) -> dict:
        return {"split": ["test_id", "test_ood"][i]}


class _Scorer:
    name = "table"

    def score(self, image: np.ndarray, text: np.ndarray) -> np.ndarray:
        table = np.array([0.5, 0.1, 0.9, 0.5, 0.2, 0.3])  # text 2 beats its positive
        return table[text]


def test_evaluator_chain_rows_from_text_meta():
    rows = {
        r.subset: r
        for r in evaluate_shapesworld(_Cache([None, "swap", "swap>swap", None, "swap", "add"]), _Scorer())
    }
    assert (rows["test_id/chain/swap"].value, rows["test_id/chain/swap"].n) == (1.0, 1)
    assert (rows["test_id/chain/swap>swap"].value, rows["test_id/chain/swap>swap"].n) == (0.0, 1)
    assert rows["test_ood/chain/add"].value == 1.0 and rows["test_ood/chain/swap"].value == 1.0
    assert rows["test_id/all"].value == pytest.approx(0.5)
    old = {r.subset for r in evaluate_shapesworld(_Cache([None] * 6), _Scorer())}
    assert "test_id/all" in old and not any("/chain/" in s for s in old)


def test_chain_plot_written_and_kept_out_of_bars(tmp_path):
    from tflocal.app.pipeline import write_report

    def row(subset: str, value: float, scorer: str) -> Row:
        return Row("shapesworld", subset, "accuracy", value, 10, scorer)

    rows = [
        row(s, v, sc)
        for sc in ("global", "tflocal")
        for s, v in [
            ("test_id/all", 0.8),
            ("test_id/depth1", 0.7),
            ("test_id/chain/swap", 0.7),
            ("test_id/chain/swap>swap", 0.6),
            ("test_ood/chain/replace>swap", 0.9),
        ]
    ]
    written = write_report(rows, tmp_path, title="t")
    assert tmp_path / "chains.png" in written and (tmp_path / "chains.png").stat().st_size > 1000
    from tflocal.evaluate.plots import CHAIN_ROW, chain_plot, chain_points

    assert chain_points(rows)["test_id"]["swap>swap"] == {"global": 0.6, "tflocal": 0.6}
    assert CHAIN_ROW.fullmatch("test_id/chain/swap>swap") and not CHAIN_ROW.fullmatch("test_id/swap")
    assert chain_plot([row("test_id/all", 0.5, "global")], tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()
