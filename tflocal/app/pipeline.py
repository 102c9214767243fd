"""The one pipeline: ensure caches -> train heads (when asked) -> evaluate -> report (+ heatmaps).

``run_pipeline(evaluation, caches=[...], heads=[...])`` is what ``tflocal eval``, the quickstart
and the notebook call:

1. every :class:`CacheConfig` in ``caches`` is built unless its file exists (resumable), then the
   benchmark's own cache (``evaluation.cache``, default ``<out>/cache.h5``) is built from
   ``evaluation.encoder`` and ``evaluation.data`` when missing;
2. every :class:`TrainConfig` in ``heads`` is trained unless ``<out>/done.json`` says it was;
3. every scorer of ``evaluation.scorers`` (plus maxsim / cosine with ``baselines``) is evaluated;
4. ``evaluation.out`` gets ``results.json`` (fixed-key rows), ``results.md`` (scorers side by
   side), per-benchmark bars, accuracy versus depth and word-to-region heatmaps drawn over the
   raw images (read from the benchmark's source here, and nowhere else).

``stage(name)`` (a context manager factory) wraps each step, e.g. to time it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import itertools
import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cache_tools.config import CacheConfig
from cache_tools.encoders import load_encoder
from cache_tools.encoders.geometry import geometry_of
from cache_tools.encoders.images import load_image
from cache_tools.sources import SOURCES, open_source
from cache_tools.store.reader import open_cache
from cache_tools.write.build import build_cache
from tflocal.errors import UserError
from tflocal.evaluate import get_benchmark
from tflocal.evaluate.config import EvalConfig
from tflocal.evaluate.coverage import report_coverage
from tflocal.evaluate.report import Row, write_json, write_markdown
from tflocal.scoring.head import HeadScorer
from tflocal.scoring.load import is_sgi, load_scorer
from tflocal.scoring.prior import strip_prior
from tflocal.training.config import TrainConfig
from tflocal.training.loop import train

Stage = Callable[[str], contextlib.AbstractContextManager]


@dataclasses.dataclass
class Result:
    """What a pipeline run produced."""

    rows: list[Row]
    files: list[Path]
    """Report files written (results, plots, heatmaps)."""
    checkpoints: list[Path]
    """Checkpoints of the heads trained (or found trained) in this run."""
    beside_seconds: float | None = None
    """Wall seconds of the work done beside the training (None: none was)."""


def ensure_cache(cfg: CacheConfig, progress: bool = True) -> Path:
    """``cfg.out``, built from ``cfg.data`` with ``cfg.encoder`` unless the file exists."""
    path = Path(cfg.out)
    if not path.is_file():
        print(f"   {build_cache(cfg, progress=progress)}")
    return path


def data_spec(cfg: EvalConfig) -> str:
    """``cfg.data`` as ``FORMAT:PATH`` (the benchmark's format for a bare path)."""
    data = cfg.data or ""
    if ":" in data and data.split(":", 1)[0] in SOURCES:
        return data
    return f"{get_benchmark(cfg.bench).source}:{data}"


def _uses_sgi(cfg: EvalConfig) -> bool:
    """An SGI scorer is asked for (``sgi``, ``sgi:W``, ``sgi@CKPT``, ``sgi:W@CKPT``): crops and an encoder."""
    return any(is_sgi(strip_prior(s)) for s in cfg.scorers)


def benchmark_cache_path(cfg: EvalConfig) -> Path:
    """Where the benchmark's cache is: ``cfg.cache``, default ``<out>/cache.h5``."""
    return Path(cfg.cache) if cfg.cache else Path(cfg.out) / "cache.h5"


def benchmark_cache(cfg: EvalConfig, progress: bool = True) -> Path:
    """The benchmark's cache, built from ``cfg.data`` with ``cfg.encoder`` when the file is missing."""
    path = benchmark_cache_path(cfg)
    if path.is_file():
        return path
    if not cfg.encoder or not cfg.data:
        raise UserError(
            f"cache {path} not found: pass --cache to an existing cache, or --encoder and --data to build it"
        )
    ccfg = CacheConfig(
        encoder=cfg.encoder,
        data=data_spec(cfg),
        out=str(path),
        images=cfg.images,
        options={**get_benchmark(cfg.bench).source_options, **cfg.options},
        batch_size=min(cfg.batch_size, 64),
        crops=cfg.crops or _uses_sgi(cfg),
        device=cfg.device,
    )
    print(f"tflocal eval: building cache {path} from {ccfg.data} with {cfg.encoder}")
    build_cache(ccfg, progress=progress)
    return path


def train_head(cfg: TrainConfig) -> Path:
    """Train ``cfg`` unless ``<out>/done.json`` records a finished run; its checkpoint."""
    out = Path(cfg.out)
    done = out / "done.json"
    if done.is_file():
        summary = json.loads(done.read_text())
    else:
        summary = train(cfg)
        done.write_text(json.dumps(summary, default=str, indent=1))
    return Path(summary["checkpoint"])


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


def scorer_names(cfg: EvalConfig, cache: Any) -> list[str]:
    """``cfg.scorers``, plus maxsim / cosine where the cache's spaces allow with ``cfg.baselines``."""
    names = list(cfg.scorers)
    if cfg.baselines:
        names += [
            n for n, ok in (("maxsim", cache.spec.joint_tokens), ("cosine", cache.spec.joint_globals)) if ok
        ]
    return list(dict.fromkeys(names))


def evaluate_scorers(cfg: EvalConfig, cache: Any, progress: bool = True) -> tuple[list[Row], list[Any]]:
    """Rows of every scorer (see :func:`scorer_names`) on ``cache``; also returns the scorers."""
    bench = get_benchmark(cfg.bench)
    extra = {"k_rerank": cfg.k_rerank} if "k_rerank" in inspect.signature(bench.evaluate).parameters else {}
    encoder = load_encoder(cfg.encoder, device=cfg.device) if cfg.encoder and _uses_sgi(cfg) else None
    rows: list[Row] = []
    scorers = []
    for name in scorer_names(cfg, cache):
        scorer = load_scorer(
            name,
            cache,
            encoder=encoder,
            device=cfg.device,
            batch_size=cfg.batch_size,
            progress=progress,
            precision=cfg.precision,
        )
        scorer.name = cfg.labels.get(name, scorer.name)
        scorers.append(scorer)
        rows += bench.evaluate(cache, scorer, benchmark=cfg.bench, **extra)
    return dedupe(rows), scorers


def images_of(cfg: EvalConfig, ids: set[str], within: int) -> dict[str, Any]:
    """PIL images of the cache image ids ``ids``, read from the benchmark's source among its
    first ``within`` records (cache rows follow the source's order)."""
    if not cfg.data or not ids:
        return {}
    try:
        source = open_source(
            data_spec(cfg), images=cfg.images, **{**get_benchmark(cfg.bench).source_options, **cfg.options}
        )
        found = {}
        for rec in itertools.islice(iter(source), within):
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
    from tflocal.evaluate.plots import alignment_plot  # matplotlib: only when something is drawn

    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in label)
    return [
        alignment_plot(
            att,
            cache.token_strings(int(t))[: att.shape[0]],
            cache.attrs["grid"],
            out_dir / f"{safe}_text{t}.png",
            image=photos.get(str(cache.image_ids[i])),
            caption=str(cache.strings[t]),
            geometry=geometry_of(cache.attrs),
        )
        for t, i, att in zip(texts, imgs, maps)
    ]


def heatmap_texts(cfg: EvalConfig, cache: Any) -> np.ndarray:
    """Caption rows to draw: the first ``cfg.heatmaps`` with an image (positives of images of
    ``cfg.heatmap_split`` when set)."""
    texts = np.flatnonzero(cache.image_index >= 0)
    if cfg.heatmap_split:
        texts = np.asarray(
            [
                t
                for t in texts
                if cache.positive_index[t] < 0
                and cache.image_meta(int(cache.image_index[t])).get("split") == cfg.heatmap_split
            ][: cfg.heatmaps],
            dtype=np.int64,
        )
    return texts[: cfg.heatmaps]


def draw_heatmaps(cfg: EvalConfig, cache: Any, scorers: list[Any], out: Path) -> list[Path]:
    """Alignment heatmaps for the captions of :func:`heatmap_texts`, per scorer that has them."""
    texts = heatmap_texts(cfg, cache)
    if not len(texts):
        return []
    imgs = cache.image_index[texts]
    photos = images_of(cfg, {str(cache.image_ids[i]) for i in imgs}, within=int(imgs.max()) + 200)
    # a head's own word-region attention when it has one; else token-patch cosine, drawn once
    sources = [(s.name, s) for s in scorers if isinstance(s, HeadScorer) and s.head.word_maps]
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


def write_report(rows: list[Row], out: Path, title: str, notes: Sequence[str] = ()) -> list[Path]:
    """results.json, results.md (``notes`` under the table), per-benchmark bars and (when depths
    or chains are present) the depth plot and the chain plot."""
    from tflocal.evaluate.plots import (  # matplotlib: only when plotting
        CHAIN_ROW,
        chain_plot,
        depth_plot,
        subset_bars,
    )

    written = [
        write_json(rows, out / "results.json"),
        write_markdown(rows, out / "results.md", title=title, notes=notes),
    ]
    for bench in dict.fromkeys(r.benchmark for r in rows):
        # composition depths go to the depth plot; a subset named "<split>/depth" (world3d's
        # in-front-of / behind minimal pairs) stays with the bars; chains go to the chain plot
        bench_rows = [
            r
            for r in rows
            if r.benchmark == bench
            and not re.fullmatch(r".+/depth\d+", r.subset)
            and not CHAIN_ROW.fullmatch(r.subset)
        ]
        written.append(subset_bars(bench_rows, out / f"bars_{bench}.png", title=bench))
    depth = depth_plot(rows, out / "depth.png")
    if depth:
        written.append(depth)
    chains = chain_plot(rows, out / "chains.png")
    if chains:
        written.append(chains)
    return written


def run_pipeline(
    evaluation: EvalConfig,
    caches: Sequence[CacheConfig] = (),
    heads: Sequence[TrainConfig] = (),
    progress: bool = True,
    stage: Stage = lambda name: contextlib.nullcontext(),
    prepare: Callable[[], None] | None = None,
) -> Result:
    """Ensure caches -> train -> evaluate -> report (see the module docstring). A run that fails
    leaves no empty output folder behind. ``prepare`` (picklable) runs before the caches that no
    head trains on (e.g. rendering their images); on a CPU with two cores or more, those caches
    are built beside the training, in a second process (:mod:`tflocal.app.beside`)."""
    out = Path(evaluation.out)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        return _run(evaluation, out, caches, heads, progress, stage, prepare)
    except BaseException:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise


def _read_by_training(caches: Sequence[CacheConfig], heads: Sequence[TrainConfig]) -> list[CacheConfig]:
    """The caches some head trains or validates on (all of them when no head is trained)."""
    if not heads:
        return list(caches)
    read = {Path(p).resolve() for t in heads for p in (t.cache, t.val_cache) if p}
    return [c for c in caches if Path(c.out).resolve() in read]


def build_untrained_caches(
    caches: Sequence[CacheConfig],
    evaluation: EvalConfig,
    prepare: Callable[[], None] | None = None,
    progress: bool = True,
) -> Path:
    """``prepare()``, each of ``caches`` (those no head reads), then the benchmark's cache ->
    its path: in order, or in the process :mod:`tflocal.app.beside` starts."""
    if prepare is not None:
        prepare()
    for ccfg in caches:
        ensure_cache(ccfg, progress)
    return benchmark_cache(evaluation, progress)


def _run(
    evaluation: EvalConfig,
    out: Path,
    caches: Sequence[CacheConfig],
    heads: Sequence[TrainConfig],
    progress: bool,
    stage: Stage,
    prepare: Callable[[], None] | None = None,
) -> Result:
    from tflocal.app.beside import Beside, beside_enabled

    first = _read_by_training(caches, heads)
    rest = [c for c in caches if c not in first]
    later = prepare is not None or not benchmark_cache_path(evaluation).is_file()
    later = later or any(not Path(c.out).is_file() for c in rest)
    beside = None
    with stage("cache"):
        for ccfg in first:
            ensure_cache(ccfg, progress)
        if later and beside_enabled(bool(heads) and all(t.on_cpu() for t in heads)):
            beside = Beside(rest, evaluation, prepare)
            print(
                f"   the caches no head trains on are built beside the training "
                f"(a second process, {beside.threads} thread{'s' if beside.threads > 1 else ''})",
                flush=True,
            )
        else:
            path = build_untrained_caches(rest, evaluation, prepare, progress)
    checkpoints = []
    try:
        for tcfg in heads:
            with stage(f"train the {tcfg.head} head"):
                checkpoints.append(train_head(tcfg))
        if beside is not None:
            with stage("wait for the caches built beside"):
                path = beside.result()
            print(f"   built beside the training in {beside.seconds:.1f} s", flush=True)
    except BaseException:
        if beside is not None:
            beside.stop()
        raise
    cache = open_cache(path)
    try:
        with stage("evaluate"):
            rows, scorers = evaluate_scorers(evaluation, cache, progress)
        with stage("report"):
            title = evaluation.title or f"{evaluation.bench} — {cache.attrs.get('encoder', '')}"
            files = write_report(
                rows, out, title=title, notes=report_coverage(evaluation.bench, rows, cache, out)
            )
            if evaluation.heatmaps:
                files += draw_heatmaps(evaluation, cache, scorers, out)
    finally:
        cache.close()
    return Result(rows, files, checkpoints, beside.seconds if beside is not None else None)
