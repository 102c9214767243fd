"""bench/render3d.py at a tiny size: its last line is the JSON of the figures, consistent with
the table above it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from helpers import ROOT, subprocess_pythonpath


def test_render3d_bench_prints_its_figures_last():
    out = subprocess.run(
        [sys.executable, "bench/render3d.py", "--n", "2", "--image-size", "64", "--supersample", "2"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": subprocess_pythonpath()},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    figures = json.loads(lines[-1])
    assert figures["n"] == 2 and figures["image_size"] == 64 and figures["supersample"] == 2
    assert (
        figures["s_per_image"] > 0
        and figures["cpu_s_per_image"] > 0
        and figures["images_per_s_2_workers"] > 0
    )
    assert abs(figures["images_per_s_per_core"] * figures["s_per_image"] - 1) < 0.02
    assert figures["parallel_ratio_2_vs_1"] > 0 and figures["png_encode_s_per_image"] > 0
    assert 3 <= figures["objects_per_scene"] <= 7
    assert lines[0].startswith("2 scenes (") and any("2 workers" in line for line in lines)


def test_render3d_bench_bad_input_says_so():
    out = subprocess.run(
        [sys.executable, "bench/render3d.py", "--n", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": subprocess_pythonpath()},
    )
    assert out.returncode == 2 and "give --n >= 2" in out.stderr and out.stdout == ""
