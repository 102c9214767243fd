"""Which single operator turns a caption into a given negative?

:func:`explain` compares the two texts word by word, read so that inflection does not count as
a change: lowercased, the articles "a", "an", "the" as one word, nouns as their singular (also nouns the vocabulary
lacks), "is/are", "was/were", "has/have" and present-tense verbs ("feeds"/"feed") as one word,
and personal pronouns and possessives ("his", "her", "its", "their", "she", "it") as one
pronoun. So a swap that re-inflects the verb, changes number or moves a possessive with its
noun ("A man walking his dog" -> "A dog walking its man") is still a swap. It then uses the
parse of each side to name what changed:

- same words, different order -> ``swap``; the kind comes from the parsed structure:
  attributes moved between objects -> ``attribute``; head nouns exchanged with attributes
  in place -> ``object``; predicates exchanged between relations ("a man riding a horse and
  holding a rope" -> "... holding a horse and riding a rope") -> ``relation``; whole noun
  phrases exchanged -> ``object`` (two objects trade places, the benchmarks' label), or
  ``relation`` with ``convention="tflocal"`` when they are the subject and object of one
  relation (the label :mod:`tflocal.concepts.operators` gives that edit);
- one contiguous span replaced -> ``replace`` (kind from the role of the replaced words);
- one contiguous span inserted -> ``add`` (``object`` if it brings a noun, else ``attribute``;
  a noun modifier before a head that stays, "a porcelain teapot", is an ``attribute``);
- anything else (identical, deletions, several edits) -> ``none``.
"""

from __future__ import annotations

from collections import Counter
from difflib import SequenceMatcher
from typing import Any

from tflocal.concepts.parser import parse
from tflocal.concepts.structure import Caption
from tflocal.concepts.tagger import noun_lemma, verb_lemma
from tflocal.concepts.vocab import Vocabulary, default_vocabulary

CONVENTIONS = ("benchmark", "tflocal")
_PRONOUNS = {"he", "she", "it", "they", "him", "her", "them", "his", "its", "their", "hers", "theirs"}
_SAME = {"an": "a", "the": "a", "is": "be", "are": "be", "am": "be", "was": "were", "has": "have"}


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
    """Normalized words (see module docstring) and their token indices."""
    heads = {o.span[1] - 1 for o in cap.objects}
    verbs = {k for r in cap.relations if r.verb_span for k in range(*r.verb_span)}
    words, idx = [], []
    for k, t in enumerate(cap.tokens):
        if not t.is_word:
            continue
        w = _SAME.get(t.lower, t.lower)
        if w in _PRONOUNS:
            w = "<pronoun>"
        elif (w,) in v.noun_lemma:
            w = v.noun_lemma[(w,)]
        elif k in heads:
            w = noun_lemma(w)
        elif k in verbs or w in v.verb_set:
            w = verb_lemma(w, present_only=True)
        words.append(w)
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


def _modifies_a_head(cap: Caption, tokens: list[int]) -> bool:
    """Do ``tokens`` all lie inside one object's span, before its head word?"""
    return any(all(o.span[0] <= k < o.span[1] - 1 for k in tokens) for o in cap.objects) and bool(tokens)


def _related(cap: Caption, i: int, j: int) -> bool:
    return any({r.subject, r.object} == {i, j} for r in cap.relations)


def _swap_kind(
    c: Caption, n: Caption, cw: list[str], nw: list[str], cidx: list[int], v: Vocabulary, convention: str
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
            related = len(diff) == 2 and _related(c, *diff)
            return "relation" if related and convention == "tflocal" else "object"
        if attrs_c == attrs_n:
            return "object"
    moved = [cidx[k] for k in range(min(len(cw), len(nw))) if cw[k] != nw[k]]
    return _kind_of(c, moved, v)


def explain(
    caption: str, negative: str, vocab: Vocabulary | None = None, convention: str = "benchmark"
) -> dict[str, Any]:
    """Name the single operator that turns ``caption`` into ``negative``.

    ``convention``: "benchmark" (default) labels two noun phrases that trade places an object
    swap, as SugarCrepe and Winoground do; "tflocal" labels it a relation swap when they are a
    relation's subject and object, as the operators of :mod:`tflocal.concepts.operators` do.

    Returns ``{"op": "swap"|"replace"|"add"|"none", "kind": "object"|"attribute"|
    "relation"|None, "removed": [...], "added": [...]}`` (``removed``/``added``: the words
    that left / entered, empty for a swap).
    """
    if convention not in CONVENTIONS:
        from tflocal.errors import UserError

        raise UserError(f"explain: unknown convention {convention!r}; choose from {list(CONVENTIONS)}")
    v = vocab or default_vocabulary()
    c, n = parse(caption, v), parse(negative, v)
    cw, cidx = _words(c, v)
    nw, nidx = _words(n, v)
    result: dict[str, Any] = {"op": "none", "kind": None, "removed": [], "added": []}
    if cw == nw:
        return result
    if Counter(cw) == Counter(nw):
        result.update(op="swap", kind=_swap_kind(c, n, cw, nw, cidx, v, convention))
        return result
    ops = [o for o in SequenceMatcher(None, cw, nw, autojunk=False).get_opcodes() if o[0] != "equal"]
    if len(ops) != 1:
        return result
    tag, i1, i2, j1, j2 = ops[0]
    removed, added = cw[i1:i2], nw[j1:j2]
    result.update(removed=removed, added=added)
    if tag == "insert":
        kind = _kind_of(n, nidx[j1:j2], v)
        if kind == "object" and _modifies_a_head(n, nidx[j1:j2]):
            kind = "attribute"  # a noun modifier added before a kept head: "a porcelain teapot"
        result.update(op="add", kind="object" if kind in ("object", "relation") else kind or "attribute")
    elif tag == "replace":
        kind = _kind_of(c, cidx[i1:i2], v) or _kind_of(n, nidx[j1:j2], v)
        result.update(op="replace", kind=kind)
    return result
