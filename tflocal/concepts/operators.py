"""The SWAP / REPLACE / ADD operators over a parsed caption's atomic concepts.

Each generator takes a :class:`Caption` and a :class:`Vocabulary` and lists every
single-step edit it can make as a :class:`Candidate` (not yet rendered). The registry
:data:`OPERATORS` maps ``(op, kind)`` to its generator; :mod:`tflocal.concepts.negatives`
picks among candidates, renders them and composes them.

Kinds: ``attribute`` (an attribute word), ``object`` (a head noun / a whole new object),
``relation`` (a relation's predicate, or the exchange of its subject and object).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tflocal.concepts.agreement import POSSESSIVES, agreement_edits
from tflocal.concepts.render import Edit, token_texts
from tflocal.concepts.structure import Caption
from tflocal.concepts.vocab import Vocabulary

_SING_COPULA = {"are": "is", "were": "was", "have": "has"}
_PLUR_COPULA = {"is": "are", "was": "were", "has": "have"}


@dataclass
class Candidate:
    """One possible edit: ``touched`` names the concepts involved (old and new words),
    ``new_words`` the words it brings into the caption (for the no-undo rule)."""

    op: str
    kind: str
    edit: Edit
    touched: tuple[str, ...]
    new_words: tuple[str, ...] = ()


def _words(cap: Caption, span: tuple[int, int], texts: list[str]) -> list[str]:
    return texts[span[0] : span[1]]


def _related(cap: Caption, i: int, j: int) -> bool:
    return any({r.subject, r.object} == {i, j} for r in cap.relations)


def _attr_words(cap: Caption, i: int) -> set[str]:
    return {a.word for a in cap.object_attributes(i)}


# ------------------------------------------------------------------------------ SWAP
def swap_attribute(cap: Caption, v: Vocabulary) -> list[Candidate]:
    """Exchange two attributes between two objects ("white towels in a blue bathroom" ->
    "blue towels in a white bathroom"); when no pair exists, move one attribute to an object
    that has none of its category."""
    texts = token_texts(cap, v)
    out: list[Candidate] = []
    n = len(cap.objects)
    for i in range(n):
        for j in range(i + 1, n):
            wi, wj = _attr_words(cap, i), _attr_words(cap, j)
            for a in cap.object_attributes(i):
                for b in cap.object_attributes(j):
                    if a.word == b.word or a.word in wj or b.word in wi:
                        continue
                    if _category_clash(cap, i, a, b) or _category_clash(cap, j, b, a):
                        continue
                    if a.category != b.category and (len(wi) > 1 or len(wj) > 1):
                        continue  # keeps adjective order: cross-category only between lone attributes
                    edit = [(a.span, _words(cap, b.span, texts)), (b.span, _words(cap, a.span, texts))]
                    out.append(Candidate("swap", "attribute", edit, (a.word, b.word)))
    if out:
        return out
    for i in range(n):
        for j in range(n):
            if i == j or cap.objects[i].lemma == cap.objects[j].lemma:
                continue
            cats_j = {b.category for b in cap.object_attributes(j)}
            for a in cap.object_attributes(i):
                if a.predicative or a.category in cats_j or a.category == "other":
                    continue
                pos = _attribute_slot(cap, j, a.category, v)
                edit = [(a.span, []), ((pos, pos), _words(cap, a.span, texts))]
                out.append(Candidate("swap", "attribute", edit, (a.word, cap.objects[j].lemma)))
    return out


def _category_clash(cap: Caption, i: int, leaving, arriving) -> bool:
    """Would object i end up with two attributes of one category (e.g. two colors)?"""
    if arriving.category == "other":
        return False
    return any(x is not leaving and x.category == arriving.category for x in cap.object_attributes(i))


def _same_signature(cap: Caption, i: int, j: int) -> bool:
    involved = any(i in (r.subject, r.object) or j in (r.subject, r.object) for r in cap.relations)
    return _attr_words(cap, i) == _attr_words(cap, j) and not involved


def swap_object(cap: Caption, v: Vocabulary) -> list[Candidate]:
    """Exchange two head nouns, attributes staying in place ("a red cube left of a blue
    ball" -> "a red ball left of a blue cube"). When both objects carry the same attributes
    and are linked by a relation, this is a subject/object exchange: kind ``relation``.
    Pronouns and possessives that refer to the caption's subject follow its new noun ("A man
    walking his dog" -> "A dog walking its man")."""
    out = []
    n = len(cap.objects)
    for i in range(n):
        for j in range(i + 1, n):
            oi, oj = cap.objects[i], cap.objects[j]
            if oi.lemma == oj.lemma or _same_signature(cap, i, j):
                continue
            if (oi.plural and oj.lemma in v.mass_nouns) or (oj.plural and oi.lemma in v.mass_nouns):
                continue
            edit = [
                (oi.span, v.inflect(oj.lemma, oi.plural).split()),
                (oj.span, v.inflect(oi.lemma, oj.plural).split()),
            ]
            if i == 0:
                edit += agreement_edits(cap, 0, oj.category, oi.plural, [oi.span, oj.span])
            same_attrs = _attr_words(cap, i) == _attr_words(cap, j)
            kind = "relation" if same_attrs and _related(cap, i, j) else "object"
            out.append(Candidate("swap", kind, edit, (oi.lemma, oj.lemma)))
    return out


def swap_relation(cap: Caption, v: Vocabulary) -> list[Candidate]:
    """Exchange the subject and object phrases of a relation ("a dog chasing a cat" -> "a
    cat chasing a dog"), with agreement: is/are before the predicate, present-tense verbs
    ("Two cats chase a dog"), pronouns after the subject ("... while it smiles"). A phrase
    with a possessive determiner keeps its determiners in place and exchanges what follows
    them ("A man walking his dog" -> "A dog walking its man")."""
    texts = token_texts(cap, v)
    out = []
    for r in cap.relations:
        s, o = cap.objects[r.subject], cap.objects[r.object]
        if s.lemma == o.lemma and _attr_words(cap, r.subject) == _attr_words(cap, r.object):
            continue
        if not (s.phrase[1] <= o.phrase[0]):
            continue
        if any(x.det[1] > x.det[0] and cap.tokens[x.det[0]].lower in POSSESSIVES for x in (s, o)):
            sa, oa = (s.det[1], s.phrase[1]), (o.det[1], o.phrase[1])
            s_new = texts[o.det[1] : o.span[0]] + v.inflect(o.lemma, s.plural).split()
            o_new = texts[s.det[1] : s.span[0]] + v.inflect(s.lemma, o.plural).split()
            edit: Edit = [(sa, s_new), (oa, o_new)]
            edit += agreement_edits(cap, r.subject, o.category, s.plural, [sa, oa])
            out.append(Candidate("swap", "relation", edit, (s.lemma, r.canonical, o.lemma)))
            continue
        edit = [(s.phrase, _words(cap, o.phrase, texts)), (o.phrase, _words(cap, s.phrase, texts))]
        if s.plural != o.plural:
            table = _PLUR_COPULA if o.plural else _SING_COPULA
            for q in range(s.phrase[1], r.span[0]):
                if cap.tokens[q].lower in table:
                    edit.append(((q, q + 1), [table[cap.tokens[q].lower]]))
        edit += agreement_edits(cap, r.subject, o.category, o.plural, [s.phrase, o.phrase], copulas=False)
        out.append(Candidate("swap", "relation", edit, (s.lemma, r.canonical, o.lemma)))
    return out


# ------------------------------------------------------------------------------ REPLACE
def replace_object(cap: Caption, v: Vocabulary) -> list[Candidate]:
    """Replace a head noun by another noun of its category that the caption lacks."""
    present = {o.lemma for o in cap.objects} | set(cap.words())
    out = []
    for o in cap.objects:
        for new in v.nouns_in(o.category):
            if new in present or new.split()[-1] in present or v.noun_category.get(new) != o.category:
                continue
            if o.plural and new in v.mass_nouns:
                continue
            out.append(
                Candidate(
                    "replace", "object", [(o.span, v.inflect(new, o.plural).split())], (o.lemma, new), (new,)
                )
            )
    return out


def replace_attribute(cap: Caption, v: Vocabulary) -> list[Candidate]:
    """Replace an attribute by another of its category (antonym for size/age/state)."""
    present = {a.word for a in cap.attributes} | set(cap.words())
    out = []
    for a in cap.attributes:
        for new in v.attribute_replacements(a.word):
            if new in present:
                continue
            out.append(Candidate("replace", "attribute", [(a.span, [new])], (a.word, new), (new,)))
    return out


def replace_relation(cap: Caption, v: Vocabulary) -> list[Candidate]:
    """Replace a relation's preposition (its opposite first: "on" -> "under") or its verb
    (another verb of the same group: "sitting on" -> "standing on")."""
    words = set(cap.words())
    out = []
    for r in cap.relations:
        obj_cat = cap.objects[r.object].category
        if r.prep_span is not None and not (obj_cat == "clothing" and r.prep in ("in", "with")):
            canon = v.canonical_relation(r.prep)
            opp = v.opposites.get(canon) or v.opposites.get(r.prep)
            options = [opp] if opp else [p for p in v.spatial_replacements if p != canon and not r.verb]
            for new in options:
                if not new or set(new.split()) <= words and new in cap.text.lower():
                    continue
                surface = r.prep.replace(canon, new) if canon in r.prep and canon != r.prep else new
                out.append(
                    Candidate(
                        "replace", "relation", [(r.prep_span, surface.split())], (r.prep, surface), (new,)
                    )
                )
        if r.verb_span is not None:
            for new in v.verb_alternatives(r.verb):
                if new in words:
                    continue
                out.append(Candidate("replace", "relation", [(r.verb_span, [new])], (r.verb, new), (new,)))
    return out


# ------------------------------------------------------------------------------ ADD
def _attribute_slot(cap: Caption, i: int, category: str, v: Vocabulary) -> int:
    """Token index before which a new attribute of ``category`` goes (adjective order)."""
    o = cap.objects[i]
    rank = v.order_rank.get(category, len(v.order_rank))
    pre = sorted((a for a in cap.object_attributes(i) if not a.predicative), key=lambda a: a.span[0])
    for a in pre:
        if v.order_rank.get(a.category, len(v.order_rank)) > rank:
            return a.span[0]
    return pre[-1].span[1] if pre else o.det[1]


def add_attribute(cap: Caption, v: Vocabulary) -> list[Candidate]:
    """Add an attribute of a category the object does not have yet ("a dog" -> "a brown dog")."""
    present = set(cap.words())
    out = []
    for i, o in enumerate(cap.objects):
        cats = {a.category for a in cap.object_attributes(i)}
        if len(cats) >= 3:
            continue
        for cat in v.add_categories:
            if cat in cats or cat not in v.attributes:
                continue
            pos = _attribute_slot(cap, i, cat, v)
            for new in v.attributes[cat]:
                if new in present or new in v.no_replace:
                    continue
                out.append(Candidate("add", "attribute", [((pos, pos), [new])], (new, o.lemma), (new,)))
    return out


def add_object(cap: Caption, v: Vocabulary) -> list[Candidate]:
    """Add an object that is not in the caption, with a relation, after the last word
    ("... a white fence." -> "... a white fence next to a dog.")."""
    if not cap.objects:
        return []
    present = {o.lemma for o in cap.objects} | set(cap.words())
    words = [q for q, t in enumerate(cap.tokens) if t.is_word]
    end = words[-1] + 1
    ends_with_object = cap.objects[-1].span[1] == end
    rels = v.add_relations if ends_with_object else [r for r in v.add_relations if r == "and"]
    colors = [c for c in v.attributes.get("color", []) if c not in v.no_replace]
    out = []
    for cat in v.add_object_categories:
        for noun in v.nouns_in(cat):
            if noun in present or noun.split()[-1] in present or v.noun_category.get(noun) != cat:
                continue
            for rel in rels:
                out.append(
                    Candidate(
                        "add",
                        "object",
                        [((end, end), [*rel.split(), "a", *noun.split()])],
                        (rel, noun),
                        (noun,),
                    )
                )
                for c in colors if v.add_object_with_color else []:
                    if c in present:
                        continue
                    edit = [((end, end), [*rel.split(), "a", c, *noun.split()])]
                    out.append(Candidate("add", "object", edit, (rel, c, noun), (c, noun)))
    return out


# ------------------------------------------------------------------------------ numbers, comparatives, negation
NUMBERS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
QUANTITIES = [*NUMBERS, "several", "many", "few", "some"]
"""Words that state how many: the numbers (REPLACE'able) and vague quantities (SWAP only).
Numerals written as digits ("2 dogs", "4-wheelers") are numbers too (:func:`is_number`)."""


def is_number(word: str) -> bool:
    """A number word of :data:`NUMBERS` or a numeral written as digits ("2", "12")."""
    return word in NUMBERS or _digits(word)


def _digits(word: str) -> bool:
    return word.isascii() and word.isdigit()


def _is_quantity(word: str) -> bool:
    return word in QUANTITIES or _digits(word)


def _next_numbers(word: str) -> list[str]:
    """The numbers one up and one down, in the form ``word`` is written in ("two" -> "three",
    "one"; "2" -> "3", "1"; "1" -> "2": no "0")."""
    if _digits(word):
        k = int(word)
        return [str(j) for j in (k + 1, k - 1) if j >= 1]
    k = NUMBERS.index(word)
    return [NUMBERS[j] for j in (k + 1, k - 1) if 0 <= j < len(NUMBERS)]


COMPARATIVES = {
    "big": "bigger", "small": "smaller", "large": "larger", "tall": "taller", "short": "shorter",
    "long": "longer", "old": "older", "young": "younger", "wide": "wider", "thin": "thinner",
    "thick": "thicker", "high": "higher", "low": "lower", "little": "littler", "huge": "huger",
    "tiny": "tinier", "heavy": "heavier", "light": "lighter", "dark": "darker", "bright": "brighter",
}  # fmt: skip
"""Size-like adjective -> its -er form, for the comparative SWAP."""
_BASE_OF = {er: base for base, er in COMPARATIVES.items()}


def _quantity_slots(cap: Caption) -> list[tuple[int, str, int | None]]:
    """``(token, quantity word, object index or None)`` for each quantity in the caption: a
    determiner of an object ("two men", "2 men"), or the first part of a hyphenated compound
    ("four-wheelers", "4-wheelers"; object None: the compound keeps its form)."""
    det_of = {o.det[0]: i for i, o in enumerate(cap.objects) if o.det[1] == o.det[0] + 1}
    out = []
    for q, t in enumerate(cap.tokens):
        if not t.is_word:
            continue
        if _is_quantity(t.lower) and q in det_of:
            out.append((q, t.lower, det_of[q]))
        elif "-" in t.lower and is_number(t.lower.split("-", 1)[0]):
            out.append((q, t.lower.split("-", 1)[0], None))
    return out


def _cased(word: str, like: str) -> str:
    return word[:1].upper() + word[1:] if like[:1].isupper() else word


def _number_edits(cap: Caption, v: Vocabulary, slot: tuple[int, str, int | None], new: str) -> Edit:
    """Edits putting quantity ``new`` at ``slot``: the word itself, and for an object's
    determiner the head noun's number and the words that agree with it ("is" -> "are", also
    an existential "there is" before the object)."""
    q, old, i = slot
    tok = cap.tokens[q].text
    if i is None:
        return [((q, q + 1), [new + tok[len(old) :]])]
    o = cap.objects[i]
    plural = new not in ("one", "1")
    edit: Edit = [((q, q + 1), [_cased(new, tok)])]
    if plural != o.plural and o.lemma not in v.mass_nouns:
        edit.append((o.span, v.inflect(o.lemma, plural).split()))
        edit += agreement_edits(cap, i, o.category, plural, [o.phrase])
        table = _PLUR_COPULA if plural else _SING_COPULA
        if not any(s[0] >= o.phrase[1] for s, _ in edit[2:]):
            nxt = o.phrase[1]
            if nxt < len(cap.tokens) and cap.tokens[nxt].lower in table:
                edit.append(((nxt, nxt + 1), [table[cap.tokens[nxt].lower]]))
        be = o.phrase[0] - 1  # "there are two dogs" -> "there is one dog"
        if be >= 1 and cap.tokens[be].lower in table and cap.tokens[be - 1].lower == "there":
            edit.append(((be, be + 1), [_cased(table[cap.tokens[be].lower], cap.tokens[be].text)]))
    return edit


def swap_quantity(cap: Caption, v: Vocabulary) -> list[Candidate]:
    """Exchange two quantities ("two men on four-wheelers" -> "four men on two-wheelers",
    digits too: "2 men on 4-wheelers"); the nouns and verbs follow the new numbers ("one plane
    and several cars" -> "several planes and one car", "1 dog and 3 cats" -> "3 dogs and 1
    cat"). Kind ``attribute``, as the benchmarks label it."""
    slots = _quantity_slots(cap)
    out = []
    for a in range(len(slots)):
        for b in range(a + 1, len(slots)):
            sa, sb = slots[a], slots[b]
            if sa[1] == sb[1]:
                continue
            edit = _number_edits(cap, v, sa, sb[1]) + _number_edits(cap, v, sb, sa[1])
            out.append(Candidate("swap", "attribute", edit, (sa[1], sb[1])))
    return out


def replace_number(cap: Caption, v: Vocabulary) -> list[Candidate]:
    """Replace a number by the next one up or down ("two" -> "three"; "one dog is" -> "two
    dogs are"; digits stay digits: "2 dogs" -> "3 dogs" / "1 dog"). Kind ``attribute``."""
    words = set(cap.words())
    out = []
    for slot in _quantity_slots(cap):
        if not is_number(slot[1]):
            continue
        for new in _next_numbers(slot[1]):
            if new in words:
                continue
            edit = _number_edits(cap, v, slot, new)
            out.append(Candidate("replace", "attribute", edit, (slot[1], new), (new,)))
    return out


def swap_comparative(cap: Caption, v: Vocabulary) -> list[Candidate]:
    """Exchange two size words of which one is comparative, both ending in the -er form ("a
    large boat next to a smaller boat" -> "a smaller boat next to a larger boat"). Kind
    ``attribute``."""
    slots = []
    for q, t in enumerate(cap.tokens):
        if t.is_word and (t.lower in COMPARATIVES or t.lower in _BASE_OF):
            slots.append((q, _BASE_OF.get(t.lower, t.lower), t.lower in _BASE_OF))
    out = []
    for a in range(len(slots)):
        for b in range(a + 1, len(slots)):
            (qa, ba, ca), (qb, bb, cb) = slots[a], slots[b]
            if ba == bb or not (ca or cb):
                continue
            wa, wb = COMPARATIVES[bb], COMPARATIVES[ba]
            edit: Edit = [
                ((qa, qa + 1), [_cased(wa, cap.tokens[qa].text)]),
                ((qb, qb + 1), [_cased(wb, cap.tokens[qb].text)]),
            ]
            out.append(Candidate("swap", "attribute", edit, (ba, bb)))
    return out


_DO = {False: "does", True: "do"}


def negate_relation(cap: Caption, v: Vocabulary) -> list[Candidate]:
    """Negate a verb ("a plate that has broccoli" -> "a plate that does not have broccoli";
    "a man wearing yellow" -> "a man not wearing yellow"). A REPLACE of the relation."""
    if "not" in cap.words() or "n't" in cap.words():
        return []
    verbs = {r.verb_span[0] for r in cap.relations if r.verb_span is not None}
    nouns = {q for o in cap.objects for q in range(*o.span)}
    out = []
    for q, t in enumerate(cap.tokens):
        if not t.is_word:
            continue
        w = t.lower
        if w in ("has", "have"):
            edit: Edit = [((q, q + 1), [_cased(_DO[w == "have"], t.text), "not", "have"])]
        elif w.endswith("ing") and (w in v.verb_set or q in verbs) and q not in nouns:
            edit = [((q, q), ["not"])]
        else:
            continue
        out.append(Candidate("replace", "relation", edit, (w, f"not {w}"), ("not",)))
    return out


Generator = Callable[[Caption, Vocabulary], list[Candidate]]

OPERATORS: dict[str, dict[str, list[Generator]]] = {
    "swap": {
        "attribute": [swap_attribute, swap_quantity, swap_comparative],
        "object": [swap_object],
        "relation": [swap_relation, swap_object],
    },
    "replace": {
        "attribute": [replace_attribute, replace_number],
        "object": [replace_object],
        "relation": [replace_relation, negate_relation],
    },
    "add": {"attribute": [add_attribute], "object": [add_object]},
}
"""op -> kind -> generators whose candidates may carry that (op, kind) label."""


def candidates(cap: Caption, v: Vocabulary, op: str, kind: str | None = None) -> list[Candidate]:
    """All single-step candidates of ``op`` (and ``kind`` when given), in a stable order."""
    if op not in OPERATORS:
        from tflocal.errors import UserError

        raise UserError(f"unknown operator {op!r}; choose from {sorted(OPERATORS)}")
    kinds = [kind] if kind else list(OPERATORS[op])
    seen: set[Generator] = set()
    out: list[Candidate] = []
    for k in kinds:
        for gen in OPERATORS[op].get(k, []):
            if gen in seen:
                continue
            seen.add(gen)
            out.extend(c for c in gen(cap, v) if kind is None or c.kind == kind)
    return out
