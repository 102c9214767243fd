"""`tflocal negatives`: add SWAP/REPLACE/ADD hard negatives to a manifest, explain pairs, or
measure how many of a benchmark's negatives the operators reproduce."""

from __future__ import annotations

import argparse

from tflocal.app.flags import add_config_arguments, config_from_args
from tflocal.concepts.config import NegativesConfig
from tflocal.concepts.manifest import add_negatives, explain_file

EPILOG = """examples:
  tflocal negatives --in data/manifest.jsonl --out data/manifest_negatives.jsonl --depth 1,2
  tflocal negatives --in "karpathy:data/coco/dataset_coco.json?split=val" --out data/coco/val_negatives.jsonl
  tflocal negatives --explain pairs.jsonl --out pairs_explained.jsonl
  tflocal negatives --replicate sugarcrepe:data/sugarcrepe --out replicate.json
  tflocal negatives --replicate sugarcrepe:data/sugarcrepe --depth 1 --out replicate_depth1.json"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p, NegativesConfig, aliases={"data": ("--in",)}, epilog=EPILOG)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(NegativesConfig, args)
    if cfg.replicate:
        return _replicate(cfg)
    if cfg.explain:
        counts = explain_file(cfg.explain, cfg.out, cfg.kinds)
    else:
        counts = add_negatives(cfg.data, cfg.out, cfg.ops, cfg.depth, cfg.per_caption, cfg.seed)
    for key, n in sorted(counts.items()):
        print(f"{key}\t{n}")
    print(f"wrote {cfg.out}")
    return 0


def _replicate(cfg: NegativesConfig) -> int:
    from tflocal.concepts.replicate import replicate, write_report

    depth = cfg.depth[0]
    rows = replicate(cfg.replicate, depth)
    md = write_report(rows, cfg.out)
    print(f"replicated at depth <= {depth}")
    print("bench\tsubset\tn\treplicated\trate")
    for r in rows:
        print(f"{r['bench']}\t{r['subset']}\t{r['n']}\t{r['replicated']}\t{r['rate']:.1%}")
    print(f"wrote {cfg.out} and {md}")
    return 0
