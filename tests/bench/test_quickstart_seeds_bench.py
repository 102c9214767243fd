"""bench/quickstart_seeds.py end to end over a tiny quickstart: two seeds on the run's caches, the
run's own seed reproducing its report, and a second call that reads what the first one wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from helpers import ROOT, load_script, subprocess_pythonpath


def run(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": subprocess_pythonpath()}
    out = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=600, cwd=ROOT, env=env
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out


def seed_files(work) -> dict[str, int]:
    """mtime of every file a seed's run wrote (the links to the run's shapes/caches not followed)."""
    files = {}
    for seed in work.iterdir():
        for part in ("report", "runs", "seed_run.json"):
            path = seed / part
            for p in [path] if path.is_file() else path.rglob("*"):
                if p.is_file():
                    files[str(p.relative_to(work))] = p.stat().st_mtime_ns
    return files


@pytest.mark.slow
def test_quickstart_seeds_bench_reproduces_the_run_and_resumes(tmp_path):
    qs, work = tmp_path / "qs", tmp_path / "seeds"
    run(
        [
            "-m",
            "tflocal",
            "quickstart",
            "--out",
            str(qs),
            "--n-train",
            "24",
            "--n-test",
            "6",
            "--epochs",
            "1",
            "--quiet",
        ]
    )
    caches = {p.name: p.stat().st_mtime_ns for p in (qs / "caches").iterdir()}
    bench = ["bench/quickstart_seeds.py", "--run", str(qs), "--seeds", "0,1", "--work", str(work)]
    first = run(bench)
    figures = json.loads(first.stdout.strip().splitlines()[-1])
    assert figures["seeds"] == [0, 1] and figures["seeds_run_now"] == [0, 1]
    assert figures["seed0_matches_run"] is True and "seed0_matches_run: true" in first.stdout
    assert figures["config"]["n_train"] == 24 and figures["config"]["epochs"] == 1
    rows = figures["rows"]
    assert {r["scorer"] for r in rows} == {"global head", "TFLocal"}
    assert any(r["subset"] == "test_ood/swap" for r in rows)
    for r in rows:
        assert len(r["values"]) == 2 and all(0.0 <= v <= 100.0 for v in r["values"]), r
        assert (
            r["min"] <= r["mean"] <= r["max"]
            and r["min"] == min(r["values"])
            and r["max"] == max(r["values"])
        )
        assert r["std"] >= 0 and r["n"] > 0
    # the run's own report, row by row, is seed 0's values
    run_rows = json.loads((qs / "report" / "results.json").read_text())
    seed0 = {(r["subset"], r["scorer"]): r["values"][0] for r in rows}
    assert all(abs(seed0[(r["subset"], r["scorer"])] - 100 * r["value"]) < 1e-3 for r in run_rows)
    claims = figures["tflocal_ge_global_every_seed"]
    assert {"test_id/swap", "test_ood/swap", "test_novel/swap", "test_ood/replace"} <= set(claims)
    assert all(s.split("/")[1] in ("swap", "replace") for s in claims)
    assert set(figures["tflocal_below_global_seeds"]) == {s for s, ok in claims.items() if not ok}
    assert isinstance(figures["test_ood_swap_min_gain_points"], float)
    assert len(figures["seconds_per_seed"]) == 2 and all(s > 0 for s in figures["seconds_per_seed"])
    assert "seed 1: train the tflocal head:" in first.stdout
    # the seeds trained on the run's caches and left them as they were
    assert {p.name: p.stat().st_mtime_ns for p in (qs / "caches").iterdir()} == caches
    assert (work / "seed_1" / "caches").resolve() == (qs / "caches").resolve()

    written = seed_files(work)
    second = run(bench)
    again = json.loads(second.stdout.strip().splitlines()[-1])
    assert again["seeds_run_now"] == [] and "seed 1: train" not in second.stdout
    assert seed_files(work) == written
    assert again["rows"] == rows and again["seconds_per_seed"] == figures["seconds_per_seed"]


@pytest.mark.parametrize(
    ("seeds", "message"),
    [("0", "finished `tflocal quickstart --out DIR`"), ("0,0", "give distinct integers")],
)
def test_quickstart_seeds_bench_bad_input_is_one_clear_line(tmp_path, seeds, message):
    out = subprocess.run(
        [sys.executable, "bench/quickstart_seeds.py", "--run", str(tmp_path), "--seeds", seeds],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": subprocess_pythonpath()},
    )
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [out.stderr.strip()]
    assert out.stderr.startswith("quickstart_seeds: error: ") and message in out.stderr


def load_bench():
    return load_script("bench/quickstart_seeds.py")


def test_3d_rows_keep_their_metrics_apart_and_give_the_group_score_gaps():
    bench = load_bench()

    def row(subset, scorer, metric, value):
        return {"subset": subset, "scorer": scorer, "metric": metric, "value": value, "n": 33}

    def seed(tfl_group, glob_group, sgi_group):
        return [
            row("test_ood/size", "TFLocal", "text", 0.9),
            row("test_ood/size", "TFLocal", "group", tfl_group),
            row("test_ood/size", "global head", "group", glob_group),
            row("test_ood/size", bench.SGI_LABEL, "group", sgi_group),
            row("test_ood/swap", "TFLocal", "accuracy", 0.8),
            row("test_ood/swap", "global head", "accuracy", 0.5),
        ]

    per_seed = {0: seed(0.6, 0.1, 0.3), 1: seed(0.4, 0.2, 0.5)}
    rows = {(r["subset"], r["scorer"], r["metric"]): r for r in bench.summarise(per_seed)}
    assert rows[("test_ood/size", "TFLocal", "group")]["values"] == [60.0, 40.0]
    assert rows[("test_ood/size", "TFLocal", "text")]["values"] == [90.0, 90.0]
    gaps = bench.group_gaps(per_seed)
    assert gaps == {"test_ood/size": {"vs_global_min": 20.0, "vs_sgi_min": -10.0}}
    every, below, gain = bench.claims(per_seed)
    assert every == {"test_ood/swap": True} and below == {} and gain == 30.0
    assert bench.group_gaps({0: seed(0.6, 0.1, 0.3)[4:]}) == {}  # ShapesWorld: no group scores


def test_set_changes_one_key_of_the_run_config_and_refuses_what_is_not_a_setting():
    bench = load_bench()
    base = {"epochs": 5, "optim": {"lr": 0.002, "warmup_steps": 100}}
    got = bench.with_settings(base, ["optim.scalar_lr=1", "epochs=3", "encoder=towers:x"])
    assert got == {"epochs": 3, "optim": {"lr": 0.002, "warmup_steps": 100, "scalar_lr": 1}, "encoder": "towers:x"}
    assert base == {"epochs": 5, "optim": {"lr": 0.002, "warmup_steps": 100}}  # the run's own, unchanged
    with pytest.raises(bench.UserError, match="give KEY=VALUE"):
        bench.with_settings(base, ["optim.scalar_lr"])
    with pytest.raises(bench.UserError, match="'epochs' is not a section"):
        bench.with_settings(base, ["epochs.x=1"])
