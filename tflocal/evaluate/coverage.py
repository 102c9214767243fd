"""How many items of a benchmark each run scored, against the data and the published size.

An item that is not scored must never vanish silently: the report prints, per benchmark,
``items scored / items in the data / published size`` and warns when they differ. Items in the
data are counted by the source while the cache is built (root attribute ``source_items`` of the
cache, written by ``cache_tools.write.build``); items the source or the writer could not use are in the cache's
``skipped`` rows, each with its reason.

What counts as one item: SugarCrepe a (caption, negative) pair; BiVLC and Winoground a 2x2 item;
ARO VG-R / VG-A one JSON item (VG-R's symmetric relations are scored, the macro-average leaves
them out); COCO/Flickr-Order one caption with its perturbations; VALSE one valid item (caption
chosen by >= 2 of 3 annotators, or no votes).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tflocal.evaluate.report import Row

PUBLISHED: dict[str, int | None] = {
    "sugarcrepe": 7511,
    "bivlc": 2933,
    "winoground": 400,
    "vg_relation": 23937,
    "vg_attribution": 28748,
    "coco_order": 25010,
    "flickr_order": 5000,
    "valse": None,  # as counted: the valid items of the piece files read
}
"""Benchmark -> its published number of items (None: as counted in the data)."""

PRIMARY_METRIC: dict[str, str] = {
    "sugarcrepe": "accuracy",
    "bivlc": "text",
    "winoground": "text",
    "vg_relation": "accuracy",
    "vg_attribution": "accuracy",
    "coco_order": "precision@1",
    "flickr_order": "precision@1",
    "valse": "accuracy",
}
"""Benchmark -> the metric whose overall row's ``n`` is the number of items scored."""


@dataclass
class Coverage:
    """One benchmark's counts; ``in_data`` None when the cache does not record it."""

    benchmark: str
    scored: int
    in_data: int | None
    published: int | None
    skipped: int

    @property
    def complete(self) -> bool:
        """Every item of the data scored, and the data as large as published (when known)."""
        ok = self.in_data is None or self.scored == self.in_data
        return ok and (self.published is None or self.published == (self.in_data or self.scored))

    def line(self) -> str:
        """``"bivlc: 3 items scored / 6 in the data / 2,933 published"`` (+ a warning when they differ)."""
        data = f"{self.in_data:,}" if self.in_data is not None else "? (not recorded in the cache)"
        pub = f"{self.published:,} published" if self.published is not None else "published size: as counted"
        text = f"{self.benchmark}: {self.scored:,} items scored / {data} in the data / {pub}"
        if self.complete:
            return text
        why = []
        if self.in_data is not None and self.scored != self.in_data:
            why.append(
                f"{self.in_data - self.scored:,} items of the data not scored; the cache's 'skipped' rows "
                f"({self.skipped:,}) give each reason"
            )
        if self.published is not None and self.published != (self.in_data or self.scored):
            why.append("the data is not the full published release (another version, a subset or a limit)")
        return f"WARNING {text}: " + "; ".join(why)


def items_scored(benchmark: str, rows: list[Row]) -> int | None:
    """``n`` of the benchmark's overall row (subset ``all...``, its primary metric), or None."""
    metric = PRIMARY_METRIC.get(benchmark)
    for r in rows:
        if r.benchmark == benchmark and r.metric == metric and r.subset.split(" ")[0] == "all":
            return int(r.n)
    return None


def coverage(benchmark: str, rows: list[Row], cache: Any) -> Coverage | None:
    """The counts of ``benchmark`` in ``rows`` over ``cache``; None for benchmarks without items
    (retrieval, ShapesWorld)."""
    scored = items_scored(benchmark, rows)
    if scored is None:
        return None
    attrs = getattr(cache, "attrs", {}) or {}
    in_data = attrs.get("source_items")
    try:
        n_skipped = len(cache.skipped)
    except Exception:  # noqa: BLE001 - a cache without a skipped group still gets its line
        n_skipped = 0
    return Coverage(
        benchmark,
        scored,
        int(in_data) if in_data not in (None, "", 0) else None,
        PUBLISHED.get(benchmark),
        n_skipped,
    )


def coverage_dict(cov: Coverage) -> dict[str, Any]:
    return asdict(cov) | {"complete": cov.complete}


def report_coverage(bench: str, rows: list[Any], cache: Any, out: Path) -> list[str]:
    """Print and return the coverage line of ``bench`` (items scored / in the data / published);
    also written to ``out/coverage.json``. Empty for benchmarks without items (retrieval)."""
    cov = coverage(bench, rows, cache)
    if cov is None:
        return []
    (out / "coverage.json").write_text(json.dumps(coverage_dict(cov), indent=1) + "\n")
    print(f"tflocal eval: {cov.line()}")
    return [cov.line()]
