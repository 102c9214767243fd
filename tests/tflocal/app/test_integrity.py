"""Nothing lost, nothing corrupt: two writers, lines after the last record, a changed
schedule on resume, a blow-up never saved as best, an earlier run never wiped, a full disk."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import tflocal.training.loop as train_mod
from cache_tools.sources.jsonl import JsonlSource
from cache_tools.store.reader import open_cache
from cache_tools.write.arrays import write_arrays
from cache_tools.write.writer import write_cache
from helpers import subprocess_pythonpath
from helpers.cache_records import assert_same_cache, make_records
from helpers.fakes import JOINT, FakeEncoder
from helpers.train_setup import binding_cache, config, read_log
from tflocal.app.cli import main
from tflocal.errors import UserError
from tflocal.training.loop import NonFiniteLossError, train
from tflocal.training.optim import WarmupCosine

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models run fastest on one thread



def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": subprocess_pythonpath(), "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def bind_path(tmp_path_factory) -> Path:
    return binding_cache(tmp_path_factory.mktemp("bind") / "bind.h5", n_images=24)


def wait_for(cond, proc: subprocess.Popen, timeout: float = 180) -> None:
    t = time.time()
    while not cond():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() - t < timeout, "timed out"
        time.sleep(0.05)


def second_while_first_is_stopped(first: list[str], second: list[str], started) -> tuple:
    """Start ``first`` (a real `tflocal` process), freeze it (SIGSTOP) once ``started()``, run
    ``second`` to its end, then let the first finish. -> (first result, second result)."""
    cmd = [sys.executable, "-m", "tflocal.app.cli"]
    a = subprocess.Popen([*cmd, *first], env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(started, a)
        a.send_signal(signal.SIGSTOP)
        b = subprocess.run([*cmd, *second], env=env(), capture_output=True, text=True, timeout=300)
    finally:
        a.send_signal(signal.SIGCONT)
    out, err = a.communicate(timeout=300)
    return (a.returncode, out, err), (b.returncode, b.stdout, b.stderr)


# -- 1. two writers -------------------------------------------------------------------------------


def test_two_cache_runs_with_one_out_the_second_stops_and_the_cache_is_whole(tiny_openclip, tmp_path, capsys):
    rng = np.random.default_rng(0)
    (tmp_path / "img").mkdir()
    lines = []
    for i in range(24):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "img" / f"{i}.png")
        lines.append(json.dumps({"image": f"img/{i}.png", "captions": [f"a red cube number {i}"]}))
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    out = tmp_path / "c.h5"
    argv = ["cache", "--encoder", tiny_openclip, "--data", f"jsonl:{tmp_path / 'm.jsonl'}", "--out", str(out),
            "--quiet", "--batch-size", "4", "--num-workers", "0", "--device", "cpu"]  # fmt: skip
    first, second = second_while_first_is_stopped(argv, argv, lambda: (tmp_path / "c.h5.parts").is_dir())
    assert second[0] == 2 and "is in use: another `tflocal cache` run is writing it" in second[2], second[2]
    assert "Traceback" not in second[2] and len(second[2].strip().splitlines()) == 1
    assert first[0] == 0, first[2][-3000:]
    cache = open_cache(out)
    assert (
        cache.n_images == 24
        and all(cache.image_ids)
        and sorted(cache.strings) == sorted(f"a red cube number {i}" for i in range(24))
    )
    assert np.abs(cache.patches(np.arange(24))).sum(axis=(1, 2)).min() > 0  # no all-zero rows
    # and the finished cache is accepted as complete by a rerun, which changes nothing
    assert main(argv) == 0 and "already complete" in capsys.readouterr().out


def test_two_train_runs_into_one_out_dir_the_second_stops(bind_path, tmp_path):
    out = tmp_path / "run"
    argv = ["train", "--cache", str(bind_path), "--out", str(out)]
    for s in ["model.width=32", "model.depth=2", "model.heads=4", "data.num_workers=0", "progress=false",
              "device=cpu", "epochs=2", "data.batch_size=8"]:  # fmt: skip
        argv += ["--set", s]
    first, second = second_while_first_is_stopped(argv, argv, lambda: (out / "log.jsonl").is_file())
    assert second[0] == 2 and "is in use: another `tflocal train` run is writing it" in second[2], second[2]
    assert "Traceback" not in second[2]
    assert first[0] == 0, first[2][-3000:]
    events = [r["event"] for r in map(json.loads, (out / "log.jsonl").read_text().splitlines())]
    assert events.count("start") == 1 and events.count("end") == 1 and events[-1] == "end"
    assert not (out / "last.pt.tmp").exists()


# -- 2. every input line ends up in the cache or in skipped ------------------------------------------


def test_bad_lines_after_the_last_good_record_are_recorded(tmp_path):
    recs = make_records(tmp_path, 4)
    good = [{"id": r.id, "image": r.image, "captions": [r.texts[0].text]} for r in recs]
    lines = [json.dumps(g) for g in good] + [
        '{"id": "broken", "image": "x.png" "captions": []}',  # 5: malformed JSON
        json.dumps({"id": "e", "image": recs[0].image, "captions": ["   "]}),  # 6: only an empty caption
        json.dumps(good[1]),  # 7: duplicate id
        "[1, 2, 3]",  # 8: not an object
        json.dumps(
            {"id": "h", "image": recs[2].image, "captions": ["", "kept caption"]}
        ),  # 9: one empty caption
    ]
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    source = JsonlSource(tmp_path / "m.jsonl")
    write_cache(source, FakeEncoder(), tmp_path / "c.h5", batch_size=2, part_records=2, progress=False,
                skipped_from_source=lambda: list(source.skipped))  # fmt: skip
    cache = open_cache(tmp_path / "c.h5")
    skipped = dict(cache.skipped)
    assert list(cache.image_ids) == ["img0", "img1", "img2", "img3", "h"]
    assert skipped["m.jsonl:5"].startswith("malformed JSON (Expecting ',' delimiter at column")
    assert "no usable caption" in skipped["m.jsonl:6"]
    assert "duplicate record id" in skipped["img1"]
    assert skipped["m.jsonl:8"] == "line is not a JSON object"
    assert "empty or non-string caption" in skipped["m.jsonl:9 (h) caption 0"]
    # every line: in the cache (5) or skipped as a whole (4), and never both
    assert len(lines) == cache.n_images + 4


# -- 3. a changed schedule on resume is applied ------------------------------------------------------


def test_resume_applies_new_epochs_and_lr(bind_path, tmp_path, capsys):
    out = tmp_path / "run"
    common = ["data.batch_size=8", "data.val_fraction=0.25", "optim.warmup_steps=1", "log_every=1"]
    first = train(config(bind_path, out, "epochs=1", *common))
    assert first["finished"] and first["steps"] == 2  # 18 training captions -> 2 batches of 8
    second = train(config(bind_path, out, "epochs=3", "optim.lr=1e-3", *common))
    assert second["steps"] == 6 and second["finished"]
    lr = {r["step"]: r["lr"] for r in read_log(out, "train")}
    sched = WarmupCosine(1, 6)
    for step in (3, 4, 5):  # the new peak lr and the new length, from the resumed step on
        assert lr[step] == pytest.approx(1e-3 * sched(step), rel=1e-9) and lr[step] > 0
    changed = read_log(out, "schedule_changed")[0]
    assert changed["step"] == 2 and changed["changed"]["epochs"] == [1, 3]
    assert changed["changed"]["optim.lr"] == [3e-4, 1e-3]
    assert "with a changed schedule (epochs 1 -> 3, optim.lr 0.0003 -> 0.001)" in capsys.readouterr().err


# -- 4. a blow-up is never saved, never best, and the message is true ---------------------------------


@pytest.mark.parametrize("blow_at", [2, 4])
def test_non_finite_scores_are_a_failure_never_best(bind_path, tmp_path, monkeypatch, blow_at):
    out = tmp_path / "run"
    # the joint read-out: its first parameter enters every score (the segments read-out's first,
    # the object scale, is unused on captions without a parsed object, as these are)
    cfg = config(bind_path, out, "epochs=3", "data.batch_size=8", "data.val_fraction=0.25", "log_every=1",
                 "model.readout=summary")  # fmt: skip
    real = train_mod.train_step

    def blowing(run, batch, epoch):
        result = real(run, batch, epoch)
        if run.step == blow_at:  # this step's update breaks the weights (as lr=1e6 does)
            with torch.no_grad():
                next(run.raw.parameters()).fill_(float("nan"))
        return result

    monkeypatch.setattr(train_mod, "train_step", blowing)
    with pytest.raises(NonFiniteLossError, match="validation scores were non-finite after step") as err:
        train(cfg)
    assert read_log(out, "val")[-1]["val_nonfinite"] > 0
    if blow_at == 2:  # the first epoch: nothing good was ever saved, and the message says so
        assert "no checkpoint was saved yet" in str(err.value) and "still holds" not in str(err.value)
        assert not (out / "best.pt").exists() and not (out / "last.pt").exists()
        return
    assert "last.pt (step 2) still holds the last good state" in str(err.value)
    for name in ("best.pt", "last.pt"):
        saved = torch.load(out / name, weights_only=True)
        assert saved["step"] == 2 and all(torch.isfinite(v).all() for v in saved["state_dict"].values())


def test_non_finite_weights_are_never_saved_without_validation(bind_path, tmp_path, monkeypatch):
    out = tmp_path / "run"
    cfg = config(bind_path, out, "epochs=2", "data.batch_size=8", "data.val_fraction=0")
    real = train_mod.train_step

    def blowing(run, batch, epoch):
        result = real(run, batch, epoch)
        if run.step == 6:  # the last step of epoch 2 (3 batches per epoch): then last.pt is saved
            with torch.no_grad():
                next(run.raw.parameters()).fill_(float("inf"))
        return result

    monkeypatch.setattr(train_mod, "train_step", blowing)
    with pytest.raises(
        NonFiniteLossError, match=r"weights became non-finite .*last\.pt \(step 3\) still holds"
    ):
        train(cfg)
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 3


# -- 5. an earlier run is kept unless overwrite -------------------------------------------------------


def test_restart_keeps_an_earlier_run_unless_overwrite(bind_path, tmp_path):
    out = tmp_path / "run"
    train(config(bind_path, out, "epochs=1", "data.batch_size=8"))
    log = (out / "log.jsonl").read_text()
    best = (out / "best.pt").read_bytes()
    with pytest.raises(UserError, match="holds an earlier run"):
        train(config(bind_path, out, "epochs=1", "data.batch_size=8", "optim.lr=1e6", "resume=false"))
    assert (out / "log.jsonl").read_text() == log and (out / "best.pt").read_bytes() == best
    train(config(bind_path, out, "epochs=1", "data.batch_size=8", "resume=false", "overwrite=true"))
    events = [r["event"] for r in map(json.loads, (out / "log.jsonl").read_text().splitlines())]
    assert events.count("start") == 1 and not read_log(out, "start")[0]["resumed"]


# -- disk full: one message, then the same command finishes and equals an uninterrupted run ---------

DISK_SCRIPT = r"""
import sys
from pathlib import Path
from helpers.fakes import FakeEncoder
from helpers.cache_records import make_records
from cache_tools.errors import UserError
from cache_tools.write.writer import write_cache
try:
    write_cache(make_records(Path({root!r}), 24), FakeEncoder(dim=256), {out!r}, batch_size=4, part_records=8,
                progress=False)
    print("DONE")
except UserError as err:
    print("USERERROR", err)
"""


def _limited(n: int):
    def set_limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (n, n))

    return set_limit


@pytest.mark.parametrize("limit,stage", [(40_000, "the cache part"), (600_000, "the cache ")])
def test_disk_full_while_caching_is_one_message_and_resumable(tmp_path, limit, stage):
    write_cache(make_records(tmp_path, 24), FakeEncoder(dim=256), tmp_path / "ref.h5", batch_size=4,
                part_records=8, progress=False)  # fmt: skip
    out = tmp_path / "c.h5"
    script = DISK_SCRIPT.format(root=str(tmp_path), out=str(out))
    full = subprocess.run([sys.executable, "-c", script], env=env(), capture_output=True, text=True,
                          preexec_fn=_limited(limit), timeout=300)  # fmt: skip
    assert full.returncode == 0 and "Traceback" not in full.stderr, full.stderr[-3000:]
    assert f"USERERROR no space left for {stage}" in full.stdout, full.stdout
    assert not out.exists() and not list(tmp_path.glob("*.tmp"))
    write_cache(
        make_records(tmp_path, 24), FakeEncoder(dim=256), out, batch_size=4, part_records=8, progress=False
    )
    assert_same_cache(tmp_path / "ref.h5", out)


def test_disk_full_while_saving_a_checkpoint_keeps_the_previous_one(bind_path, tmp_path):
    out = tmp_path / "run"
    train(config(bind_path, out, "epochs=1", "data.batch_size=8"))
    before = (out / "last.pt").read_bytes()
    argv = ["train", "--cache", str(bind_path), "--out", str(out)]
    for s in ["model.width=32", "model.depth=2", "model.heads=4", "data.num_workers=0", "progress=false",
              "device=cpu", "epochs=2", "data.batch_size=8"]:  # fmt: skip
        argv += ["--set", s]
    r = subprocess.run([sys.executable, "-m", "tflocal.app.cli", *argv], env=env(), capture_output=True, text=True,
                       preexec_fn=_limited(len(before) // 2), timeout=300)  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert (
        "no space left for the checkpoint" in r.stderr
        and "last.pt still holds the previous state" in r.stderr
    )
    assert (out / "last.pt").read_bytes() == before and not (out / "last.pt.tmp").exists()


# -- smaller -----------------------------------------------------------------------------------------


def test_one_image_cache_says_it_has_no_validation(tmp_path, capsys):
    rng = np.random.default_rng(0)
    tok = [rng.normal(size=(3, 8)).astype(np.float32) for _ in range(2)]
    path = write_arrays(tmp_path / "one.h5", {**JOINT, "encoder": "synthetic:one", "grid": [2, 2]}, ["i0"],
                        rng.normal(size=(1, 4, 8)), rng.normal(size=(1, 8)), ["a red cube", "a blue cube"], tok,
                        rng.normal(size=(2, 8)), [0, 0], [-1, 0], op=["", "swap"])  # fmt: skip
    summary = train(config(path, tmp_path / "run", "epochs=1", "data.batch_size=1"))
    assert summary["best_val_acc"] is None and summary["checkpoint"].endswith("last.pt")
    assert "no validation (data.val_fraction=0.05 of 1 image(s) holds none out)" in capsys.readouterr().err
    assert read_log(tmp_path / "run", "no_validation")
