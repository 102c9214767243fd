"""Which single operator turns a caption into a given negative?

:func:`explain` compares the two texts word by word (lowercased, "an" read as "a", nouns
read as their singular) and uses the parse of each side to name what changed:

- same words, different order -> ``swap``; the kind comes from the parsed structure:
  attributes moved between objects -> ``attribute``; head nouns exchanged with attributes
  in place -> ``object``; whole noun phrases exchanged -> ``relation`` when they are the
  subject and object of one relation, else ``object``;
- one contiguous span replaced -> ``replace`` (kind from the role of the replaced words);
- one contiguous span inserted -> ``add`` (``object`` if it brings a noun, else ``attribute``);
- anything else (identical, deletions, several edits) -> ``none``.
"""

from __future__ import annotations

from collections import Counter
from difflib import SequenceMatcher
from typing import Any

from tflocal.concepts.parser import parse
from tflocal.concepts.structure import Caption
from tflocal.concepts.vocab import Vocabulary, default_vocabulary


def roles(cap: Caption) -> dict[int, str]:
    """Token index -> "noun" / "attr" / "rel" / "det" from a parsed caption."""
    out: dict[int, str] = {}
    for o in cap.objects:
        for k in range(*o.det):
            out[k] = "det"
        for k in range(*o.span):
            out[k] = "noun"
    for a in cap.attributes:
        for k in range(*a.span):
            out[k] = "attr"
    for r in cap.relations:
        for sp in (r.verb_span, r.prep_span):
            if sp:
                for k in range(*sp):
                    out[k] = "rel"
    return out


def _words(cap: Caption, v: Vocabulary) -> tuple[list[str], list[int]]:
    """Normalized words (a/an merged, nouns singular) and their token indices."""
    words, idx = [], []
    for k, t in enumerate(cap.tokens):
        if not t.is_word:
            continue
        w = "a" if t.lower == "an" else t.lower
        words.append(v.noun_lemma.get((w,), w))
        idx.append(k)
    return words, idx


def _kind_of(cap: Caption, tokens: list[int], v: Vocabulary) -> str | None:
    r = roles(cap)
    found = {r.get(k) for k in tokens}
    if "noun" in found:
        return "object"
    if "rel" in found:
        return "relation"
    if "attr" in found:
        return "attribute"
    for k in tokens:
        w = cap.tokens[k].lower
        if "det" in found and v.determiners.get(w) not in (None, 1):
            return "attribute"  # a count ("two" -> "three")
        kind = v.word_kind(w)
        if kind:
            return kind
    nxt = max(tokens, default=-1) + 1
    if tokens and nxt < len(cap.tokens) and r.get(nxt) in ("noun", "attr"):
        return "attribute"  # an unknown word before a noun: an adjective
    return None


def _related(cap: Caption, i: int, j: int) -> bool:
    return any({r.subject, r.object} == {i, j} for r in cap.relations)


def _swap_kind(
    c: Caption, n: Caption, cw: list[str], nw: list[str], cidx: list[int], v: Vocabulary
) -> str | None:
    objs_c = [
        (o.lemma, tuple(sorted(a.word for a in c.object_attributes(i)))) for i, o in enumerate(c.objects)
    ]
    objs_n = [
        (o.lemma, tuple(sorted(a.word for a in n.object_attributes(i)))) for i, o in enumerate(n.objects)
    ]
    if len(objs_c) == len(objs_n) and objs_c:
        heads_c, heads_n = [o[0] for o in objs_c], [o[0] for o in objs_n]
        attrs_c, attrs_n = [o[1] for o in objs_c], [o[1] for o in objs_n]
        if heads_c == heads_n:
            return "attribute" if attrs_c != attrs_n else "relation"
        if sorted(objs_c) == sorted(objs_n):
            diff = [k for k in range(len(objs_c)) if objs_c[k] != objs_n[k]]
            return "relation" if len(diff) == 2 and _related(c, *diff) else "object"
        if attrs_c == attrs_n:
            return "object"
    moved = [cidx[k] for k in range(min(len(cw), len(nw))) if cw[k] != nw[k]]
    return _kind_of(c, moved, v)


def explain(caption: str, negative: str, vocab: Vocabulary | None = None) -> dict[str, Any]:
    """Name the single operator that turns ``caption`` into ``negative``.

    Returns ``{"op": "swap"|"replace"|"add"|"none", "kind": "object"|"attribute"|
    "relation"|None, "removed": [...], "added": [...]}`` (``removed``/``added``: the words
    that left / entered, empty for a swap).
    """
    v = vocab or default_vocabulary()
    c, n = parse(caption, v), parse(negative, v)
    cw, cidx = _words(c, v)
    nw, nidx = _words(n, v)
    result: dict[str, Any] = {"op": "none", "kind": None, "removed": [], "added": []}
    if cw == nw:
        return result
    if Counter(cw) == Counter(nw):
        result.update(op="swap", kind=_swap_kind(c, n, cw, nw, cidx, v))
        return result
    ops = [o for o in SequenceMatcher(None, cw, nw, autojunk=False).get_opcodes() if o[0] != "equal"]
    if len(ops) != 1:
        return result
    tag, i1, i2, j1, j2 = ops[0]
    removed, added = cw[i1:i2], nw[j1:j2]
    result.update(removed=removed, added=added)
    if tag == "insert":
        kind = _kind_of(n, nidx[j1:j2], v)
        result.update(op="add", kind="object" if kind in ("object", "relation") else kind or "attribute")
    elif tag == "replace":
        kind = _kind_of(c, cidx[i1:i2], v) or _kind_of(n, nidx[j1:j2], v)
        result.update(op="replace", kind=kind)
    return result
