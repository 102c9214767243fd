"""The report's pictures fit a page: per-split bar panels, heatmaps drawn over the encoder's crop."""

from __future__ import annotations

import numpy as np
from PIL import Image

from tflocal.evaluate.plots import _panels, alignment_plot, subset_bars
from tflocal.evaluate.report import Row

SUBSETS = ["all", "add", "add/attribute", "replace", "replace/object", "swap", "swap/relation", "depth1"]


def test_bars_one_panel_per_split_and_at_most_1600_px_wide(tmp_path):
    rows = [
        Row("shapesworld", f"{split}/{sub}", "accuracy", 0.5 + 0.01 * k, 100, scorer)
        for split in ("test_id", "test_ood", "test_novel", "test_extra")
        for k, sub in enumerate(SUBSETS * 3)
        for scorer in ("global head", "TFLocal", "MaxSim")
    ]
    panels = _panels(rows)
    assert list(panels) == ["test_id", "test_ood", "test_novel", "test_extra"]
    assert [s for s, _ in panels["test_ood"]] == [f"test_ood/{s}" for s in SUBSETS]
    w, h = Image.open(subset_bars(rows, tmp_path / "bars.png")).size
    assert w <= 1600 and h <= 2000, (w, h)
    # subsets without a split prefix (SugarCrepe-style) and other metrics: one panel
    flat = [Row("wino", "all", m, 0.3, 10, "cosine") for m in ("text", "image", "group")]
    assert list(_panels(flat)) == [""]
    assert Image.open(subset_bars(flat, tmp_path / "flat.png")).size[0] <= 1600


def test_heatmap_drawn_with_geometry(tmp_path):
    att = np.random.default_rng(0).random((3, 49))
    img = np.zeros((224, 224, 3), np.uint8)
    geo = {"mode": "center_crop", "resize": 256, "crop": 224}
    path = alignment_plot(
        att, ["[CLS]", "red", "circle"], (7, 7), tmp_path / "h.png", image=img, geometry=geo
    )
    assert path.read_bytes()[:4] == b"\x89PNG"
