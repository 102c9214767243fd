"""File-level helpers behind ``tflocal negatives``: add negatives to a JSONL manifest, and
explain a JSONL file of caption/negative pairs."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from tflocal.errors import UserError


def _rows_from_source(spec: str, out_dir: Path) -> list[dict]:
    """Manifest rows from any data source ``FORMAT:PATH`` (e.g. a Karpathy split JSON): one row
    per image with its positive captions; image paths relative to ``out_dir``."""
    import os

    from cache_tools.sources import open_source

    fmt, _, rest = spec.partition(":")
    path, _, opts = rest.partition("?")
    options = dict(o.split("=", 1) for o in opts.split("&") if "=" in o)
    rows = []
    for rec in open_source(f"{fmt}:{path}", **options):
        if not isinstance(rec.image, (str, Path)):
            continue
        caps = [t.text for t in rec.texts if t.positive < 0]
        if caps:
            image = os.path.relpath(os.path.abspath(rec.image), os.path.abspath(out_dir))
            rows.append(
                {"id": rec.id, "image": image, "captions": caps, **({"meta": rec.meta} if rec.meta else {})}
            )
    return rows


def _read_jsonl(path: str | Path, out_dir: Path | None = None) -> list[dict]:
    from cache_tools.sources import SOURCES

    fmt = str(path).split(":", 1)[0]
    if ":" in str(path) and fmt in SOURCES and not Path(path).is_file():
        return _rows_from_source(str(path), out_dir or Path("."))
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: no such file; give a JSONL manifest (one JSON object per line)")
    rows = []
    with open(p, encoding="utf-8") as f:
        for ln, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise UserError(f"{p}:{ln}: not valid JSON ({err.msg}); fix or remove that line") from err
    return rows


def add_negatives(
    in_path: str | Path,
    out_path: str | Path,
    ops: Sequence[str] = ("swap", "replace", "add"),
    depths: Sequence[int] = (1,),
    per_caption: int = 3,
    seed: int = 0,
) -> Counter:
    """Append ``per_caption`` negatives per caption and depth to each line's ``negatives``
    (kept if present), in the manifest format (``text, op, kind, depth, positive``). Returns
    counts per ``op/kind``."""
    from tqdm import tqdm

    from tflocal.concepts.negatives import make_negatives

    rows = _read_jsonl(in_path, Path(out_path).parent)
    counts: Counter = Counter()
    for ln, row in enumerate(tqdm(rows, desc="negatives", disable=len(rows) < 1000), start=1):
        caps = row.get("captions")
        if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
            raise UserError(f"{in_path}:{ln}: 'captions' must be a list of strings")
        negs = list(row.get("negatives") or [])
        for ci, cap in enumerate(caps):
            for d in depths:
                for neg in make_negatives(cap, ops=ops, depth=d, n=per_caption, seed=seed):
                    negs.append(neg.to_json(positive=ci))
                    counts[f"{neg.op}/{neg.kind}"] += 1
        row["negatives"] = negs
    _write_jsonl(out_path, rows)
    return counts


def explain_file(in_path: str | Path, out_path: str | Path, convention: str = "benchmark") -> Counter:
    """For each ``{"caption", "negative"}`` line write the line plus ``op``, ``kind``,
    ``removed``, ``added`` (see :func:`tflocal.concepts.explain`, whose ``convention`` this
    passes on). Returns counts per op/kind."""
    from tflocal.concepts.explain import explain

    rows = _read_jsonl(in_path)
    counts: Counter = Counter()
    out = []
    for ln, row in enumerate(rows, start=1):
        if not isinstance(row.get("caption"), str) or not isinstance(row.get("negative"), str):
            raise UserError(f"{in_path}:{ln}: each line needs string fields 'caption' and 'negative'")
        res = explain(row["caption"], row["negative"], convention=convention)
        out.append({**row, **res})
        counts[f"{res['op']}/{res['kind']}"] += 1
    _write_jsonl(out_path, out)
    return counts


def _write_jsonl(path: str | Path, rows: list[dict]) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
