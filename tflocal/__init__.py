"""tflocal: learned localized scoring over frozen vision-language encoders.

The few things a Python user calls, importable from here (each loads its stage on first use,
so ``import tflocal`` stays light)::

    from tflocal import CacheConfig, TrainConfig, build_cache, load_scorer, open_cache, train
    build_cache(CacheConfig(encoder="towers:effnet-lite0+minilm", data="jsonl:m.jsonl", out="c.h5"))
    train(TrainConfig(cache="c.h5", head="tflocal", out="runs/t"))
    scorer = load_scorer("runs/t/best.pt", cache=open_cache("c.h5"))  # .score(image_idx, text_idx)

Stages, bottom to top (each imports only those below it; see ``docs/architecture.md``):
``concepts`` -> ``shapesworld`` -> ``pairs`` -> ``models`` -> ``scoring`` -> ``retrieval`` ->
``evaluate`` -> ``training`` -> ``app``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "CacheConfig": "cache_tools.config",
    "build_cache": "cache_tools.write.build",
    "open_cache": "cache_tools.store.reader",
    "TrainConfig": "tflocal.training.config",
    "train": "tflocal.training.loop",
    "load_scorer": "tflocal.scoring.load",
    "build_late_index": "tflocal.retrieval.late_build",
    "open_late_index": "tflocal.retrieval.late_index",
    "LateIndex": "tflocal.retrieval.late_index",
    "EvalConfig": "tflocal.evaluate.config",
    "run_pipeline": "tflocal.app.pipeline",
    "QuickstartConfig": "tflocal.app.quickstart",
    "run_quickstart": "tflocal.app.quickstart",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Load an exported name from its stage on first use (PEP 562)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'tflocal' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
