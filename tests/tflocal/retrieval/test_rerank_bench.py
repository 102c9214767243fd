"""bench/rerank.py end to end at a tiny size: every row runs (the dual global path's and the bf16
copies' included) and the last line is a JSON object of sane figures."""

from __future__ import annotations

import json
import subprocess
import sys

from helpers import ROOT


def test_rerank_bench_runs_every_row_and_ends_with_its_figures(tmp_path):
    args = ["--images", "600", "--queries", "3", "--slow-queries", "2", "--centroids", "16",
            "--cache", str(tmp_path / "c.h5"), "--index-dir", str(tmp_path / "idx"), "--width", "32",
            "--depth", "1", "--index-width", "32", "--index-depth", "1", "--grid", "4",
            "--seg-candidates", "64", "--candidates", "32", "--k-rerank", "20"]  # fmt: skip
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "rerank.py"), *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert figures["images"] == 600 and figures["first_stage_ms"] > 0
    for key in ("segments_w32_d1_dual_global_re-rank_image_vectors_given_bf16_ms",
                "segments_w32_d1_dual_global_re-rank_stored_vectors_fp16_ms",
                "late_first_stage_segments_w32d1_dual_top_10_ms"):  # fmt: skip
        assert figures[key] > 0, key
    recalls = {k: v for k, v in figures.items() if k.endswith("recall@10_vs_exhaustive")}
    assert len(recalls) == 5 and all(0.0 <= v <= 1.0 for v in recalls.values()), recalls
    # 600 images: the dual global term's best rows join, and the cut keeps 64 to score exactly
    assert figures["late_segments_w32d1_dual_images_scored_exactly"] <= 64
    assert (
        figures["index_segments_w32d1_dual_bytes_per_image"] > figures["index_segments_w32d1_bytes_per_image"]
    )
    assert figures["gpu_joint_ms"] is None
