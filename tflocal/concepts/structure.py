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
