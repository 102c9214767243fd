"""`tflocal eval`: score a benchmark with one or more scorers and write a report."""

from __future__ import annotations

import argparse
from pathlib import Path

from tflocal.app.flags import add_config_arguments, config_from_args
from tflocal.evaluate.config import EvalConfig
from tflocal.evaluate.report import markdown_table

EPILOG = """examples:
  tflocal eval --bench sugarcrepe --data data/sugarcrepe --encoder openclip:ViT-B-32@openai \\
      --scorer cosine --scorer maxsim --scorer runs/coco/last.pt --out results/sugarcrepe
  tflocal eval --bench coco_retrieval --cache caches/coco_test.h5 --scorer runs/coco/last.pt --k-rerank 100
  tflocal eval --config configs/eval/sugarcrepe_vitb32.yaml

The cache is built first when missing (needs --encoder and --data). Writes OUT/results.json,
OUT/results.md, OUT/bars_<bench>.png, OUT/depth.png (ShapesWorld) and OUT/heatmaps/."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p, EvalConfig, aliases={"scorers": ("--scorer",)}, epilog=EPILOG)


def run(args: argparse.Namespace) -> int:
    from tflocal.app.pipeline import run_pipeline  # torch and the encoders: only when the command runs

    cfg = config_from_args(EvalConfig, args)
    result = run_pipeline(cfg, progress=not args.quiet)
    print(markdown_table(result.rows), end="")
    print(f"results in {Path(cfg.out) / 'results.json'} and {Path(cfg.out) / 'results.md'}")
    return 0
