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

A benchmark's negative often re-phrases the rest of the caption too ("Hot dog with mustard on
it" -> "A hot dog with mustard and a pickle on it"; "two plates and a drink on a table" ->
"Two plates, a salad, and a drink are on a table"). Each side is therefore also read
tolerantly (:mod:`tflocal.concepts.align`: articles, "be", "and", punctuation, noun number,
verb inflection and comparative degree ignored), and the edit is named on that reading when
the word-by-word one finds none, or to name its class (``detail``, see :data:`DETAILS`):

- only words added, one a noun -> ``add`` ``object`` ("rephrased"); nothing but inflection
  changed -> ``none``;
- counts (words or digits: "2 dogs" reads as "two dogs") or comparatives moved ("two men on
  four-wheelers" -> "four men on two-wheelers", "2 men on 4-wheelers" -> "4 men on 2-wheelers",
  "a large boat ... a smaller boat" -> "a smaller boat ... a larger boat") -> ``swap``
  ``attribute`` ("quantity" / "comparative"), as the benchmarks label them;
- a negation added or removed ("has" -> "does not have", "with" -> "without", "dressed in"
  -> "not wearing") -> ``replace`` ``relation`` ("negation");
- only verbs, prepositions and relational nouns ("at the edge of") changed, the objects and
  attributes kept -> ``replace`` ``relation`` ("relation-phrase");
- a modifier replaced before a kept head, even one the parse reads as a noun ("a stone wall"
  -> "a brick wall", "a clay court" -> "a grass court") -> ``replace`` ``attribute``
  ("modifier").
"""

from __future__ import annotations

from collections import Counter
from difflib import SequenceMatcher
from typing import Any

from tflocal.concepts.align import Word, tolerant_words
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
    "relation"|None, "removed": [...], "added": [...], "detail": str|None}`` (``removed``/
    ``added``: the words that left / entered, empty for a swap; ``detail``: the finer class
    of the edit where one applies, see :data:`DETAILS`).
    """
    if convention not in CONVENTIONS:
        from tflocal.errors import UserError

        raise UserError(f"explain: unknown convention {convention!r}; choose from {list(CONVENTIONS)}")
    v = vocab or default_vocabulary()
    c, n = parse(caption, v), parse(negative, v)
    cw, cidx = _words(c, v)
    nw, nidx = _words(n, v)
    result: dict[str, Any] = {"op": "none", "kind": None, "removed": [], "added": [], "detail": None}
    if cw == nw:
        return result
    ct, nt = tolerant_words(c, roles(c), v), tolerant_words(n, roles(n), v)
    if Counter(cw) == Counter(nw):
        result.update(op="swap", kind=_swap_kind(c, n, cw, nw, cidx, v, convention))
        _refine_swap(result, ct, nt)
        return result
    ops = [o for o in SequenceMatcher(None, cw, nw, autojunk=False).get_opcodes() if o[0] != "equal"]
    if len(ops) != 1:
        _tolerant(result, c, n, ct, nt, (cw, nw, cidx), v, convention)
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
        if kind == "object" and _is_attribute_change(c, n, cidx[i1:i2], nidx[j1:j2], v):
            result["detail"] = "modifier"
            kind = "attribute"
        result.update(op="replace", kind=kind)
        _inflected_add(result, ct, nt)
    elif tag == "delete":
        _tolerant(result, c, n, ct, nt, (cw, nw, cidx), v, convention)
        return result
    _refine_edit(result, ct, nt)
    return result


DETAILS = ("quantity", "comparative", "negation", "rephrased", "relation-phrase", "modifier")
"""Finer classes ``explain`` names in ``detail``: a count swapped or replaced ("two" <->
"four", "several"); a comparative or superlative ("larger" <-> "smaller"); a negation ("does
not have", "without"); an edit found only after tolerant alignment (re-inflected, re-punctuated
or re-ordered text around it); a relation rewritten as another verb or preposition phrase; a
noun modifier or an adjective read as a noun replaced before a kept head ("a stone wall" ->
"a brick wall")."""


def _changed(ct: list[Word], nt: list[Word]) -> tuple[list[Word], list[Word]]:
    """Words of each side outside the tolerant alignment's matching blocks."""
    sm = SequenceMatcher(None, [w.norm for w in ct], [w.norm for w in nt], autojunk=False)
    gone: list[Word] = []
    new: list[Word] = []
    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        if tag != "equal":
            gone += ct[i1:i2]
            new += nt[j1:j2]
    return gone, new


def _moved_class(moved: set[str]) -> str | None:
    """The class "quantity" / "comparative" when the moved words are only counts / degree words."""
    content = moved - {"other"}
    if content == {"quantity"}:
        return "quantity"
    if "comparative" in content and content <= {"comparative", "attribute"}:
        return "comparative"
    return None


def _moved(ct: list[Word], nt: list[Word]) -> list[Word]:
    """Words of a swap that are not where they were: position by position when both sides
    read as the same number of words, else those outside the alignment's matching blocks."""
    if len(ct) == len(nt):
        return [w for a, b in zip(ct, nt) if a.norm != b.norm for w in (a, b)]
    gone, new = _changed(ct, nt)
    return gone + new


def _refine_swap(result: dict[str, Any], ct: list[Word], nt: list[Word]) -> None:
    detail = _moved_class({w.cls for w in _moved(ct, nt)})
    if detail:
        result.update(kind="attribute", detail=detail)


def _refine_edit(result: dict[str, Any], ct: list[Word], nt: list[Word]) -> None:
    """Name a negation (a relation replace), a count or a comparative (attribute) edit."""
    gone, new = _changed(ct, nt)
    if not gone and not new:  # only inflection, articles or "be" differ: no edit
        result.update(op="none", kind=None, removed=[], added=[], detail=None)
        _degree_change(result, ct, nt)
        return
    classes = {w.cls for w in gone + new}
    if "negation" in classes and classes <= {"negation", "relation", "other", "quantity"}:
        result.update(op="replace", kind="relation", detail="negation")
    elif result["op"] == "replace" and _moved_class(classes):
        result.update(kind="attribute", detail=_moved_class(classes))


def _is_attribute_change(c: Caption, n: Caption, ctoks: list[int], ntoks: list[int], v: Vocabulary) -> bool:
    """A modifier before a kept head replaced ("a stone wall" -> "a brick wall"), or one
    attribute word the parse read as a noun replaced by another ("is orange" -> "is pink")."""
    if _premodifies(c, ctoks) and _premodifies(n, ntoks):
        return True
    words = [c.tokens[k].lower for k in ctoks] + [n.tokens[k].lower for k in ntoks]
    return bool(words) and all(
        w in v.attribute_category or (v.word_kind(w) == "attribute" and (w,) not in v.noun_lemma)
        for w in words
    )


def _inflected_add(result: dict[str, Any], ct: list[Word], nt: list[Word]) -> None:
    """A replace whose removed words come back re-inflected beside a new noun ("flying" ->
    "and a helicopter fly") is an add of an object."""
    gone_bag = Counter(w.norm for w in ct) - Counter(w.norm for w in nt)
    new_bag = Counter(w.norm for w in nt) - Counter(w.norm for w in ct)
    entered = [w for w in nt if w.norm in new_bag]
    if not gone_bag and any(w.cls == "noun" for w in entered):
        result.update(
            op="add", kind="object", detail="rephrased", removed=[], added=[w.norm for w in entered]
        )


def _premodifies(cap: Caption, tokens: list[int]) -> bool:
    """Do the tokens stand right before an object's head, each an attribute, a noun modifier
    in the object's span, or a word the parse left without a role ("a grass court")?"""
    if not tokens:
        return False
    r = roles(cap)
    heads = {o.span[1] - 1 for o in cap.objects}
    return (max(tokens) + 1 in heads or _modifies_a_head(cap, tokens)) and all(
        r.get(k) in (None, "attr") or _modifies_a_head(cap, [k]) for k in tokens
    )


def _degree_change(result: dict[str, Any], ct: list[Word], nt: list[Word]) -> None:
    """Same words up to comparative degree: a degree moved between two adjectives ("a young
    boy ... a larger umbrella" -> "a younger boy ... a large umbrella") is a comparative
    swap, one adjective's degree changed ("a large dog" -> "a larger dog") a replace."""
    diff = [(a, b) for a, b in zip(ct, nt) if a.text != b.text]
    classes = {w.cls for pair in diff for w in pair}
    if not diff or "comparative" not in classes or not classes <= {"comparative", "attribute"}:
        return
    if len(diff) >= 2:
        result.update(op="swap", kind="attribute", detail="comparative", removed=[], added=[])
    else:
        result.update(op="replace", kind="attribute", detail="comparative", removed=[diff[0][0].text],
                      added=[diff[0][1].text])  # fmt: skip


def _tolerant(
    result: dict[str, Any],
    c: Caption,
    n: Caption,
    ct: list[Word],
    nt: list[Word],
    strict: tuple[list[str], list[str], list[int]],
    v: Vocabulary,
    convention: str,
) -> None:
    """Decide the edit on the tolerant alignment when the word-by-word one finds none."""
    cn, nn = [w.norm for w in ct], [w.norm for w in nt]
    if cn == nn:
        _degree_change(result, ct, nt)
        return
    gone_bag, new_bag = Counter(cn) - Counter(nn), Counter(nn) - Counter(cn)
    gone, new = _changed(ct, nt)
    result.update(removed=[w.norm for w in gone], added=[w.norm for w in new])
    if not gone_bag and not new_bag:
        detail = _moved_class({w.cls for w in _moved(ct, nt)})
        kind = "attribute" if detail else _swap_kind(c, n, *strict[:2], strict[2], v, convention)
        result.update(op="swap", kind=kind, detail=detail or "rephrased", removed=[], added=[])
        return
    left = [w for w in ct if w.norm in gone_bag]
    entered = [w for w in nt if w.norm in new_bag]
    gone_cls, new_cls = {w.cls for w in left}, {w.cls for w in entered}
    classes = gone_cls | new_cls
    if "negation" in classes and classes <= {"negation", "relation", "other"}:
        result.update(op="replace", kind="relation", detail="negation")
    elif not gone_bag:
        added_words = {"removed": [], "added": [w.norm for w in entered]}
        if "noun" in new_cls:
            result.update(op="add", kind="object", detail="rephrased", **added_words)
        elif new_cls & {"attribute", "comparative", "quantity"}:
            result.update(op="add", kind="attribute", detail="rephrased", **added_words)
    elif not new_bag:
        return  # a deletion
    elif "relation" in classes and classes <= {"relation", "other"}:
        result.update(op="replace", kind="relation", detail="relation-phrase")
    elif _moved_class(classes):
        result.update(op="replace", kind="attribute", detail=_moved_class(classes))
