"""How many of a benchmark's published negatives the operators reproduce.

For each (positive, negative) pair a benchmark's loader (:mod:`cache_tools.sources`) reads, the
pair is *replicated* when the operators, at depth <= ``depth`` (1, 2 or 3; 2 by default), make
the same edit from the positive:

- SWAP (and labels the operators lack, such as ARO's "order"): some SWAP output (of any kind:
  the benchmarks call a subject/object exchange an object swap, the operators a relation swap)
  of depth <= ``depth`` equals the negative once both are normalised (lowercase, punctuation
  dropped, "an" -> "a", a plural -s dropped), so inflection, case and punctuation do not count;
- REPLACE / ADD: a candidate of the same operator and kind changes the same token span of the
  positive (the new words are free); up to ``depth`` candidates together may cover as many
  changed spans.

Each depth tests a superset of the pairs the one below it tests, so a rate never falls as the
depth grows. SugarCrepe's files are read for their captions only: its COCO image folder need
not be there. :func:`replicate` returns one row per benchmark subset (``depth``, ``n``,
``replicated``, ``rate`` and the same split by the benchmark's operator label).
"""

from __future__ import annotations

import difflib
import itertools
import json
import re
from collections.abc import Iterator
from pathlib import Path

from tflocal.errors import UserError

BENCHES = {
    "sugarcrepe": ("sugarcrepe", {}),
    "vg_relation": ("aro", {"subset": "vg_relation"}),
    "vg_attribution": ("aro", {"subset": "vg_attribution"}),
    "coco_order": ("aro", {"subset": "coco_order"}),
    "valse": ("valse", {}),
}
"""``--replicate`` benchmark name -> (data source format, its options). ``aro`` reads every
ARO subset whose file the folder holds."""
ARO = ("vg_relation", "vg_attribution", "coco_order")
KINDS = ("attribute", "object", "relation")
MAX_SECOND_STEP = 64
"""SWAP outputs of one depth that are swapped again for the next."""
DEPTHS = (1, 2, 3)
TEXT_ONLY = {"sugarcrepe"}
"""Formats read without their image folder (the loader's ``text_only``): replication needs only
the captions."""


def normalize_words(text: str) -> list[str]:
    """Words compared by the SWAP test: lowercase, no punctuation, "an" -> "a", no plural -s."""
    out = []
    for w in re.findall(r"[a-z0-9'-]+", text.lower()):
        w = "a" if w == "an" else w
        if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
            w = w[:-1]
        out.append(w)
    return out


def _changed_spans(pos: list[str], neg: list[str]) -> frozenset[tuple[int, int]]:
    """Token spans of ``pos`` (normalised words) that differ in ``neg``; an insertion is ``(i, i)``."""
    sm = difflib.SequenceMatcher(None, pos, neg, autojunk=False)
    return frozenset((i1, i2) for tag, i1, i2, _, _ in sm.get_opcodes() if tag != "equal")


def _outputs(text: str, op: str, kind: str | None) -> list[str]:
    from tflocal.concepts.operators import candidates
    from tflocal.concepts.parser import parse
    from tflocal.concepts.render import apply_edit
    from tflocal.concepts.vocab import default_vocabulary

    v = default_vocabulary()
    cap = parse(text, v)
    return [apply_edit(cap, c.edit, v) for c in candidates(cap, v, op, kind)]


def replicates(positive: str, negative: str, op: str, kind: str | None, depth: int = 2) -> bool:
    """Do the operators at depth <= ``depth`` make ``negative`` from ``positive`` (see the module
    doc)? ``op``/``kind`` are the benchmark's labels. SWAP is tested over every kind (the
    benchmarks call a subject/object exchange an object swap, the operators a relation swap); an
    op the operators lack is tested as SWAP."""
    if depth not in DEPTHS:
        raise UserError(f"replicate: depth must be 1, 2 or 3 (got {depth!r})")
    kind = kind if kind in KINDS else None
    target = normalize_words(negative)
    pos = normalize_words(positive)
    if target == pos:
        return False
    if op not in ("replace", "add"):
        level = [positive]
        for _ in range(depth):
            nxt = [t2 for t in dict.fromkeys(level[:MAX_SECOND_STEP]) for t2 in _outputs(t, "swap", None)]
            if any(normalize_words(t) == target for t in nxt):
                return True
            level = nxt
        return False
    want = _changed_spans(pos, target)
    have = {_changed_spans(pos, normalize_words(t)) for t in _outputs(positive, op, kind)}
    if want in have:
        return True
    singles = [s for s in have if s <= want]
    return any(
        frozenset().union(*combo) == want
        for r in range(2, depth + 1)
        for combo in itertools.combinations(singles, r)
    )


def parse_spec(spec: str) -> list[tuple[str, str, str, dict]]:
    """``BENCH:PATH[?opt=value&...]`` -> ``[(bench, format, path, options)]`` (``aro`` expands to
    the ARO subsets whose files ``PATH`` holds)."""
    bench, sep, rest = spec.partition(":")
    bench = bench.lower()
    choices = ", ".join([*BENCHES, "aro"])
    if not sep or bench not in (*BENCHES, "aro"):
        raise UserError(
            f"--replicate {spec!r}: unknown benchmark {bench!r}; give BENCH:PATH with BENCH one of {choices}"
            " (e.g. --replicate sugarcrepe:data/sugarcrepe)"
        )
    path, _, opts = rest.partition("?")
    if not path or not Path(path).exists():
        raise UserError(f"--replicate {spec!r}: {path or '(empty)'}: no such file or folder; give the folder "
                        f"holding the {bench} release files as published")  # fmt: skip
    options = dict(o.split("=", 1) for o in opts.split("&") if "=" in o)
    if bench != "aro":
        fmt, fixed = BENCHES[bench]
        return [(bench, fmt, path, {**options, **fixed})]
    from cache_tools.sources.aro import FILES

    found = [s for s in ARO if any((Path(path) / f).is_file() for f in FILES[s])]
    if not found:
        raise UserError(
            f"--replicate {spec!r}: no ARO file ({', '.join(f for s in ARO for f in FILES[s])}) in {path}"
        )
    return [(s, "aro", path, {**options, "subset": s}) for s in found]


def _pairs(fmt: str, path: str, options: dict) -> Iterator[tuple[str, str, str, str, str]]:
    """``(subset, positive, negative, op, kind)`` for each negative the loader reads."""
    from cache_tools.sources import open_source

    text_only = {"text_only": True} if fmt in TEXT_ONLY else {}
    for rec in open_source(f"{fmt}:{path}", **options, **text_only):
        for t in rec.texts:
            if t.positive < 0:
                continue
            subset = str(t.meta.get("subset") or t.meta.get("piece") or options.get("subset") or fmt)
            yield subset, rec.texts[t.positive].text, t.text, t.op or "unlabelled", t.kind


def _rate(n: int, k: int) -> float:
    return round(k / n, 4) if n else 0.0


def replicate(spec: str, depth: int = 2) -> list[dict]:
    """One row per subset: ``{"bench", "subset", "depth", "n", "replicated", "rate", "by_op": {op:
    {"n", "replicated", "rate"}}}`` (``depth``: the most operators in a row tried), subsets in
    the order the loader reads them."""
    if depth not in DEPTHS:
        raise UserError(f"--replicate: --depth must be one of 1, 2, 3 (got {depth!r})")
    rows: dict[tuple[str, str], dict] = {}
    for bench, fmt, path, options in parse_spec(spec):
        for subset, pos, neg, op, kind in _pairs(fmt, path, options):
            row = rows.setdefault(
                (bench, subset), {"bench": bench, "subset": subset, "depth": depth, "n": 0, "replicated": 0}
            )
            ok = replicates(pos, neg, op, kind, depth)
            row["n"] += 1
            row["replicated"] += int(ok)
            by = row.setdefault("by_op", {}).setdefault(op, {"n": 0, "replicated": 0})
            by["n"] += 1
            by["replicated"] += int(ok)
    out = []
    for row in rows.values():
        row["rate"] = _rate(row["n"], row["replicated"])
        for by in row["by_op"].values():
            by["rate"] = _rate(by["n"], by["replicated"])
        out.append({k: row[k] for k in ("bench", "subset", "depth", "n", "replicated", "rate", "by_op")})
    return out


def markdown(rows: list[dict]) -> str:
    """The rows as a markdown table (one line per subset and operator label; ``depth``: the most
    operators in a row tried)."""
    lines = ["| bench | subset | op | depth | n | replicated | rate |", "|---|---|---|---:|---:|---:|---:|"]
    for r in rows:
        head = f"| {r['bench']} | {r['subset']}"
        lines.append(f"{head} | all | {r['depth']} | {r['n']} | {r['replicated']} | {r['rate']:.1%} |")
        for op, by in r["by_op"].items():
            lines.append(
                f"{head} | {op} | {r['depth']} | {by['n']} | {by['replicated']} | {by['rate']:.1%} |"
            )
    return "\n".join(lines) + "\n"


def write_report(rows: list[dict], out: str | Path) -> Path:
    """Write the rows as JSON to ``out`` and as markdown next to it (``.md``); returns the md path."""
    p = Path(out)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    md = p.with_suffix(".md")
    md.write_text(markdown(rows), encoding="utf-8")
    return md
