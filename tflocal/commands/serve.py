"""`tflocal serve`: a JSON search API over a cache and a page comparing scorers side by side."""

from __future__ import annotations

import argparse

HELP = "serve a cache over HTTP: JSON search API (faiss first stage + re-ranking) and a comparison page"

EPILOG = """examples:
  tflocal serve --cache runs/quickstart/caches/test.h5 --split test_ood \\
      --scorer "global head=runs/quickstart/runs/global/best.pt" \\
      --scorer "TFLocal=runs/quickstart/runs/tflocal/best.pt"
  then open http://127.0.0.1:8000/ (API: GET /health, POST /search, GET /image/ID, GET /heatmap/ID?q=...)
  curl -s localhost:8000/search -d '{"query": "a red square left of a blue circle", "k": 5}'"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EPILOG
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--cache", required=True, help="cache (.h5) whose images are searched")
    p.add_argument(
        "--scorer",
        action="append",
        required=True,
        help="[LABEL=]cosine | maxsim | sgi | CHECKPOINT (repeatable; the page compares two)",
    )
    p.add_argument(
        "--index", help="faiss index file over the cache's image globals (built and saved when missing)"
    )
    p.add_argument("--split", help="serve only images whose metadata split is this (e.g. test_ood)")
    p.add_argument(
        "--source", help="FORMAT:PATH to read raw images from (default: the cache's recorded source)"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--k-rerank", type=int, default=100, dest="k_rerank", help="first-stage candidates re-ranked"
    )
    p.add_argument("--max-k", type=int, default=100, dest="max_k", help="largest k a request may ask")
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--no-memory", action="store_true", help="read the cache from disk instead of loading it in RAM"
    )


def run(args: argparse.Namespace) -> int:
    from tflocal.errors import UserError

    try:
        import uvicorn
    except ImportError as err:
        raise UserError(
            "tflocal serve needs FastAPI and uvicorn: pip install 'tflocal[serve]' (or fastapi uvicorn)"
        ) from err
    from tflocal.serve import load_engine
    from tflocal.serve.app import Limits, create_app

    if not 1 <= args.port <= 65535:
        raise UserError(f"--port must be in [1, 65535], got {args.port}")
    if args.max_k < 1 or args.k_rerank < 1:
        raise UserError("--max-k and --k-rerank must be >= 1")
    engine = load_engine(
        args.cache,
        args.scorer,
        index=args.index,
        split=args.split,
        source=args.source,
        device=args.device,
        k_rerank=args.k_rerank,
        in_memory=not args.no_memory,
    )
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"tflocal serve: listening on {args.host}, reachable from other machines (no authentication)")
    print(
        f"tflocal serve: {engine.rows.size} images of {args.cache}, scorers: {', '.join(engine.scorers)}; "
        f"open http://{args.host}:{args.port}/",
        flush=True,
    )
    uvicorn.run(
        create_app(engine, Limits(max_k=args.max_k)), host=args.host, port=args.port, log_level="warning"
    )
    return 0
