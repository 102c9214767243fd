"""Result rows and their reports: fixed-key JSON and a markdown table of scorers side by side.

Every benchmark evaluator returns a list of :class:`Row`; a run writes them all to
``results.json`` (a list of objects with exactly the keys of ``ROW_KEYS``) and ``results.md``
(rows = benchmark / subset / metric, columns = scorers).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from tflocal.errors import UserError


@dataclass
class Row:
    """One number of one run. ``value`` is a fraction in [0, 1] for accuracies and recalls."""

    benchmark: str
    subset: str
    metric: str
    value: float
    n: int
    scorer: str = ""
    encoder: str = ""
    cache: str = ""
    checkpoint: str = ""


ROW_KEYS: tuple[str, ...] = tuple(f.name for f in fields(Row))


def row_to_dict(row: Row) -> dict[str, Any]:
    d = asdict(row)
    d["value"] = None if row.value is None or math.isnan(row.value) else float(row.value)
    d["n"] = int(row.n)
    return d


def row_from_dict(d: dict[str, Any]) -> Row:
    missing = [k for k in ROW_KEYS if k not in d]
    extra = [k for k in d if k not in ROW_KEYS]
    if missing or extra:
        raise UserError(
            f"result row {d!r}: missing keys {missing}, unknown keys {extra}; expected {ROW_KEYS}"
        )
    value = float("nan") if d["value"] is None else float(d["value"])
    return Row(**{**d, "value": value})


def write_json(rows: list[Row], path: str | Path) -> Path:
    """Write ``rows`` as a JSON list of fixed-key objects."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([row_to_dict(r) for r in rows], indent=1) + "\n")
    return path


def read_json(path: str | Path) -> list[Row]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"results file {path} not found: run `tflocal eval ... --out DIR` first")
    return [row_from_dict(d) for d in json.loads(path.read_text())]


def scorer_label(row: Row) -> str:
    """Column name of a row's scorer in the side-by-side table."""
    return row.scorer or "?"


def markdown_table(rows: list[Row], percent: bool = True) -> str:
    """Rows = (benchmark, subset, metric) in first-seen order, columns = scorers, cells = value.

    Values are shown as percentages with one decimal when ``percent``; a missing cell is "–".
    The last column is ``n`` (from the first scorer that reports the row).
    """
    scorers: list[str] = []
    keys: list[tuple[str, str, str]] = []
    cells: dict[tuple[tuple[str, str, str], str], float] = {}
    counts: dict[tuple[str, str, str], int] = {}
    for r in rows:
        key = (r.benchmark, r.subset, r.metric)
        label = scorer_label(r)
        if label not in scorers:
            scorers.append(label)
        if key not in counts:
            keys.append(key)
            counts[key] = r.n
        cells[(key, label)] = r.value

    def fmt(v: float | None) -> str:
        if v is None or math.isnan(v):
            return "–"
        return f"{100 * v:.1f}" if percent else f"{v:.4f}"

    header = ["benchmark", "subset", "metric", *scorers, "n"]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] * 3 + ["---:"] * (len(scorers) + 1)) + "|",
    ]
    for key in keys:
        vals = [fmt(cells.get((key, s))) for s in scorers]
        lines.append("| " + " | ".join([*key, *vals, str(counts[key])]) + " |")
    return "\n".join(lines) + "\n"


def write_markdown(rows: list[Row], path: str | Path, title: str = "Results", notes: list[str] = ()) -> Path:
    """The side-by-side table; ``notes`` (e.g. the item coverage lines) are listed under it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    encoders = sorted({r.encoder for r in rows if r.encoder})
    caches = sorted({r.cache for r in rows if r.cache})
    head = [f"# {title}", ""]
    if encoders:
        head.append(f"encoder: {', '.join(encoders)}  ")
    if caches:
        head.append(f"cache: {', '.join(caches)}  ")
    head += ["values in %", ""]
    tail = "".join(["\n", *(f"- {n}\n" for n in notes)]) if notes else ""
    path.write_text("\n".join(head) + "\n" + markdown_table(rows) + tail)
    return path
