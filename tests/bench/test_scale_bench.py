"""bench/scale.py end to end at a tiny size: its last line is the JSON of the figures, whose
ratios agree with the rates they divide, and its work folder is gone afterwards."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

from helpers import ROOT, subprocess_pythonpath


def run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "bench/scale.py", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": subprocess_pythonpath()},
    )


def test_scale_bench_prints_its_figures_last(tmp_path):
    work = tmp_path / "scale"
    out = run(
        [
            *("--dir", str(work), "--images", "64", "--shards", "2", "--dd-gb", "0.02"),
            *("--read-batches", "2", "--read-batch", "16", "--workers", "1"),
            *("--index-images", "128", "--sharded-images", "256", "--queries", "3"),
        ]
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    fig = json.loads(lines[-1])
    assert fig["images"] == 64 and fig["texts"] == 64 * 5 * 6 and fig["shards"] == 2
    assert fig["cache_gb"] > 0 and fig["raw_disk_write_mb_s"] > 0 and fig["cache_write_mb_s"] > 0
    assert math.isclose(
        fig["write_over_raw_disk_ratio"], fig["cache_write_mb_s"] / fig["raw_disk_write_mb_s"], rel_tol=0.02
    )
    for name in ("disk_full_shuffle", "disk_chunk_shuffle"):
        rate = fig[f"{name}_pairs_per_s"]
        assert rate > 0 and fig[f"{name}_peak_rss_gib"] >= fig[f"{name}_peak_pss_gib"] > 0
        assert math.isclose(fig[f"{name}_over_memory_ratio"], rate / fig["memory_pairs_per_s"], rel_tol=0.02)
    assert fig["disk_chunk_shuffle_chunk_units"] > 0 and fig["read_batch_units"] == 16
    assert fig["gpu_fwd_gflop_per_pair"] > 0 and fig["gpu_demand_pairs_per_s"] > 0
    assert fig["index_images"] == 128 and fig["index_repeats_of_cache"] == 2
    assert fig["index_bytes_per_image"] > 0 and fig["query_ms_index_images"] > 0
    assert fig["query_sharded_shards"] == 2 and fig["sharded_images"] == 256
    assert lines[0].startswith("64 images x 5 captions") and not work.exists()


def test_scale_bench_bad_input_says_so(tmp_path):
    out = run(["--dir", str(tmp_path / "s"), "--images", "3", "--shards", "2"])
    assert out.returncode == 2 and "at least 2 images per shard" in out.stderr and out.stdout == ""


def test_scale_bench_only_write_stops_after_the_write(tmp_path):
    work = tmp_path / "scale"
    out = run(["--dir", str(work), "--images", "32", "--shards", "2", "--dd-gb", "0.02", "--only", "write"])
    assert out.returncode == 0, out.stderr[-2000:]
    fig = json.loads(out.stdout.strip().splitlines()[-1])
    assert fig["images"] == 32 and fig["cache_write_mb_s"] > 0 and fig["raw_disk_write_mb_s"] > 0
    assert "write_over_raw_disk_ratio" in fig
    assert "memory_pairs_per_s" not in fig and "index_images" not in fig
    assert not work.exists()
