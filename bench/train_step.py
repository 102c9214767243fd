"""Where a segments-head training step spends its time, on a real quickstart cache: building
the batch (cache reads + caption layouts) against the head's forward/backward/optimizer step,
with each caption's layout parsed in every batch (before) or once per cache row (now,
:func:`tflocal.pairs.assemble.layouts_from_cache`). Side by side in one process, same batches.

Then the step itself, its text side as before (every position of the padded [B, T] batch through
the norm, the input projection and the block, with the norm's own affine) against now (the real
tokens only, packed, and the norm's affine folded into the projection:
:func:`tflocal.models.layers.norm_linear`), in ``--rounds`` interleaved rounds of ``--steps``
steps on the same batches; the scores of both are compared on the first batch.

    python bench/train_step.py --cache runs/quickstart/caches/train.h5 [--steps 40] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

import tflocal.models.segment_head as segment_head  # noqa: E402
import tflocal.pairs.assemble as features  # noqa: E402
from tflocal.concepts.layout import layout_from_cache  # noqa: E402
from tflocal.config import load_config  # noqa: E402
from tflocal.training.loop import TrainConfig, setup, train_step  # noqa: E402


def padded_encode_text(self, tokens: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
    """The segments head's text side before packing: tokens [B, T, D] -> [B, T, d] over every
    position (padding included), LayerNorm then Linear as modules."""
    w = self.token_in[1].weight
    x = self.token_in(tokens.to(w.dtype))
    if self.text_blocks:
        x = x + self.token_pos(torch.arange(x.shape[1], device=x.device))
        for block in self.text_blocks:
            x = block(x, token_mask)
    return self.text_out(x).float()


def plain_norm_linear(seq: torch.nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    return seq(x)


def step_variants(run, batches: list, rounds: int) -> dict[str, float]:
    """ms per step of the text side before and now, interleaved; and their largest score gap."""
    packed, folded = segment_head.SegmentHead._encode_text, segment_head.norm_linear
    variants = {"before": (padded_encode_text, plain_norm_linear), "now": (packed, folded)}
    model = run.raw
    scores = {}
    times: dict[str, list[float]] = {name: [] for name in variants}
    try:
        for name, (encode, norm) in variants.items():
            segment_head.SegmentHead._encode_text, segment_head.norm_linear = encode, norm
            with torch.no_grad():
                scores[name] = model(batches[0].pairs(model.needs, dedup_images=bool(model.accepts_pair_image)))
        for _ in range(rounds):
            for name, (encode, norm) in variants.items():
                segment_head.SegmentHead._encode_text, segment_head.norm_linear = encode, norm
                train_step(run, batches[0], 0)  # warm-up
                t0 = time.perf_counter()
                for b in batches:
                    train_step(run, b, 0)
                times[name].append((time.perf_counter() - t0) / len(batches))
    finally:
        segment_head.SegmentHead._encode_text, segment_head.norm_linear = packed, folded
    best = {name: min(t) for name, t in times.items()}
    return {
        "step_before_ms": round(1000 * best["before"], 1),
        "step_now_ms": round(1000 * best["now"], 1),
        "packed_step_speedup_ratio": round(best["before"] / best["now"], 3),
        "packed_max_score_diff": float(f"{float((scores['before'] - scores['now']).abs().max()):.3g}"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", required=True)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the step comparison")
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
            out=d,
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
        kept = []
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
            kept.append(batch)
            t0 = time.perf_counter()
            train_step(run, batch, 0)
            times["step"] += time.perf_counter() - t0
        variants = step_variants(run, kept, args.rounds)
    per = {k: v / n for k, v in times.items()}
    for k, v in per.items():
        print(f"  {k:20s} {1000 * v:8.1f} ms per batch")
    old = per["parse_every_batch"] + per["step"]
    new = per["memo_later"] + per["step"]
    print(
        f"  batch build share of a step: before {per['parse_every_batch'] / old:.2f}, now {per['memo_later'] / new:.2f}"
    )
    print(
        f"  step, text side before {variants['step_before_ms']} ms, now {variants['step_now_ms']} ms: "
        f"{variants['packed_step_speedup_ratio']}x (largest score gap {variants['packed_max_score_diff']})"
    )
    print(
        json.dumps(
            {
                **variants,
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
