"""One evaluation run: make sure the cache exists, score it with each scorer, write the report.

``run_eval(cfg)`` is the library side of ``tflocal eval``: it builds the benchmark's cache when
missing, evaluates every scorer, and writes ``results.json`` (fixed-key rows), ``results.md``
(scorers side by side, then items scored / in the data / published, see
:mod:`tflocal.evaluate.coverage`), ``coverage.json`` and plots (per-subset bars, accuracy vs
depth, alignment heatmaps). The coverage lines are also printed, a WARNING when counts differ.
"""

from __future__ import annotations

import inspect
import itertools
from pathlib import Path
from typing import Any

from tflocal.errors import UserError
from tflocal.evaluate import get_benchmark
from tflocal.evaluate.config import EvalConfig
from tflocal.evaluate.report import Row, write_json, write_markdown


def data_spec(cfg: EvalConfig) -> str:
    """``cfg.data`` as ``FORMAT:PATH`` (the benchmark's format for a bare path)."""
    from cache_tools.sources import SOURCES

    data = cfg.data or ""
    fmt = data.split(":", 1)[0]
    if ":" in data and fmt in SOURCES:
        return data
    return f"{get_benchmark(cfg.bench).source}:{data}"


def ensure_cache(cfg: EvalConfig, progress: bool = True) -> Path:
    """The cache path, built from ``cfg.data`` with ``cfg.encoder`` when the file is missing."""
    path = Path(cfg.cache) if cfg.cache else Path(cfg.out) / "cache.h5"
    if path.is_file():
        return path
    if not cfg.encoder or not cfg.data:
        raise UserError(
            f"cache {path} not found: pass --cache to an existing cache, or --encoder and --data to build it"
        )
    from cache_tools.build import build_cache
    from cache_tools.config import CacheConfig

    bench = get_benchmark(cfg.bench)
    ccfg = CacheConfig(
        encoder=cfg.encoder,
        data=data_spec(cfg),
        out=str(path),
        images=cfg.images,
        options={**bench.source_options, **cfg.options},
        batch_size=min(cfg.batch_size, 64),
        crops=cfg.crops or any(s.split(":")[0] == "sgi" for s in cfg.scorers),
        device=cfg.device,
    )
    print(f"tflocal eval: building cache {path} from {ccfg.data} with {cfg.encoder}")
    build_cache(ccfg, progress=progress)
    return path


def dedupe(rows: list[Row]) -> list[Row]:
    """Drop repeated (benchmark, subset, metric, scorer) rows (e.g. the cosine first stage of
    retrieval, reported once per scorer); the first one is kept."""
    seen: set[tuple[str, str, str, str]] = set()
    out = []
    for r in rows:
        key = (r.benchmark, r.subset, r.metric, r.scorer)
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def evaluate_scorers(cfg: EvalConfig, cache: Any, progress: bool = True) -> tuple[list[Row], list[Any]]:
    """Rows of every scorer in ``cfg.scorers`` on ``cache``; also returns the scorers."""
    from tflocal.scoring import load_scorer

    bench = get_benchmark(cfg.bench)
    params = inspect.signature(bench.evaluate).parameters
    extra = {"k_rerank": cfg.k_rerank} if "k_rerank" in params else {}
    encoder = None
    if cfg.encoder and any(s.split(":")[0] == "sgi" for s in cfg.scorers):
        from cache_tools.encoders import load_encoder

        encoder = load_encoder(cfg.encoder, device=cfg.device)
    rows: list[Row] = []
    scorers = []
    for name in cfg.scorers:
        scorer = load_scorer(
            name, cache, encoder=encoder, device=cfg.device, batch_size=cfg.batch_size, progress=progress
        )
        scorers.append(scorer)
        rows += bench.evaluate(cache, scorer, benchmark=cfg.bench, **extra)
    return dedupe(rows), scorers


def _images_of(cfg: EvalConfig, ids: set[str]) -> dict[str, Any]:
    """PIL images of the cache image ids ``ids``, read from the source (first records only)."""
    if not cfg.data or not ids:
        return {}
    try:
        from cache_tools.sources import open_source
        from cache_tools.writer import load_image

        source = open_source(
            data_spec(cfg), images=cfg.images, **{**get_benchmark(cfg.bench).source_options, **cfg.options}
        )
        found = {}
        for rec in itertools.islice(iter(source), 200):
            if rec.id in ids and rec.image is not None:
                found[rec.id] = load_image(rec)
            if len(found) == len(ids):
                break
        return found
    except Exception as err:  # noqa: BLE001 - pictures without the photo underneath are still useful
        print(f"tflocal eval: heatmaps drawn without images ({type(err).__name__}: {err})")
        return {}


def plot_word_maps(
    cache: Any, label: str, texts: Any, imgs: Any, maps: Any, photos: dict[str, Any], out_dir: Path
) -> list[Path]:
    """One word-to-region heatmap per caption, ``out_dir/<label>_text<t>.png``: texts [N] caption
    rows, imgs [N] their image rows, maps [N] arrays [T, P] (a caption token's weights over the
    patches), photos: image id -> PIL image drawn underneath when present."""
    from tflocal.evaluate.plots import alignment_plot

    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in label)
    return [
        alignment_plot(
            att,
            cache.token_strings(int(t))[: att.shape[0]],
            cache.attrs["grid"],
            out_dir / f"{safe}_text{t}.png",
            image=photos.get(str(cache.image_ids[i])),
            caption=str(cache.strings[t]),
        )
        for t, i, att in zip(texts, imgs, maps)
    ]


def draw_heatmaps(cfg: EvalConfig, cache: Any, scorers: list[Any], out: Path) -> list[Path]:
    """Alignment heatmaps for the first captions of the first images, per scorer that has them."""
    import numpy as np

    texts = np.flatnonzero(cache.image_index >= 0)[: cfg.heatmaps]
    if not len(texts):
        return []
    imgs = cache.image_index[texts]
    photos = _images_of(cfg, {str(cache.image_ids[i]) for i in imgs})
    from tflocal.scorers.head import HeadScorer

    # a head's own word-region attention when it has one; else token-patch cosine, drawn once
    sources = [(s.name, s) for s in scorers if hasattr(getattr(s, "head", None), "word_region_attention")]
    if not sources:
        sources = [("token_patch_cosine", s) for s in scorers if isinstance(s, HeadScorer)][:1]
    paths = []
    for label, scorer in sources:
        try:
            maps = scorer.word_region_attention(imgs, texts)
        except UserError as err:
            print(f"tflocal eval: no heatmaps for {label}: {err}")
            continue
        paths += plot_word_maps(cache, label, texts, imgs, maps, photos, out / "heatmaps")
    return paths


def write_report(rows: list[Row], out: Path, title: str, notes: list[str] = ()) -> list[Path]:
    """results.json, results.md (``notes`` under the table), per-benchmark bars and (when depths
    are present) the depth plot."""
    from tflocal.evaluate.plots import depth_plot, subset_bars

    written = [
        write_json(rows, out / "results.json"),
        write_markdown(rows, out / "results.md", title=title, notes=notes),
    ]
    for bench in dict.fromkeys(r.benchmark for r in rows):
        bench_rows = [r for r in rows if r.benchmark == bench and "/depth" not in r.subset]
        written.append(subset_bars(bench_rows, out / f"bars_{bench}.png", title=bench))
    depth = depth_plot(rows, out / "depth.png")
    if depth:
        written.append(depth)
    return written


def report_coverage(bench: str, rows: list[Row], cache: Any, out: Path) -> list[str]:
    """Print and return the coverage line of ``bench`` (items scored / in the data / published);
    also written to ``out/coverage.json``. Empty for benchmarks without items (retrieval)."""
    import json

    from tflocal.evaluate.coverage import coverage, coverage_dict

    cov = coverage(bench, rows, cache)
    if cov is None:
        return []
    (out / "coverage.json").write_text(json.dumps(coverage_dict(cov), indent=1) + "\n")
    print(f"tflocal eval: {cov.line()}")
    return [cov.line()]


def run_eval(cfg: EvalConfig, progress: bool = True) -> list[Row]:
    """Everything ``tflocal eval`` does (see the module docstring); returns the rows."""
    from cache_tools.reader import open_cache

    cfg.validate()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = open_cache(ensure_cache(cfg, progress))
    try:
        rows, scorers = evaluate_scorers(cfg, cache, progress)
        notes = report_coverage(cfg.bench, rows, cache, out)
        write_report(rows, out, title=f"{cfg.bench} — {cache.attrs.get('encoder', '')}", notes=notes)
        if cfg.heatmaps:
            draw_heatmaps(cfg, cache, scorers, out)
    finally:
        cache.close()
    return rows
