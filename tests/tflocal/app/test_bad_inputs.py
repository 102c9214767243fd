"""Every row of the bad-input catalogue (tests/helpers/bad_inputs.py), run through the real CLI: one clear
line and exit status 2 for errors, the reason in ``skipped`` for unusable entries; and
docs/bad_inputs.md is what the catalogue renders."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cache_tools.store.reader import open_cache
from helpers import subprocess_pythonpath
from helpers.bad_inputs import CASES, DOC, Case, Ctx, render
from helpers.train_setup import binding_cache
from tflocal.app.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models run fastest on one thread


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("assets")
    rng = np.random.default_rng(0)
    (root / "img").mkdir()
    lines = []
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(root / "img" / f"{i}.png")
        lines.append({"image": f"img/{i}.png", "captions": [f"a red cube left of ball {i}"],
                      "negatives": [{"text": f"a blue cube left of ball {i}", "op": "swap"}]})  # fmt: skip
    manifest = root / "manifest.jsonl"
    manifest.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return manifest, binding_cache(root / "bind.h5", n_images=24)


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = subprocess_pythonpath()
    e["OMP_NUM_THREADS"] = "1"
    return e


def _fsize_limit(n: int):
    def set_limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (n, n))

    return set_limit


def hold_lock(target: Path, folder: bool) -> subprocess.Popen:
    """Another process holding the output lock of ``target`` (a file, or a folder)."""
    code = ("import sys, time; from cache_tools.infra.locks import OutputLock; "
            f"lock = OutputLock({str(target)!r}, 'x', 'y', folder={folder}).acquire(); "
            "print('held', flush=True); time.sleep(120)")  # fmt: skip
    if folder:
        target.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env())
    assert proc.stdout.readline().strip() == "held"
    return proc


def run_case(case: Case, ctx: Ctx, capsys) -> tuple[int, str]:
    argv = case.make(ctx)
    if case.runner.startswith("fsize:"):
        r = subprocess.run([sys.executable, "-m", "tflocal.app.cli", *argv], capture_output=True, text=True,
                           env=env(), preexec_fn=_fsize_limit(int(case.runner.split(":")[1])), timeout=300)  # fmt: skip
        return r.returncode, r.stderr
    holder = None
    if case.runner.startswith("locked:"):
        rel = case.runner.split(":", 1)[1]
        holder = hold_lock(ctx.tmp / rel.rstrip("/"), folder=rel.endswith("/"))
    try:
        capsys.readouterr()
        rc = main(argv)
        return rc, capsys.readouterr().err
    finally:
        if holder is not None:
            holder.kill()
            holder.wait()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gets_its_message(case: Case, assets, tiny_openclip, tmp_path, capsys):
    manifest, bind = assets
    ctx = Ctx(tmp_path, tiny_openclip, manifest, bind)
    rc, err = run_case(case, ctx, capsys)
    assert rc == case.exit_code, err[-2000:]
    assert "Traceback" not in err and "Segmentation" not in err, err[-2000:]
    if case.exit_code == 2:
        errors = [line for line in err.splitlines() if f"tflocal {case.command}: error:" in line]
        assert len(errors) == 1 and case.gets in errors[0], err[-2000:]
    elif case.where == "skipped":
        reasons = [f"{item}: {reason}" for item, reason in open_cache(tmp_path / "c.h5").skipped]
        assert any(case.gets in r for r in reasons), reasons
    else:
        assert case.gets in err
    if case.check is not None:
        case.check(ctx)


def test_catalogue_in_docs_is_current():
    assert DOC.read_text() == render(), "docs/bad_inputs.md is stale: run `python tests/helpers/bad_inputs.py`"
