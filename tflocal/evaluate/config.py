"""The evaluation recipe: what ``tflocal eval`` and ``configs/eval/*.yaml`` hold."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cache_tools.infra.precision import Precision, check_precision
from tflocal.errors import UserError
from tflocal.evaluate import BENCHMARKS


@dataclass
class EvalConfig:
    bench: str = ""
    """Benchmark name (``tflocal.evaluate.BENCHMARKS``): sugarcrepe, bivlc, winoground, vg_relation,
    vg_attribution, coco_order, flickr_order, valse, shapesworld, world3d, coco_retrieval, flickr_retrieval."""
    cache: str | None = None
    """Cache file of the benchmark; built here (with ``encoder`` and ``data``) when missing.
    Default: ``<out>/cache.h5``."""
    data: str | None = None
    """The benchmark's data, ``DIR`` or ``FORMAT:PATH`` (the benchmark's source format is assumed
    for a bare path); needed only to build the cache and to draw images under heatmaps."""
    images: str | None = None
    """Image folder, when the images do not lie where the source expects them."""
    options: dict[str, Any] = field(default_factory=dict)
    """Source options (e.g. ``{split: test}``), added to the benchmark's own."""
    encoder: str | None = None
    """Encoder registry name used to build a missing cache (and by SGI / raw-input scoring)."""
    scorers: list[str] = field(default_factory=lambda: ["cosine"])
    """Scorers compared side by side: cosine, maxsim, sgi, sgi:W, sgi@CKPT / sgi:W@CKPT (SGI
    scoring with a trained global head, for towers whose globals are not aligned), or checkpoint paths;
    ``prior@NAME`` / ``prior:N@NAME`` takes each caption's mean score over N reference images out of
    NAME's (see :mod:`tflocal.scoring.prior`)."""
    labels: dict[str, str] = field(default_factory=dict)
    """Names shown in the report for some scorers, e.g. ``{runs/global/best.pt: global head}``."""
    baselines: bool = False
    """Also score with maxsim and cosine where the cache's token / global space is joint."""
    out: str = "results"
    """Folder for results.json, results.md and the plots."""
    batch_size: int = 256
    """Pairs per scorer forward."""
    device: str = "cpu"
    """Device of the scorers' heads (and of the encoder when a cache is built)."""
    precision: Precision = "fp32"
    """fp32 | bf16 | fp16: trained heads' forward under autocast (bf16: faster for wide heads on a
    GPU or a CPU with native bf16, see docs/results/performance.md; fp16 only on a GPU)."""
    k_rerank: int = 100
    """Retrieval: first-stage candidates re-ranked by a scorer other than cosine."""
    crops: bool = False
    """Build the cache with crop embeddings (implied when an ``sgi`` scorer, with or without a head,
    is asked for)."""
    heatmaps: int = 4
    """Alignment heatmaps to draw (captions of the first images); 0 for none."""
    heatmap_split: str | None = None
    """Draw heatmaps for positive captions of images of this split only (image meta ``split``)."""
    title: str = ""
    """Title of results.md; default ``<bench> — <encoder>``."""

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise UserError("batch_size must be at least 1")
        check_precision(self.precision)
        if self.k_rerank < 1:
            raise UserError("k_rerank must be at least 1")
        if self.heatmaps < 0:
            raise UserError("heatmaps must be >= 0")
        if isinstance(self.scorers, str):
            self.scorers = [s for s in self.scorers.split(",") if s]
        if not self.bench:
            raise UserError(f"missing 'bench': give --bench NAME; choices: {', '.join(BENCHMARKS)}")
        if self.bench not in BENCHMARKS:
            raise UserError(f"unknown benchmark {self.bench!r}; choices: {', '.join(BENCHMARKS)}")
        if not self.scorers:
            raise UserError("no scorer: give --scorer cosine (repeatable) or set 'scorers' in the config")
