"""`tflocal eval`: score a benchmark with one or more scorers and write a report."""

from __future__ import annotations

import argparse

HELP = "evaluate scorers on a benchmark (SugarCrepe, Winoground, ARO, ...) and write results + plots"

EPILOG = """examples:
  tflocal eval --bench sugarcrepe --data data/sugarcrepe --encoder openclip:ViT-B-32@openai \\
      --scorer cosine --scorer maxsim --scorer runs/coco/last.pt --out results/sugarcrepe
  tflocal eval --bench coco_retrieval --cache caches/coco_test.h5 --scorer runs/coco/last.pt --k-rerank 100
  tflocal eval --config configs/eval/sugarcrepe_vitb32.yaml

The cache is built first when missing (needs --encoder and --data). Writes OUT/results.json,
OUT/results.md, OUT/bars_<bench>.png, OUT/depth.png (ShapesWorld) and OUT/heatmaps/."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EPILOG
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--config", help="YAML recipe (configs/eval/*.yaml); flags override it")
    p.add_argument("--bench", help="benchmark name, e.g. sugarcrepe, winoground, vg_relation, coco_retrieval")
    p.add_argument("--data", help="the benchmark's data: DIR or FORMAT:PATH (to build the cache)")
    p.add_argument("--images", help="image folder, if not where the source expects it")
    p.add_argument(
        "--encoder", help="encoder registry name (to build a missing cache), e.g. openclip:ViT-B-32@openai"
    )
    p.add_argument("--cache", help="benchmark cache (.h5); default OUT/cache.h5")
    p.add_argument(
        "--scorer",
        action="append",
        dest="scorers",
        metavar="S",
        help="cosine | maxsim | sgi | sgi:W | CHECKPOINT (repeat to compare)",
    )
    p.add_argument("--out", help="results folder")
    p.add_argument("--batch-size", type=int, dest="batch_size")
    p.add_argument("--device", help="cpu | cuda | cuda:N")
    p.add_argument(
        "--k-rerank", type=int, dest="k_rerank", help="retrieval: candidates re-ranked (default 100)"
    )
    p.add_argument("--crops", action="store_true", default=None, help="build the cache with crops (for sgi)")
    p.add_argument("--heatmaps", type=int, help="alignment heatmaps to draw (default 4, 0 = none)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tflocal.config import load_config
    from tflocal.evaluate.config import EvalConfig
    from tflocal.evaluate.report import markdown_table
    from tflocal.evaluate.run import run_eval

    keys = (
        "bench",
        "data",
        "images",
        "encoder",
        "cache",
        "scorers",
        "out",
        "batch_size",
        "device",
        "k_rerank",
        "crops",
        "heatmaps",
    )
    cfg = load_config(EvalConfig, args.config, args.set, **{k: getattr(args, k) for k in keys})
    rows = run_eval(cfg, progress=not args.quiet)
    print(markdown_table(rows), end="")
    print(f"results in {Path(cfg.out) / 'results.json'} and {Path(cfg.out) / 'results.md'}")
    return 0
