"""Benchmark evaluation: one module per benchmark, a registry, shared metrics and reports.

``BENCHMARKS`` maps a benchmark name to its evaluator ``(cache, scorer) -> list[Row]`` and the
data source format that builds its cache (``cache_tools.sources``); :func:`evaluate` runs one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tflocal.errors import UserError
from tflocal.evaluate.aro import evaluate_order, evaluate_vg_attribution, evaluate_vg_relation
from tflocal.evaluate.groups import evaluate_bivlc, evaluate_winoground
from tflocal.evaluate.recall import evaluate_retrieval
from tflocal.evaluate.report import Row
from tflocal.evaluate.shapesworld import evaluate_shapesworld
from tflocal.evaluate.sugarcrepe import evaluate_sugarcrepe
from tflocal.evaluate.valse import evaluate_valse
from tflocal.evaluate.world3d import evaluate_world3d


@dataclass(frozen=True)
class Benchmark:
    """evaluate: ``(cache, scorer, benchmark=name, **options) -> rows``; source: the cache_tools
    source format of its data; source_options: passed to ``open_source`` when a cache is built."""

    evaluate: Callable[..., list[Row]]
    source: str
    source_options: dict[str, Any] = field(default_factory=dict)
    description: str = ""


BENCHMARKS: dict[str, Benchmark] = {
    "sugarcrepe": Benchmark(
        evaluate_sugarcrepe, "sugarcrepe", description="accuracy per subset + micro-average"
    ),
    "bivlc": Benchmark(evaluate_bivlc, "bivlc", description="text / image / group score, per type"),
    "winoground": Benchmark(evaluate_winoground, "winoground", description="text / image / group score"),
    "vg_relation": Benchmark(
        evaluate_vg_relation, "vg_relation", description="ARO VG-Relation macro accuracy"
    ),
    "vg_attribution": Benchmark(
        evaluate_vg_attribution, "vg_attribution", description="ARO VG-Attribution macro accuracy"
    ),
    "coco_order": Benchmark(evaluate_order, "coco_order", description="ARO COCO-Order precision@1"),
    "flickr_order": Benchmark(evaluate_order, "flickr_order", description="ARO Flickr30k-Order precision@1"),
    "valse": Benchmark(evaluate_valse, "valse", description="pairwise accuracy over valid items, per piece"),
    "shapesworld": Benchmark(
        evaluate_shapesworld,
        "shapesworld",
        {"split": "test_id,test_ood"},
        description="accuracy per split, op, kind, depth",
    ),
    "world3d": Benchmark(
        evaluate_world3d,
        "world3d",
        {"split": "test_id,test_ood,test_novel"},
        description="accuracy per split, op, kind, depth + minimal pairs' text / image / group per category",
    ),
    "coco_retrieval": Benchmark(
        evaluate_retrieval, "karpathy", {"split": "test"}, "Karpathy test R@1/5/10 both ways"
    ),
    "flickr_retrieval": Benchmark(
        evaluate_retrieval, "karpathy", {"split": "test"}, "Karpathy test R@1/5/10 both ways"
    ),
}
"""Benchmark name -> evaluator and data source."""


def get_benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise UserError(f"unknown benchmark {name!r}; choices: {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]


def evaluate(name: str, cache: Any, scorer: Any, **options: Any) -> list[Row]:
    """Rows of benchmark ``name`` for ``scorer`` over ``cache`` (options: e.g. ``k_rerank`` for retrieval)."""
    return get_benchmark(name).evaluate(cache, scorer, benchmark=name, **options)


__all__ = ["BENCHMARKS", "Benchmark", "Row", "evaluate", "get_benchmark"]
