"""The structure of a caption: tokens, objects, attributes bound to objects, relations.

Spans are token spans ``(start, end)`` (end exclusive) into :attr:`Caption.tokens`;
:meth:`Caption.char_span` turns one into character offsets in :attr:`Caption.text`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Span = tuple[int, int]


@dataclass
class Token:
    """One word or punctuation mark: ``text`` as written, ``lower`` lowercased, character
    offsets ``start``/``end`` and the whitespace that follows it (``ws``)."""

    text: str
    lower: str
    start: int
    end: int
    ws: str = ""
    is_word: bool = False


@dataclass
class Attribute:
    """An attribute word bound to an object: ``category`` is color, material, size, shape,
    pattern, state, age, or "other" for an unknown prenominal modifier; ``predicative`` when it
    follows the noun ("the towels are white")."""

    word: str
    category: str
    obj: int
    span: Span
    predicative: bool = False


@dataclass
class Object:
    """A noun phrase's head. ``lemma`` is the singular vocabulary form (for a noun outside
    the vocabulary: the singular of its last word, after any compound modifiers), ``category``
    its group (animal, person, ...; "unknown" outside the vocabulary), ``count`` the number stated (1 for "a", 2 for "two", None if
    unstated), ``plural`` the grammatical number; ``span`` covers the head noun, ``phrase``
    the whole phrase from determiner to head, ``det`` the determiner span (may be empty)."""

    head: str
    lemma: str
    category: str
    span: Span
    phrase: Span
    det: Span
    count: int | None = None
    plural: bool = False
    attributes: list[int] = field(default_factory=list)


@dataclass
class Relation:
    """``subject`` --predicate--> ``object`` (object indices). ``predicate`` is the phrase
    as written, ``canonical`` its normalized form ("to the left of" -> "left of"),
    ``verb``/``prep`` its parts (either may be ""), ``span`` the predicate's tokens."""

    subject: int
    object: int
    predicate: str
    canonical: str
    verb: str
    prep: str
    span: Span
    verb_span: Span | None = None
    prep_span: Span | None = None


@dataclass
class Caption:
    """A parsed caption. ``capitalized``: the text starts with an uppercase letter;
    ``unparsed``: indices of word tokens that got no role (useful to reject partial parses)."""

    text: str
    tokens: list[Token]
    objects: list[Object] = field(default_factory=list)
    attributes: list[Attribute] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)
    capitalized: bool = False
    unparsed: list[int] = field(default_factory=list)

    def char_span(self, span: Span) -> tuple[int, int]:
        """Character offsets of a token span."""
        s, e = span
        return self.tokens[s].start, self.tokens[e - 1].end

    def span_text(self, span: Span) -> str:
        s, e = self.char_span(span)
        return self.text[s:e]

    def object_attributes(self, i: int) -> list[Attribute]:
        return [self.attributes[a] for a in self.objects[i].attributes]

    def words(self) -> list[str]:
        """Lowercased word tokens (punctuation dropped)."""
        return [t.lower for t in self.tokens if t.is_word]


def scene_structure(
    cap: Caption, category_key: dict[str, str], numbers: dict[str, int] | None = None
) -> dict | None:
    """A parsed caption of a closed world as ``{"objects": [desc, ...], "relations": [[i, rel,
    j], ...]}``: each desc names the object's ``shape`` (its lemma) and its attributes under
    ``category_key[category]`` (two different words of one key give ``"<conflict>"``); with
    ``numbers`` (determiner word -> count), a stated number as ``count``. None when a word got no
    role, no object was found, an attribute's category has no key, or (with ``numbers``) a noun
    is plural without a stated number: a truth check never runs on a partial reading."""
    if cap.unparsed or not cap.objects:
        return None
    objects = []
    for i, o in enumerate(cap.objects):
        d: dict = {"shape": o.lemma}
        if numbers is not None:
            det = cap.tokens[o.det[0]].lower if o.det[1] > o.det[0] else ""
            if det in numbers:
                d["count"] = numbers[det]
            elif o.plural:
                return None
        for a in cap.object_attributes(i):
            key = category_key.get(a.category)
            if key is None:
                return None
            d[key] = a.word if d.get(key, a.word) == a.word else "<conflict>"
        objects.append(d)
    return {"objects": objects, "relations": [[r.subject, r.canonical, r.object] for r in cap.relations]}
