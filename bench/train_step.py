"""Where a segments-head training step spends its time, on a real quickstart cache: building
the batch (cache reads + caption layouts) against the head's forward/backward/optimizer step,
with each caption's layout parsed in every batch (before) or once per cache row (now,
:func:`tflocal.pairs.assemble.layouts_from_cache`). Side by side in one process, same batches.

    python bench/train_step.py --cache runs/quickstart/caches/train.h5 [--steps 40]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tflocal.pairs.assemble as features  # noqa: E402
from tflocal.concepts.layout import layout_from_cache  # noqa: E402
from tflocal.config import load_config  # noqa: E402
from tflocal.training.loop import TrainConfig, setup, train_step  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", required=True)
    ap.add_argument("--steps", type=int, default=40)
    args = ap.parse_args()
    overrides = [
        "model.width=64",
        "model.depth=1",
        "model.heads=4",
        "model.readout=segments",
        "data.batch_size=32",
        "data.in_memory=true",
        "data.num_workers=0",
        "data.n_neg=8",
        "data.k_inbatch=0",
        "data.val_fraction=0.1",
    ]  # the quickstart's TFLocal
    with tempfile.TemporaryDirectory() as d:
        cfg = load_config(
            TrainConfig,
            None,
            overrides,
            cache=args.cache,
            head="tflocal",
            out_dir=d,
            epochs=1,
            seed=0,
            device="cpu",
            progress=False,
            resume=False,
        )
        run = setup(cfg)
        ds, n = run.dataset, min(args.steps, len(run.dataset))
        ds.set_epoch(0)

        def build(k: int):
            t0 = time.perf_counter()
            b = ds[k]
            return b, time.perf_counter() - t0

        memo = features.layouts_from_cache
        times = {"parse_every_batch": 0.0, "memo_first_epoch": 0.0, "memo_later": 0.0, "step": 0.0}
        for k in range(n):
            features.layouts_from_cache = lambda cache, rows, n_tok: layout_from_cache(cache, rows, n_tok)
            _, t = build(k)
            times["parse_every_batch"] += t
            features.layouts_from_cache = memo
            features._LAYOUTS.clear()
            _, t = build(k)
            times["memo_first_epoch"] += t
            batch, t = build(k)  # every row of this batch is in the memo now
            times["memo_later"] += t
            t0 = time.perf_counter()
            train_step(run, batch, 0)
            times["step"] += time.perf_counter() - t0
    per = {k: v / n for k, v in times.items()}
    for k, v in per.items():
        print(f"  {k:20s} {1000 * v:8.1f} ms per batch")
    old = per["parse_every_batch"] + per["step"]
    new = per["memo_later"] + per["step"]
    print(
        f"  batch build share of a step: before {per['parse_every_batch'] / old:.2f}, now {per['memo_later'] / new:.2f}"
    )
    print(
        json.dumps(
            {
                "steps": n,
                "build_share_before_ratio": round(per["parse_every_batch"] / old, 3),
                "build_share_now_ratio": round(per["memo_later"] / new, 3),
                "step_speedup_ratio": round(old / new, 3),
                "batch_build_speedup_ratio": round(per["parse_every_batch"] / per["memo_later"], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
