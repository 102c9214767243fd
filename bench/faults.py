"""Fault injection: ``kill -9`` caching and training at random points, resume, compare.

    python bench/faults.py                    # 20 kills of caching, 20 of training, seed 0 (a few minutes)
    python bench/faults.py --n 40 --seed 3    # more, elsewhere

Each job runs in a process forked from this one (the libraries are imported once, so a job
starts at once and the kills land in its work). Each kind first runs twice uninterrupted: the
reference, and a twin that must equal it and whose wall time bounds the kill points. Then, until
``--n`` kills are done: start the same job, ``SIGKILL`` it at a uniformly random moment of that
time (opening the source, encoding, a part write, the final write; loading the cache, steps,
checkpoint saves, validation), restart it (killed again with probability 1/2), and once a run
completes compare its result with the reference:

* caching (``cache_tools.write.writer.write_cache``, a deterministic fake encoder slowed a little):
  every dataset of the cache equal, no ``.parts`` or ``.tmp`` left behind;
* training (``tflocal.training.loop.train`` with ``save_every=1``): final weights equal (atol 1e-6),
  the loss and lr of every step equal to the reference's (rel 1e-5; a step run again after a
  kill is compared by its last record), every log line one JSON record.

Where each kill landed is counted from what it left on disk. Ends with one JSON line of figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

TRAIN_SETS = [
    "model.width=32",
    "model.depth=2",
    "model.heads=4",
    "data.num_workers=0",
    "progress=false",
    "epochs=3",
    "data.batch_size=8",
    "data.val_fraction=0.25",
    "save_every=1",
    "log_every=1",
    "optim.warmup_steps=2",
]


def make_records(root: Path, n: int):
    import numpy as np
    from PIL import Image

    from cache_tools.sources.records import ImageRecord, TextRecord

    recs = []
    for i in range(n):
        p = root / f"img{i}.png"
        if not p.exists():
            rng = np.random.default_rng(i)
            Image.fromarray((rng.random((36 + i % 7, 40, 3)) * 255).astype("uint8")).save(p)
        texts = [
            TextRecord(f"a red cube number {i}"),
            TextRecord(f"a blue ball number {i}", positive=0, op="swap"),
        ]
        recs.append(ImageRecord(id=f"img{i}", image=str(p), texts=texts))
    return recs


def worker_cache(root: Path, out: Path) -> None:
    from cache_tools.write.writer import write_cache
    from helpers.fakes import FakeEncoder

    class Slow(FakeEncoder):
        def encode_images(self, px):
            time.sleep(0.03)
            return super().encode_images(px)

    write_cache(
        make_records(root, 36), Slow(), out, batch_size=3, part_records=6, progress=False, num_workers=1
    )


def worker_train(cache: Path, out: Path) -> None:
    from tflocal.config import load_config
    from tflocal.training.loop import TrainConfig, train

    train(load_config(TrainConfig, None, TRAIN_SETS, cache=str(cache), out=str(out), device="cpu"))


WORKERS = {"cache": worker_cache, "train": worker_train}


def spawn(kind: str, a: Path, b: Path) -> int:
    """Fork a child that runs one ``kind`` job (every module already imported here); -> its pid."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: run the job, exit without any clean-up of the parent's state
        _die_with_parent()
        code = 0
        try:
            WORKERS[kind](a, b)
        except BaseException:  # noqa: BLE001 - reported by the exit status
            import traceback

            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    return pid


def _die_with_parent() -> None:
    """Linux: the child gets SIGKILL when this process ends (no orphan jobs after a Ctrl-C)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def wait(pid: int, timeout: float | None) -> int | None:
    """The child's exit status, or None if it still runs after ``timeout`` seconds."""
    end = None if timeout is None else time.perf_counter() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if end is not None and time.perf_counter() >= end:
            return None
        time.sleep(0.002)


def run_to_end(kind: str, a: Path, b: Path) -> float:
    t = time.perf_counter()
    rc = wait(spawn(kind, a, b), None)
    if rc != 0:
        raise RuntimeError(f"{kind} run failed (exit status {rc})")
    return time.perf_counter() - t


def kill_at(kind: str, a: Path, b: Path, delay: float) -> float | None:
    """Start, SIGKILL after ``delay`` s. -> None when killed, else the seconds it took to finish."""
    t = time.perf_counter()
    pid = spawn(kind, a, b)
    rc = wait(pid, delay)
    if rc is None:
        os.kill(pid, signal.SIGKILL)
        wait(pid, None)
        return None
    if rc != 0:
        raise RuntimeError(f"{kind} run failed (exit status {rc})")
    return time.perf_counter() - t


def where_cache(out: Path) -> str:
    parts = out.with_name(out.name + ".parts")
    if out.exists():
        return "after the end"
    if out.with_name(out.name + ".tmp").exists():
        return "final write"
    if parts.is_dir() and list(parts.glob("*.tmp")):
        return "part write"
    if parts.is_dir() and list(parts.glob("part-*.h5")):
        return "encoding (some parts done)"
    if parts.is_dir():
        return "encoding (first part)"
    return "start (before the first part)"


def where_train(out: Path) -> str:
    if list(out.glob("*.pt.tmp")):
        return "checkpoint save"
    log = out / "log.jsonl"
    if not log.is_file() or not log.read_text().strip():
        return "start (data, model)"
    last = log.read_text().strip().splitlines()[-1]
    try:
        event = json.loads(last)["event"]
    except ValueError:
        return "log write"
    return {"start": "first steps", "train": "between steps", "val": "after validation"}.get(event, event)


def check_cache(ref: Path, out: Path) -> None:
    from helpers.cache_records import assert_same_cache

    assert_same_cache(ref, out)
    assert not out.with_name(out.name + ".parts").exists(), "parts folder left behind"
    assert not list(out.parent.glob("*.tmp")), "temporary file left behind"


def _steps(out: Path) -> dict[int, dict]:
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]  # each line JSON
    return {r["step"]: r for r in records if r["event"] == "train"}  # the last record of each step


def check_train(ref: Path, out: Path) -> None:
    import torch

    a = torch.load(ref / "last.pt", weights_only=True)
    b = torch.load(out / "last.pt", weights_only=True)
    assert a["step"] == b["step"], (a["step"], b["step"])
    for k in a["state_dict"]:
        torch.testing.assert_close(b["state_dict"][k], a["state_dict"][k], atol=1e-6, rtol=1e-5)
    x, y = _steps(ref), _steps(out)
    assert sorted(x) == sorted(y), (sorted(x), sorted(y))
    for s in x:
        for key in ("loss", "lr"):
            assert abs(x[s][key] - y[s][key]) <= 1e-5 * max(abs(x[s][key]), 1e-12), (
                s,
                key,
                x[s][key],
                y[s][key],
            )
    assert not list(out.glob("*.tmp")), "temporary file left behind"


def campaign(kind: str, n: int, rng: random.Random, tmp: Path, src: Path) -> dict:
    """``n`` kills of ``kind``; returns counts, where the kills landed and the failures."""
    name = "c.h5" if kind == "cache" else "run"
    ref = tmp / f"{kind}-ref" / name
    ref.parent.mkdir()
    run_to_end(kind, src, ref)
    check = check_cache if kind == "cache" else check_train
    locate = where_cache if kind == "cache" else where_train
    # a second uninterrupted run: the job is deterministic, and its (warm) time bounds the kill points
    twin = tmp / f"{kind}-twin" / name
    twin.parent.mkdir()
    t_ref = run_to_end(kind, src, twin)
    check(ref, twin)
    kills, trials, failures, where = 0, 0, [], {}
    while kills < n:
        trials += 1
        out = tmp / f"{kind}-{trials}" / name
        out.parent.mkdir()
        again, finished, fresh = True, False, True
        while again and kills < n and not finished:
            took = kill_at(kind, src, out, rng.uniform(0.0, t_ref))
            if took is None:
                kills += 1
                spot = locate(out)
                where[spot] = where.get(spot, 0) + 1
            else:  # it ended before the kill: check that result; a fresh run this fast bounds later kills
                finished = True
                t_ref = min(t_ref, took) if fresh else t_ref
            again, fresh = rng.random() < 0.5, False
        try:
            if not finished:
                run_to_end(kind, src, out)
            check(ref, out)
        except Exception as err:  # noqa: BLE001 - every failure is reported, the campaign goes on
            failures.append(f"{kind} trial {trials}: {type(err).__name__}: {str(err)[:300]}")
        print(f"{kind}: {kills}/{n} kills, {trials} trials, {len(failures)} failures", file=sys.stderr)
    return {
        "kills": kills,
        "trials": trials,
        "failed": len(failures),
        "ref_s": round(t_ref, 1),
        "where": dict(sorted(where.items())),
        "failures": failures,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20, help="kills of each kind (default 20)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", choices=("cache", "train"), help="one kind only")
    args = ap.parse_args()
    t0 = time.perf_counter()
    import torch

    torch.set_num_threads(1)  # before anything runs: forked children inherit no busy thread pool
    import cache_tools.write.writer  # noqa: F401  (imported once here; every forked job starts at once)
    from tflocal.config import load_config
    from tflocal.training.loop import TrainConfig, setup

    rng = random.Random(args.seed)
    result: dict = {"seed": args.seed}
    with tempfile.TemporaryDirectory(prefix="tflocal-faults-") as d:
        tmp = Path(d)
        (tmp / "images").mkdir()
        make_records(tmp / "images", 36)
        from test_train import binding_cache

        bind = binding_cache(tmp / "bind.h5", n_images=96)
        # the first setup in a process pays one-time initialisation (seconds): pay it here, not per job
        setup(
            load_config(TrainConfig, None, TRAIN_SETS, cache=str(bind), out=str(tmp / "warm"), device="cpu")
        )
        for kind, src in (("cache", tmp / "images"), ("train", bind)):
            if args.only in (None, kind):
                result[kind] = campaign(kind, args.n, rng, tmp, src)
    failed = sum(result[k]["failed"] for k in ("cache", "train") if k in result)
    for k in ("cache", "train"):
        for f in result.get(k, {}).get("failures", []):
            print("FAILED", f, file=sys.stderr)
    result["all_equal"] = failed == 0
    result["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(result))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
