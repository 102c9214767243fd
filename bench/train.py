"""Training throughput of the heads on synthetic caches: pairs/s, peak memory, parameters.

    .venv/bin/python bench/train.py                      # CPU (and CUDA when visible), < 2 min on CPU
    .venv/bin/python bench/train.py --devices cuda --steps 50 --batch-size 64

Each (preset, head, device) runs the real ``tflocal.training.loop.train`` (in-memory cache, no
validation) in a fresh subprocess, so peak RSS is that run's own. pairs/s is measured over the
second half of the steps (after warm-up); a "pair" is one (image, caption) scored by the head,
so a step scores batch_size x (1 + n_neg + k_inbatch) pairs. "base RSS" is the process before
training (python, torch, accelerate, the in-memory cache); "peak RSS" includes the training run.
Heads: ``tflocal-joint`` (the joint transformer, summary read-out), ``tflocal-segments`` (``model.readout=
segments``: per-modality blocks, phrase-region matching; its layout parsing runs in the batch
builder and is timed with it) and ``global``. Presets: ``vitb32`` (49 x 768 patches, ~12 x 512 tokens, 512 globals, joint globals) and
``towers`` (49 x 1280 patches, ~12 x 384 tokens, 1280 / 384 globals, global_space none).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PRESETS = {
    "vitb32": dict(
        image_dim=768,
        text_dim=512,
        global_image_dim=512,
        global_text_dim=512,
        grid=[7, 7],
        global_space="joint",
    ),
    "towers": dict(
        image_dim=1280,
        text_dim=384,
        global_image_dim=1280,
        global_text_dim=384,
        grid=[7, 7],
        global_space="none",
    ),
}


CAPTION = "a small red circle is left of a large blue square"
"""Every synthetic text: parseable, so the segments read-out does its real work (2 objects, 1 relation)."""


def synthetic_cache(path: Path, preset: str, n_images: int, n_neg: int, seed: int = 0) -> Path:
    """Random float16 payload with the preset's shapes: per image 1 caption + n_neg negatives."""
    from cache_tools.write.arrays import write_arrays

    p = PRESETS[preset]
    rng = np.random.default_rng(seed)
    P = p["grid"][0] * p["grid"][1]
    n_txt = n_images * (1 + n_neg)
    lengths = rng.integers(8, 17, size=n_txt)  # ~12 tokens
    image_index = np.repeat(np.arange(n_images), 1 + n_neg)
    positive_index = np.where(
        np.arange(n_txt) % (1 + n_neg) == 0, -1, (np.arange(n_txt) // (1 + n_neg)) * (1 + n_neg)
    )
    attrs = {"encoder": f"synthetic:{preset}", "space": "hidden", "context_length": 77, **p}
    return write_arrays(
        path,
        attrs,
        image_ids=[f"i{i}" for i in range(n_images)],
        patches=rng.standard_normal((n_images, P, p["image_dim"]), dtype=np.float32).astype(np.float16),
        image_global=rng.standard_normal((n_images, p["global_image_dim"]), dtype=np.float32),
        texts=[CAPTION] * n_txt,
        token_strings=[(["[CLS]", *CAPTION.split(), "[SEP]"] + ["."] * int(n))[: int(n)] for n in lengths],
        tokens=[
            rng.standard_normal((int(n), p["text_dim"]), dtype=np.float32).astype(np.float16) for n in lengths
        ],
        text_global=rng.standard_normal((n_txt, p["global_text_dim"]), dtype=np.float32),
        image_index=image_index,
        positive_index=positive_index,
    )


def run_one(args: argparse.Namespace) -> dict:
    """One training run in this process; returns its figures."""
    import torch

    from tflocal.config import load_config
    from tflocal.training.loop import TrainConfig, train

    torch.set_num_threads(args.threads or torch.get_num_threads())
    with tempfile.TemporaryDirectory() as tmp:
        n_images = args.steps * args.batch_size + 8
        cache = synthetic_cache(Path(tmp) / "cache.h5", args.preset, n_images, args.n_neg)
        overrides = [
            f"max_steps={args.steps}",
            f"log_every={max(1, args.steps // 2)}",
            f"data.batch_size={args.batch_size}",
            f"data.n_neg={args.n_neg}",
            f"data.k_inbatch={args.k}",
            "data.val_fraction=0",
            "data.in_memory=true",
            f"data.num_workers={args.workers}",
            f"mixed_precision={args.precision}",
            "progress=false",
            f"model.width={args.width}",
            f"model.depth={args.depth}",
            f"model.heads={args.heads}",
        ]
        cfg = load_config(
            TrainConfig,
            None,
            overrides,
            cache=str(cache),
            head=args.head,
            out=str(Path(tmp) / "run"),
            device=args.device,
            resume=False,
        )
        if args.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        t0 = time.perf_counter()
        summary = train(cfg)
        wall = time.perf_counter() - t0
        logs = [json.loads(line) for line in (Path(tmp) / "run" / "log.jsonl").read_text().splitlines()]
        last = [r for r in logs if r["event"] == "train"][-1]
    return {
        "preset": args.preset,
        "head": args.head,
        "device": args.device,
        "precision": args.precision,
        "params": summary["params"],
        "pairs_per_step": args.batch_size * (1 + args.n_neg + args.k),
        "pairs_per_s": last["pairs_per_s"],
        "wall_s": wall,
        "threads": torch.get_num_threads(),
        "base_rss_mib": base_rss,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_cuda_mib": torch.cuda.max_memory_allocated() / 2**20 if args.device == "cuda" else None,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", default="vitb32,towers")
    ap.add_argument(
        "--heads",
        dest="head_names",
        default="tflocal-joint,tflocal-segments,global",
        help="tflocal (its model.readout: segments by default), tflocal-joint, tflocal-segments, global",
    )
    ap.add_argument("--devices", default=None, help="cpu,cuda (default: cpu, plus cuda when visible)")
    ap.add_argument("--steps", type=int, default=None, help="default: 6 on CPU, 40 on CUDA")
    ap.add_argument(
        "--batch-size", type=int, default=None, help="units per step (default: 8 on CPU, 64 on CUDA)"
    )
    ap.add_argument("--n-neg", type=int, default=2)
    ap.add_argument("--k", type=int, default=1, help="in-batch negatives per set")
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--heads-per-layer", dest="heads", type=int, default=8)
    ap.add_argument("--precision", default=None, help="no | bf16 | fp16 (default: no on CPU, bf16 on CUDA)")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (0 = torch's default)")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--preset", help=argparse.SUPPRESS)
    ap.add_argument("--head", help=argparse.SUPPRESS)
    ap.add_argument("--device", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print("RESULT " + json.dumps(run_one(args)), flush=True)
        return 0

    import torch

    devices = (
        args.devices.split(",") if args.devices else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    )
    rows = []
    for device in devices:
        on_gpu = device == "cuda"
        steps = args.steps or (40 if on_gpu else 6)
        bs = args.batch_size or (64 if on_gpu else 8)
        precision = args.precision or ("bf16" if on_gpu else "no")
        for preset in args.presets.split(","):
            for head in args.head_names.split(","):
                cmd = [
                    sys.executable,
                    __file__,
                    "--one",
                    "--preset",
                    preset,
                    "--head",
                    head,
                    "--device",
                    device,
                    "--steps",
                    str(steps),
                    "--batch-size",
                    str(bs),
                    "--n-neg",
                    str(args.n_neg),
                    "--k",
                    str(args.k),
                    "--width",
                    str(args.width),
                    "--depth",
                    str(args.depth),
                    "--heads-per-layer",
                    str(args.heads),
                    "--precision",
                    precision,
                    "--workers",
                    str(args.workers),
                    "--threads",
                    str(args.threads),
                ]
                env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
                line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
                if line is None:
                    print(f"{preset}/{head}/{device} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
                    continue
                rows.append(json.loads(line[7:]))
                r = rows[-1]
                print(
                    f"  {preset:7s} {head:16s} {device:4s} {r['pairs_per_s']:9.1f} pairs/s",
                    file=sys.stderr,
                    flush=True,
                )
    header = f"{'preset':8s} {'head':16s} {'device':6s} {'prec':5s} {'params':>11s} {'pairs/step':>10s} {'pairs/s':>9s} {'thr':>3s} {'base RSS':>8s} {'peak RSS MiB':>12s} {'peak CUDA MiB':>13s}"
    print(header)
    print("-" * len(header))
    for r in rows:
        cuda = f"{r['peak_cuda_mib']:.0f}" if r["peak_cuda_mib"] is not None else "-"
        print(
            f"{r['preset']:8s} {r['head']:16s} {r['device']:6s} {r['precision']:5s} {r['params']:11,d} "
            f"{r['pairs_per_step']:10d} {r['pairs_per_s']:9.1f} {r['threads']:3d} {r['base_rss_mib']:8.0f} "
            f"{r['peak_rss_mib']:12.0f} {cuda:>13s}"
        )
    keys = (
        "pairs_per_s",
        "params",
        "pairs_per_step",
        "peak_rss_mib",
        "peak_cuda_mib",
        "precision",
        "threads",
    )
    print(json.dumps({f"{r['preset']}/{r['head']}/{r['device']}": {k: r[k] for k in keys} for r in rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
