"""`tflocal negatives`: add SWAP/REPLACE/ADD hard negatives to a manifest, or explain pairs."""

from __future__ import annotations

import argparse

HELP = "Add SWAP/REPLACE/ADD hard negatives to a JSONL manifest, or explain caption/negative pairs."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--in",
        dest="inp",
        metavar="MANIFEST.jsonl",
        help="manifest whose captions get negatives, or any data source FORMAT:PATH[?opt=value] "
        "(e.g. karpathy:data/coco/dataset_coco.json?split=train,restval) to turn into a manifest",
    )
    src.add_argument(
        "--explain", metavar="PAIRS.jsonl", help='lines {"caption": ..., "negative": ...} to label'
    )
    parser.add_argument("--out", required=True, metavar="OUT.jsonl", help="output JSONL")
    parser.add_argument(
        "--kinds",
        choices=("benchmark", "tflocal"),
        default="benchmark",
        help="--explain: label two noun phrases that trade places an object swap (benchmark, "
        "as SugarCrepe/Winoground) or, between a relation's subject and object, a relation swap "
        "(tflocal, as the operators label it)",
    )
    parser.add_argument("--ops", default="swap,replace,add", help="comma-separated operators (default: all)")
    parser.add_argument(
        "--depth", default="1", help="operators applied in a row: 1, 2, 3 or a list like 1,2,3"
    )
    parser.add_argument("--per-caption", type=int, default=3, help="negatives per caption and depth")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    from tflocal.concepts.manifest import add_negatives, explain_file
    from tflocal.concepts.operators import OPERATORS
    from tflocal.errors import UserError

    if args.explain:
        counts = explain_file(args.explain, args.out, args.kinds)
    else:
        ops = [o.strip() for o in args.ops.split(",") if o.strip()]
        bad = [o for o in ops if o not in OPERATORS]
        if bad or not ops:
            raise UserError(f"--ops: unknown operator(s) {bad}; choose from {sorted(OPERATORS)}")
        try:
            depths = [int(d) for d in args.depth.split(",")]
        except ValueError as err:
            raise UserError(f"--depth must be integers in 1..3 (got {args.depth!r})") from err
        if any(d not in (1, 2, 3) for d in depths):
            raise UserError(f"--depth must be integers in 1..3 (got {args.depth!r})")
        if args.per_caption < 1:
            raise UserError("--per-caption must be >= 1")
        counts = add_negatives(args.inp, args.out, ops, depths, args.per_caption, args.seed)
    for key, n in sorted(counts.items()):
        print(f"{key}\t{n}")
    print(f"wrote {args.out}")
    return 0
