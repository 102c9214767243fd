"""tools/world3d_figures.py --seeds: the 3D group scores over training seeds, from the seeds
bench's JSON line."""

from __future__ import annotations

import json

import pytest

from helpers import load_script


def load_tool():
    return load_script("tools/world3d_figures.py")


def test_seeds_table_gives_means_ranges_and_the_smallest_lead(tmp_path):
    tool = load_tool()

    def row(subset, scorer, values, metric="group"):
        return {"subset": subset, "scorer": scorer, "metric": metric, "n": 33, "values": values,
                "mean": sum(values) / len(values), "min": min(values), "max": max(values)}  # fmt: skip

    figures = {
        "rows": [
            row("test_ood/size", "global head", [0.0, 3.0]),
            row("test_ood/size", "TFLocal", [50.0, 40.0]),
            row("test_ood/size", "SGI (global head on crops)", [20.0, 45.0]),
            row("test_ood/size", "TFLocal", [90.0, 90.0], metric="text"),
            row("test_id/size", "TFLocal", [10.0, 10.0]),
        ]
    }
    log = tmp_path / "seeds.log"
    log.write_text("seed 0: train ...\n" + json.dumps(figures) + "\n")
    table = tool.seeds_table(log).splitlines()
    assert table[0] == (
        "| category | global head | TFLocal | SGI (global head on crops) | min TFLocal − global head "
        "| min TFLocal − SGI (global head on crops) | n |"
    )
    assert table[2] == "| size | 1.5 [0.0, 3.0] | 45.0 [40.0, 50.0] | 32.5 [20.0, 45.0] | +37.0 | -5.0 | 33 |"
    assert len(table) == 3  # test_ood only; the text score and test_id are not rows
    (tmp_path / "empty.log").write_text("no figures\n")
    with pytest.raises(SystemExit, match="no JSON line"):
        tool.seeds_table(tmp_path / "empty.log")
