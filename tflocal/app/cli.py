"""`tflocal <subcommand>`: the only place that parses arguments.

Each subcommand lives in ``tflocal/app/commands/<name>.py`` and defines ``add_arguments(parser)``
(flags generated from its typed config by :mod:`tflocal.app.flags`) and ``run(args) -> int``;
its one-line help is in ``COMMANDS``. Only the chosen command's module is imported (configs of
heads import torch), so ``tflocal --help`` stays fast; command modules import heavy libraries
inside ``run``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# OpenMP threads that busy-wait starve each other on small shared CPU machines and slow torch
# down there; waiting passively costs little elsewhere. Must be set before torch is imported; an explicit value wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from tflocal.errors import UserError

COMMANDS: dict[str, str] = {
    "cache": "encode images and captions once with a frozen encoder into an HDF5 cache (resumable)",
    "negatives": (
        "add SWAP/REPLACE/ADD hard negatives to a JSONL manifest, explain caption/negative pairs, "
        "or measure how many of a benchmark's negatives they reproduce"
    ),
    "shapes": "render ShapesWorld (shapes, colors, sizes, textures, relations) with captions and negatives",
    "train": "train an alignment head (tflocal or global) on a cache",
    "eval": "evaluate scorers on a benchmark (SugarCrepe, Winoground, ARO, ...) and write results + plots",
    "search": "search a cache's images with a caption: faiss top-k by global cosine, re-ranked by a scorer",
    "index": "compute a head's image-side vectors over a cache once and index them for late-interaction search",
    "quickstart": "run the whole pipeline offline on ShapesWorld with pretrained towers (CPU, minutes)",
    "serve": "serve a cache over HTTP: a JSON search API and a page comparing two scorers side by side",
}
"""Subcommand -> one-line help; the code is in ``tflocal.app.commands.<name>``."""


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``command``, that subcommand's flags too (``None``: all of them)."""
    from tflocal import __version__

    parser = argparse.ArgumentParser(
        prog="tflocal",
        description="Localized compositional scoring over frozen vision-language encoders.",
    )
    parser.add_argument("--version", action="version", version=f"tflocal {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_ in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        if command in (None, name):
            module = importlib.import_module(f"tflocal.app.commands.{name}")
            module.add_arguments(p)
            p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(next((a for a in argv if a in COMMANDS), ""))
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
