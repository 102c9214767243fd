"""`tflocal train`: train an alignment head on a cache from a YAML recipe."""

from __future__ import annotations

import argparse
import json

from tflocal.app.flags import add_config_arguments, config_from_args
from tflocal.training.config import TrainConfig
from tflocal.training.loop import train

EPILOG = """examples:
  tflocal train --config configs/train/coco_vitb32.yaml
  tflocal train --config configs/train/coco_vitb32.yaml --head global --out runs/coco_vitb32_global
  tflocal train --cache caches/train.h5 --model.readout segments --optim.lr 1e-3 --set data.batch_size=64"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p, TrainConfig, epilog=EPILOG)


def run(args: argparse.Namespace) -> int:
    summary = train(config_from_args(TrainConfig, args))
    print(json.dumps(summary, indent=2))
    return 0
