"""Caption parser recall on a hand-labelled set of real-looking captions.

Input: a JSONL file (default ``tests/data/captions_labelled.jsonl``), one caption a line:
``{"caption", "domain", "objects": [head noun, ...], "bindings": [[attribute, noun], ...]}``
(labels written by hand, compound nouns as one object: "fire hydrant", "ice cream cone").

Figures, overall and per domain:

* ``heads``: share of labelled objects whose head noun (last word, singular or plural) is the
  head of a parsed object;
* ``bindings``: share of labelled (attribute, noun) pairs where that attribute word is bound to
  the parsed object with that head;
* ``with_object``: share of captions where the parser finds at least one object;
* ``object_precision``: share of parsed objects whose head is a labelled head (informational).

Prints a table, then one last line holding a JSON object with every figure.

    python bench/parser.py [--data FILE] [--spacy-model NAME] [--show-misses]

``--spacy-model`` (or ``TFLOCAL_SPACY_MODEL``) measures the parser with a spaCy pipeline's tags;
without it, the built-in offline tagger.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT / "tests" / "data" / "captions_labelled.jsonl"


def singular(word: str) -> str:
    """Crude English singular, enough to compare a label with a parsed head."""
    w = word.lower()
    if w.endswith("ies") and len(w) > 4:
        return w[:-3] + "y"
    if w.endswith("ves") and len(w) > 4:
        return w[:-3] + "f"
    if w.endswith(("ses", "xes", "ches", "shes")):
        return w[:-2]
    if w.endswith("s") and not w.endswith("ss") and len(w) > 3:
        return w[:-1]
    return w


def _same(parsed: str, b: str) -> bool:
    """Does a parsed head ("written|lemma") name the labelled noun ``b`` (last words compared)?"""
    return any(_same_word(a, b) for a in parsed.split("|"))


def _same_word(a: str, b: str) -> bool:
    a, b = a.lower().split()[-1], b.lower().split()[-1]
    return a == b or singular(a) == singular(b) or singular(a).rstrip("e") == singular(b).rstrip("e")


def score_caption(row: dict, parse_fn) -> dict:
    """Counts for one labelled caption: found / expected heads and bindings, parsed objects."""
    cap = parse_fn(row["caption"])
    heads = [f"{cap.tokens[o.span[1] - 1].text}|{o.lemma}" for o in cap.objects]
    found_heads = sum(any(_same(h, exp) for h in heads) for exp in row["objects"])
    bound = 0
    missed = []
    for attr, noun in row["bindings"]:
        ok = False
        for i in range(len(cap.objects)):
            if not _same(heads[i], noun):
                continue
            if any(attr.lower() in a.word.lower().split() for a in cap.object_attributes(i)):
                ok = True
        bound += ok
        if not ok:
            missed.append((attr, noun))
    precise = sum(any(_same(h, exp) for exp in row["objects"]) for h in heads)
    return {
        "heads": (found_heads, len(row["objects"])),
        "bindings": (bound, len(row["bindings"])),
        "with_object": (int(bool(cap.objects)), 1),
        "object_precision": (precise, len(heads)),
        "missed_heads": [e for e in row["objects"] if not any(_same(h, e) for h in heads)],
        "missed_bindings": missed,
        "parsed": [
            (h.split("|")[0], [a.word for a in cap.object_attributes(i)]) for i, h in enumerate(heads)
        ],
    }


def measure(path: Path = DEFAULT_DATA, parse_fn=None, show_misses: bool = False) -> dict:
    """Figures over the whole file and per domain: ``{"overall": {...}, "domains": {d: {...}}, "n"}``."""
    if parse_fn is None:
        from tflocal.concepts import parse as parse_fn
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    keys = ("heads", "bindings", "with_object", "object_precision")
    tot: dict[str, dict[str, list[int]]] = defaultdict(lambda: {k: [0, 0] for k in keys})
    for row in rows:
        r = score_caption(row, parse_fn)
        for dom in ("overall", row["domain"]):
            for k in keys:
                tot[dom][k][0] += r[k][0]
                tot[dom][k][1] += r[k][1]
        if show_misses and (r["missed_heads"] or r["missed_bindings"]):
            print(f"  miss: {row['caption']!r} heads={r['missed_heads']} bind={r['missed_bindings']}")
            print(f"        parsed {r['parsed']}")

    def ratios(d):
        return {k: round(v[0] / v[1], 4) if v[1] else None for k, v in d.items()}

    domains = sorted(d for d in tot if d != "overall")
    return {
        "n": len(rows),
        "overall": ratios(tot["overall"]),
        "domains": {d: ratios(tot[d]) for d in domains},
    }


def explain_accuracy() -> dict:
    """:func:`tflocal.concepts.explain` on the hand-written tables of
    ``tests/tflocal/concepts/test_concepts_explain.py`` (``TABLE``, and ``HELD_OUT`` under
    "held_out"): share of pairs with the right operator, and with the right operator and kind."""
    import importlib.util

    from tflocal.concepts import explain

    spec = importlib.util.spec_from_file_location(
        "explain_table", ROOT / "tests" / "tflocal" / "concepts" / "test_concepts_explain.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = {}
    for name, table in (("table", mod.TABLE), ("held_out", mod.HELD_OUT)):
        got = [(explain(c, n), op, kind) for c, n, op, kind in table]
        n = len(got)
        out[name] = {
            "n": n,
            "right_op": round(sum(g["op"] == op for g, op, _ in got) / n, 4),
            "right_op_and_kind": round(sum((g["op"], g["kind"]) == (op, k) for g, op, k in got) / n, 4),
        }
    real = {}
    for name in ("explain_pairs_real.jsonl", "explain_pairs_real_heldout.jsonl"):
        with open(ROOT / "tests" / "data" / name, encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
        per: dict = {}
        for r in rows:
            g = explain(r["positive"], r["negative"])
            for key in (r["class"], "overall"):
                s = per.setdefault(key, [0, 0, 0])
                s[0] += g["op"] == r["op"]
                s[1] += (g["op"], g["kind"]) == (r["op"], r["kind"])
                s[2] += 1
        real[name.removesuffix(".jsonl")] = {
            k: {"n": n, "right_op": round(a / n, 4), "right_op_and_kind": round(b / n, 4)}
            for k, (a, b, n) in per.items()
        }
    return {**out["table"], "held_out": out["held_out"], "real": real}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--spacy-model", default=os.environ.get("TFLOCAL_SPACY_MODEL", ""), metavar="NAME")
    ap.add_argument("--show-misses", action="store_true")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    if args.spacy_model:
        os.environ["TFLOCAL_SPACY_MODEL"] = args.spacy_model
    else:
        os.environ.pop("TFLOCAL_SPACY_MODEL", None)
    backend = f"spacy:{args.spacy_model}" if args.spacy_model else "built-in tagger"
    from tflocal.concepts import parse

    t0 = time.perf_counter()
    res = measure(args.data, parse, args.show_misses)
    res["explain"] = explain_accuracy()
    res["backend"] = backend
    res["seconds"] = round(time.perf_counter() - t0, 2)
    print(f"parser recall on {res['n']} hand-labelled captions ({args.data.name}, {backend})")
    print(f"{'domain':<10} {'heads':>7} {'bindings':>9} {'>=1 obj':>8} {'obj prec':>9}")
    for name, fig in [("overall", res["overall"]), *res["domains"].items()]:
        print(
            f"{name:<10} {fig['heads']:>7.1%} {fig['bindings']:>9.1%} {fig['with_object']:>8.1%}"
            f" {fig['object_precision']:>9.1%}"
        )
    for name, ex in (("its table", res["explain"]), ("the held-out table", res["explain"]["held_out"])):
        print(
            f"explain on {name} of {ex['n']} pairs: right operator {ex['right_op']:.1%}, "
            f"right operator and kind {ex['right_op_and_kind']:.1%}"
        )
    for table, per in res["explain"]["real"].items():
        for cls, ex in per.items():
            print(
                f"explain on {table} [{cls}] of {ex['n']} pairs: right operator {ex['right_op']:.1%}, "
                f"right operator and kind {ex['right_op_and_kind']:.1%}"
            )
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
