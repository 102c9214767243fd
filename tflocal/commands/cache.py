"""`tflocal cache`: encode a data source with a frozen encoder into an HDF5 cache."""

from __future__ import annotations

import argparse

HELP = "encode images and captions once with a frozen encoder into an HDF5 cache (resumable)"

EPILOG = """examples:
  tflocal cache --encoder openclip:ViT-B-32@openai --data karpathy:data/coco/dataset_coco.json \\
      --images data/coco --set options.split=test --out caches/coco_test.h5
  tflocal cache --config configs/cache/vitb32_openai_coco.yaml
  accelerate launch --num_processes 4 -m tflocal.cli cache --config ...   # one shard per process

Run the same command again after an interruption: finished parts are kept."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EPILOG
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--config", help="YAML recipe (configs/cache/*.yaml); flags override it")
    p.add_argument("--encoder", help="openclip:MODEL@PRETRAINED | hf:ID_OR_DIR | towers:effnet-lite0+minilm")
    p.add_argument(
        "--data", help="FORMAT:PATH, e.g. jsonl:manifest.jsonl, sugarcrepe:DIR, karpathy:dataset_coco.json"
    )
    p.add_argument("--out", help="output .h5 file")
    p.add_argument("--images", help="image folder, if not where the format expects it")
    p.add_argument(
        "--crops", action="store_true", default=None, help="also cache 2x2 and 3x3 crop embeddings"
    )
    p.add_argument("--batch-size", type=int, dest="batch_size")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"))
    p.add_argument("--device", help="cpu | cuda | cuda:N (default: a GPU when there is one)")
    p.add_argument("--num-workers", type=int, dest="num_workers", help="image loading threads")
    p.add_argument("--limit", type=int, help="encode only the first N records")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. options.split=test",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from cache_tools.build import build_cache
    from cache_tools.config import CacheConfig
    from tflocal.config import load_config

    fields = {
        k: getattr(args, k)
        for k in (
            "encoder",
            "data",
            "out",
            "images",
            "crops",
            "batch_size",
            "precision",
            "device",
            "num_workers",
            "limit",
        )
    }
    cfg = load_config(CacheConfig, args.config, args.set, **fields)
    summary = build_cache(cfg, progress=not args.quiet)
    print(summary)
    return 0
