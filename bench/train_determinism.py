"""What reproducible CPU training costs: training-step time and bit-reproducibility, side by side
in one process on the same batches, of

* ``gather_rows`` — now: per-pair image rows and position tables through
  :func:`tflocal.models.layers.gather_rows` (``F.embedding``: a backward that sums repeated rows
  in index order);
* ``x[index]`` — before: plain advanced indexing, whose backward (``index_put_`` with accumulate)
  adds repeated rows with atomic adds from every thread once the gradient is >= 32768 elements;
* ``index_select`` — the other candidate (CPU backward ``index_add_``, serial over the index);
* ``gather_rows+torch_deterministic`` — now, under ``torch.use_deterministic_algorithms(True)``
  (what ``TrainConfig.deterministic`` turns on).

Each variant trains the same ``--steps`` batches from the same initial weights ``--rounds``
times (the variants take turns step by step, so load on a shared CPU hits them alike); a variant
is reproducible when every round ends with bit-identical weights. Ratios are step times (best
round) against ``x[index]``.

    python bench/train_determinism.py --cache runs/quickstart/caches/train.h5 [--steps 19 --rounds 3]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

import tflocal.models.joint_head as tflocal_head  # noqa: E402
import tflocal.models.layers as layers  # noqa: E402
import tflocal.models.segment_head as segment_head  # noqa: E402
from tflocal.config import load_config  # noqa: E402
from tflocal.training.loop import TrainConfig, setup, train_step  # noqa: E402

MODULES = (layers, segment_head, tflocal_head)
NOW = layers.gather_rows


def plain_index(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return x[index]


def index_select(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return x.index_select(0, index.reshape(-1)).reshape(*index.shape, *x.shape[1:])


VARIANTS = {
    "gather_rows": (NOW, False),
    "x[index]": (plain_index, False),
    "index_select": (index_select, False),
    "gather_rows+torch_deterministic": (NOW, True),
}


def weights_digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", required=True)
    ap.add_argument("--readout", default="segments", help="segments (the quickstart's) or summary")
    ap.add_argument("--steps", type=int, default=19)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    overrides = [
        "model.width=64",
        "model.depth=1",
        "model.heads=4",
        f"model.readout={args.readout}",
        "optim.lr=2e-3",
        "optim.warmup_steps=100",
        "data.batch_size=32",
        "data.in_memory=true",
        "data.num_workers=0",
        "data.n_neg=8",
        "data.k_inbatch=0",
        "data.val_fraction=0.1",
    ]
    times = {v: [] for v in VARIANTS}
    digests = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory() as d:
        runs = {}
        for i, name in enumerate(VARIANTS):  # one run per variant, same seed: same initial weights
            cfg = load_config(
                TrainConfig,
                None,
                overrides,
                cache=args.cache,
                head="tflocal",
                out=f"{d}/{i}",
                epochs=1,
                seed=0,
                device="cpu",
                progress=False,
                resume=False,
            )
            runs[name] = setup(cfg)
        first = next(iter(runs.values()))
        start = [{k: v.clone() for k, v in run.raw.state_dict().items()} for run in runs.values()]
        assert all(weights_digest(r.raw) == weights_digest(first.raw) for r in runs.values())
        sched_start = first.sched.state_dict()
        n = min(args.steps, len(first.dataset))
        batches = [first.dataset[k] for k in range(n)]
        for _ in range(args.rounds):
            for run, state in zip(runs.values(), start):  # back to step 0: weights, fresh AdamW, schedule
                run.raw.load_state_dict(state)
                run.opt.state.clear()
                run.sched.load_state_dict(sched_start)
                for group, lr in zip(run.opt.param_groups, run.sched.get_last_lr()):
                    group["lr"] = lr
                run.step = 0
            spent = dict.fromkeys(VARIANTS, 0.0)
            for b in batches:  # the variants take turns step by step, so load on a shared CPU hits all alike
                for name, (gather, deterministic) in VARIANTS.items():
                    for m in MODULES:
                        m.gather_rows = gather
                    before = torch.are_deterministic_algorithms_enabled()
                    torch.use_deterministic_algorithms(deterministic)
                    try:
                        t0 = time.perf_counter()
                        train_step(runs[name], b, 0)
                        spent[name] += time.perf_counter() - t0
                    finally:
                        torch.use_deterministic_algorithms(before)
            for name in VARIANTS:
                times[name].append(spent[name] / n)
                digests[name].append(weights_digest(runs[name].raw))
    for m in MODULES:
        m.gather_rows = NOW
    base = min(times["x[index]"])
    print(f"  {n} steps x {args.rounds} rounds, {torch.get_num_threads()} threads, readout {args.readout}")
    for name in VARIANTS:
        best = min(times[name])
        same = len(set(digests[name])) == 1
        print(
            f"  {name:34s} {1000 * best:7.1f} ms/step (best round)  ratio {best / base:.3f}  "
            f"weights {'bit-identical' if same else 'DIFFER'} over rounds: {' '.join(digests[name])}"
        )
    print(
        json.dumps(
            {
                "steps": n,
                "rounds": args.rounds,
                "threads": torch.get_num_threads(),
                "readout": args.readout,
                "ms_per_step": {k: round(1000 * min(v), 2) for k, v in times.items()},
                "ratio_vs_indexing": {k: round(min(v) / base, 3) for k, v in times.items()},
                "gather_rows_vs_indexing_ratio": round(min(times["gather_rows"]) / base, 3),
                "torch_deterministic_vs_gather_rows_ratio": round(
                    min(times["gather_rows+torch_deterministic"]) / min(times["gather_rows"]), 3
                ),
                "reproducible": {k: len(set(v)) == 1 for k, v in digests.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
