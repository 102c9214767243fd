"""`tflocal <subcommand>`: the only place that parses arguments.

Each subcommand lives in ``tflocal/commands/<name>.py`` and defines ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``. Command modules import heavy libraries
inside ``run`` so that ``tflocal --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# OpenMP threads that busy-wait make torch ~10x slower on small shared CPU machines; waiting
# passively costs little elsewhere. Must be set before torch is imported; an explicit value wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from tflocal.errors import UserError

COMMANDS: dict[str, str] = {
    "cache": "tflocal.commands.cache",
    "negatives": "tflocal.commands.negatives",
    "shapes": "tflocal.commands.shapes",
    "train": "tflocal.commands.train",
    "eval": "tflocal.commands.eval",
    "search": "tflocal.commands.search",
    "index": "tflocal.commands.index",
    "quickstart": "tflocal.commands.quickstart",
}


def build_parser() -> argparse.ArgumentParser:
    from tflocal import __version__

    parser = argparse.ArgumentParser(
        prog="tflocal",
        description="Localized compositional scoring over frozen vision-language encoders.",
    )
    parser.add_argument("--version", action="version", version=f"tflocal {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:  # a command still being built
            if err.name != module_name:
                raise
            continue
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("tflocal: interrupted", file=sys.stderr)
        return 130
    except UserError as err:
        print(f"tflocal {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
