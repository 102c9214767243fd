"""`tflocal quickstart`: ShapesWorld -> cache -> train global head and TFLocal -> evaluate -> report."""

from __future__ import annotations

import argparse

HELP = "run the whole pipeline offline on ShapesWorld with pretrained towers (CPU, minutes)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/quickstart", help="output folder (default: runs/quickstart)")
    p.add_argument("--n-train", type=int, dest="n_train", help="training images (default 3000)")
    p.add_argument(
        "--n-test",
        type=int,
        dest="n_test",
        help="images in each of test_id, test_ood and test_novel (default 500)",
    )
    p.add_argument("--epochs", type=int, help="training epochs per head")
    p.add_argument(
        "--readout",
        choices=("segments", "summary", "summary+align"),
        help="TFLocal read-out (default segments)",
    )
    p.add_argument("--seed", type=int)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"))
    p.add_argument(
        "--encoder", help="encoder registry name (default towers:effnet-lite0+minilm, no download)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from tflocal.quickstart import QuickstartConfig, run_quickstart

    fields = {
        k: getattr(args, k)
        for k in ("out", "n_train", "n_test", "epochs", "readout", "seed", "device", "encoder")
    }
    cfg = QuickstartConfig(**{k: v for k, v in fields.items() if v is not None}, progress=not args.quiet)
    run_quickstart(cfg)
    return 0
