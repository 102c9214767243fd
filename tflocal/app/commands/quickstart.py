"""`tflocal quickstart`: ShapesWorld -> cache -> train global head and TFLocal -> evaluate -> report."""

from __future__ import annotations

import argparse

from tflocal.app.flags import add_config_arguments, config_from_args
from tflocal.app.quickstart import QuickstartConfig, run_quickstart

EPILOG = """examples:
  tflocal quickstart --out runs/quickstart
  tflocal quickstart --out /tmp/qs --n-train 200 --n-test 20 --epochs 1 --model.readout summary+align"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p, QuickstartConfig, epilog=EPILOG)


def run(args: argparse.Namespace) -> int:
    run_quickstart(config_from_args(QuickstartConfig, args))
    return 0
