"""Caches built beside the training, in a second process: its failures reach the parent as they
were raised, stopping the parent stops it, and the quickstart gives the same rows with it as
without it."""

from __future__ import annotations

import functools
import json
import time

import pytest

from cache_tools.config import CacheConfig
from tflocal.app.beside import Beside
from tflocal.app.cli import main
from tflocal.errors import UserError
from tflocal.evaluate.config import EvalConfig


def test_a_user_error_beside_is_raised_by_result_without_a_traceback(tmp_path, capsys):
    missing = tmp_path / "no_such_render"
    caches = [CacheConfig(encoder="towers:effnet-lite0+minilm", data=f"shapesworld:{missing}", out=str(tmp_path / "t.h5"))]
    beside = Beside(caches, EvalConfig(bench="shapesworld", cache=str(tmp_path / "t.h5"), out=str(tmp_path / "r")))
    with pytest.raises(UserError, match="no_such_render"):
        beside.result()
    assert "Traceback" not in capsys.readouterr().out


def test_stop_ends_the_child_at_once(tmp_path):
    beside = Beside([], EvalConfig(bench="shapesworld", out=str(tmp_path)), prepare=functools.partial(time.sleep, 120))
    t0 = time.perf_counter()
    beside.stop()
    assert not beside._proc.is_alive() and time.perf_counter() - t0 < 30


@pytest.mark.slow
def test_the_quickstart_gives_the_same_rows_beside_and_in_order(tmp_path, capsys, monkeypatch):
    args = ["--n-train", "24", "--n-test", "6", "--epochs", "1", "--quiet"]
    assert main(["quickstart", "--out", str(tmp_path / "beside"), *args]) == 0
    assert "built beside the training in" in capsys.readouterr().out
    monkeypatch.setenv("TFLOCAL_BESIDE", "0")
    assert main(["quickstart", "--out", str(tmp_path / "in_order"), *args]) == 0
    assert "built beside" not in capsys.readouterr().out

    def rows(name):
        found = json.loads((tmp_path / name / "report" / "results.json").read_text())
        return sorted((r["scorer"], r["subset"], r["metric"], r["value"], r["n"]) for r in found)

    assert rows("beside") == rows("in_order") and len(rows("beside")) > 100
    for split in ("train", "test_ood"):  # the same render, in two calls or one
        assert (tmp_path / "beside/shapes" / f"{split}.jsonl").read_bytes() == (
            tmp_path / "in_order/shapes" / f"{split}.jsonl"
        ).read_bytes()


def _render_in_a_pool(out):
    from tflocal.shapesworld import generate

    generate(out, 4, 2, 2, workers=2, progress=False)


def test_the_child_may_start_processes_of_its_own(tmp_path):
    """The render's pool starts inside the child (a daemon process could not start it)."""
    beside = Beside([], EvalConfig(bench="shapesworld", cache=str(tmp_path / "none.h5"), out=str(tmp_path)),
                    prepare=functools.partial(_render_in_a_pool, tmp_path / "shapes"))  # fmt: skip
    with pytest.raises(UserError, match="none.h5"):  # the render ran; then no cache to evaluate
        beside.result()
    assert json.loads((tmp_path / "shapes" / "meta.json").read_text())["counts"]["train"]["images"] == 4


def test_a_child_that_dies_is_a_user_error_that_says_what_to_do(tmp_path):
    beside = Beside([], EvalConfig(bench="shapesworld", out=str(tmp_path)), prepare=functools.partial(time.sleep, 120))
    beside._proc.kill()
    with pytest.raises(UserError, match="died .*TFLOCAL_BESIDE=0"):
        beside.result()


PARENT_THAT_DIES = """
import functools, os, sys, time
from tflocal.app.beside import Beside
from tflocal.evaluate.config import EvalConfig
beside = Beside([], EvalConfig(bench="shapesworld", out=sys.argv[1]), prepare=functools.partial(time.sleep, 120))
print(beside._proc.pid, flush=True)
os._exit(9)  # as if killed: no stop(), no result()
"""


def test_a_child_whose_parent_is_killed_ends_itself(tmp_path):
    import os
    import subprocess
    import sys

    from helpers import subprocess_pythonpath

    env = {**os.environ, "PYTHONPATH": subprocess_pythonpath()}
    out = subprocess.run([sys.executable, "-c", PARENT_THAT_DIES, str(tmp_path)], env=env,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 9, out.stderr[-2000:]
    child = int(out.stdout.split()[0])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and os.path.exists(f"/proc/{child}"):
        time.sleep(0.2)
    assert not os.path.exists(f"/proc/{child}"), "the child outlived its killed parent"
