"""`tflocal serve`: a JSON search API over a cache and a page comparing scorers side by side."""

from __future__ import annotations

import argparse

from tflocal.app.flags import add_config_arguments, config_from_args
from tflocal.app.serve import load_engine
from tflocal.app.serve.config import ServeConfig
from tflocal.errors import UserError

EPILOG = """examples:
  tflocal serve --cache runs/quickstart/caches/test.h5 --split test_ood \\
      --scorer "global head=runs/quickstart/runs/global/best.pt" \\
      --scorer "TFLocal=runs/quickstart/runs/tflocal/best.pt"
  then open http://127.0.0.1:8000/ (API: GET /health, POST /search, GET /image/ID, GET /heatmap/ID?q=...)
  curl -s localhost:8000/search -d '{"query": "a red square left of a blue circle", "k": 5}'"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p, ServeConfig, epilog=EPILOG)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(ServeConfig, args)
    try:
        import uvicorn  # the serve extra: only this command needs it
    except ImportError as err:
        raise UserError(
            "tflocal serve needs FastAPI and uvicorn: pip install 'tflocal[serve]' (or fastapi uvicorn)"
        ) from err
    from tflocal.app.serve.app import Limits, create_app  # fastapi: the serve extra

    engine = load_engine(
        cfg.cache,
        cfg.scorer,
        index=cfg.index,
        split=cfg.split,
        source=cfg.source,
        device=cfg.device,
        k_rerank=cfg.k_rerank,
        in_memory=cfg.in_memory,
        precision=cfg.precision,
    )
    if cfg.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"tflocal serve: listening on {cfg.host}, reachable from other machines (no authentication)")
    print(
        f"tflocal serve: {engine.rows.size} images of {cfg.cache}, scorers: {', '.join(engine.scorers)}; "
        f"open http://{cfg.host}:{cfg.port}/",
        flush=True,
    )
    uvicorn.run(
        create_app(engine, Limits(max_k=cfg.max_k)), host=cfg.host, port=cfg.port, log_level="warning"
    )
    return 0
