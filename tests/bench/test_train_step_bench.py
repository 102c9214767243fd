"""bench/train_step.py on a tiny quickstart's training cache: its last line the JSON of its
figures, the text side before and now giving the same scores."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from helpers import ROOT, subprocess_pythonpath


@pytest.mark.slow
def test_train_step_bench_compares_the_text_sides_on_the_same_scores(tmp_path):
    env = {**os.environ, "PYTHONPATH": subprocess_pythonpath()}

    def run(args: list[str]) -> subprocess.CompletedProcess:
        out = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
        assert out.returncode == 0, out.stderr[-2000:]
        return out

    qs = tmp_path / "qs"
    run(["-m", "tflocal", "quickstart", "--out", str(qs), "--n-train", "40", "--n-test", "6", "--epochs", "1", "--quiet"])
    out = run(["bench/train_step.py", "--cache", str(qs / "caches" / "train.h5"), "--steps", "2", "--rounds", "1"])
    lines = out.stdout.strip().splitlines()
    fig = json.loads(lines[-1])
    assert fig["packed_max_score_diff"] < 1e-4  # the same function, packed (float rounding apart)
    assert fig["step_before_ms"] > 0 and fig["step_now_ms"] > 0
    ratio = fig["step_before_ms"] / fig["step_now_ms"]
    assert abs(fig["packed_step_speedup_ratio"] - ratio) < 0.01 * ratio + 0.01
    assert any("text side before" in line for line in lines)
