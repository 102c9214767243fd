"""``tflocal serve``: a JSON search API over a cache and a page that compares scorers.

* :mod:`tflocal.app.serve.engine` — search, image -> text and word -> region maps over one cache;
* :mod:`tflocal.app.serve.images` — the raw images behind a cache's ids, via its data source;
* :mod:`tflocal.app.serve.app` — the FastAPI app (``/health``, ``/search``, ``/image/{id}``,
  ``/heatmap/{id}``, the page at ``/``).

This module stays import-light: the quickstart calls :func:`serve_command` at the end of its
report.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any


def serve_command(cache: str | Path, scorers: dict[str, str | Path], split: str | None = None) -> str:
    """The ``tflocal serve`` command line that serves ``cache`` with ``scorers`` (label -> spec)."""
    parts = ["tflocal", "serve", "--cache", str(cache)]
    if split:
        parts += ["--split", split]
    for label, spec in scorers.items():
        parts += ["--scorer", f"{label}={spec}" if label else str(spec)]
    return " ".join(shlex.quote(p) for p in parts)


def parse_scorer(arg: str) -> tuple[str, str]:
    """``LABEL=SPEC`` or ``SPEC`` -> (label, spec); a bare spec is labelled by the scorer itself."""
    label, sep, spec = arg.partition("=")
    if sep and label and spec and not Path(arg).exists():
        return label.strip(), spec.strip()
    return "", arg


def load_engine(
    cache_path: str | Path,
    scorers: list[str],
    index: str | None = None,
    split: str | None = None,
    source: str | None = None,
    device: str = "cpu",
    k_rerank: int = 100,
    in_memory: bool = True,
    precision: str = "fp32",
) -> Any:
    """Open the cache, load the scorers (one shared encoder) and the index; returns a
    :class:`~tflocal.app.serve.engine.SearchEngine`.

    scorers: ``cosine`` | ``maxsim`` | ``sgi`` | CHECKPOINT, each optionally ``LABEL=...``;
    split: serve only the images whose metadata ``split`` equals it (e.g. ``test_ood``);
    precision: the trained heads' autocast (``fp32`` | ``bf16`` | ``fp16``).
    """
    import numpy as np

    from cache_tools.encoders import load_encoder
    from cache_tools.store.reader import open_cache
    from tflocal.app.serve.engine import LockedEncoder, SearchEngine
    from tflocal.app.serve.images import ImageStore
    from tflocal.errors import UserError
    from tflocal.retrieval.first_stage import load_index
    from tflocal.scoring.load import load_scorer

    cache = open_cache(cache_path)
    if in_memory:
        try:
            cache.load_into_memory(max_bytes=8 << 30)
        except UserError as err:  # too big for RAM: read from disk per query
            print(f"tflocal serve: {err}; reading it from disk")
    rows = None
    if split:
        rows = np.array(
            [i for i in range(cache.n_images) if cache.image_meta(i).get("split") == split], np.int64
        )
        if not rows.size:
            found = sorted({str(cache.image_meta(i).get("split")) for i in range(min(cache.n_images, 2000))})
            raise UserError(f"no image of {cache_path} has split {split!r}; splits found: {', '.join(found)}")
    name = cache.attrs.get("encoder") or ""
    if not name:
        raise UserError(f"cache {cache_path} records no encoder: queries cannot be encoded")
    encoder = LockedEncoder(load_encoder(name, device=device))
    loaded: dict[str, Any] = {}
    for arg in scorers:
        label, spec = parse_scorer(arg)
        sc = load_scorer(spec, cache, encoder=encoder, device=device, progress=False, precision=precision)
        label = label or sc.name
        if label in loaded:
            raise UserError(f"two scorers are labelled {label!r}: name them with --scorer LABEL=SPEC")
        sc.name = label
        loaded[label] = sc
    idx = None
    if index and Path(index).is_file():
        if split:
            raise UserError("--index covers the whole cache; leave it out with --split (an index is built)")
        idx = load_index(index)
    engine = SearchEngine(
        cache, loaded, index=idx, rows=rows, images=ImageStore(cache, source), k_rerank=k_rerank
    )
    if index and idx is None and engine.index is not None:
        from tflocal.retrieval.first_stage import save_index

        save_index(engine.index, index)
    return engine
