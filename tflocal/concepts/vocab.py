"""The word lists the caption parser and the operators work from.

A :class:`Vocabulary` answers: is this word an attribute (and of which category), is this a
noun (its singular lemma and its object category), is this phrase a relation (a verb, a
preposition, its canonical form and its opposite). The default vocabulary ships with the
package as ``tflocal/concepts/data/vocab.json`` (everyday COCO-style captions);
ShapesWorld builds its own closed one with :meth:`Vocabulary.from_dict`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data" / "vocab.json"

_VOWEL_SOUND_EXCEPTIONS = {"hour", "honest", "honor", "heir", "hourly"}
_CONSONANT_SOUND_EXCEPTIONS = ("uni", "use", "usu", "euro", "one", "once", "ufo", "ute", "uk", "us ")


def pluralize_word(word: str, irregular: dict[str, str] | None = None) -> str:
    """English plural of one singular noun (regular rules plus an irregular table)."""
    if irregular and word in irregular:
        return irregular[word]
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and len(word) > 1 and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    if word.endswith("fe"):
        return word[:-2] + "ves"
    if word.endswith("o") and word in {"tomato", "potato", "hero"}:
        return word + "es"
    return word + "s"


def article_for(word: str) -> str:
    """'a' or 'an' for the word that follows the article (by sound, with the usual exceptions)."""
    w = word.lower()
    if not w:
        return "a"
    if w in _VOWEL_SOUND_EXCEPTIONS:
        return "an"
    if w.startswith(_CONSONANT_SOUND_EXCEPTIONS):
        return "a"
    return "an" if w[0] in "aeiou" else "a"


@dataclass(eq=False)
class Vocabulary:
    """Closed word lists, indexed for lookup. Build with :func:`default_vocabulary` or
    :meth:`from_dict` (same keys as ``data/vocab.json``)."""

    attributes: dict[str, list[str]]
    objects: dict[str, list[str]]
    prepositions: list[str]
    verbs: list[str]
    determiners: dict[str, int | None] = field(default_factory=dict)
    quantifier_phrases: list[str] = field(default_factory=list)
    irregular_plurals: dict[str, str] = field(default_factory=dict)
    relation_aliases: dict[str, str] = field(default_factory=dict)
    opposites: dict[str, str] = field(default_factory=dict)
    spatial_replacements: list[str] = field(default_factory=list)
    verb_groups: dict[str, list[str]] = field(default_factory=dict)
    attribute_order: list[str] = field(default_factory=list)
    fillers: list[str] = field(default_factory=list)
    add_relations: list[str] = field(default_factory=list)
    intensifiers: list[str] = field(default_factory=list)
    antonyms: dict[str, list[str]] = field(default_factory=dict)
    synonyms: list[list[str]] = field(default_factory=list)
    no_replace: list[str] = field(default_factory=list)
    add_categories: list[str] = field(default_factory=list)
    add_object_categories: list[str] = field(default_factory=list)
    antonym_categories: list[str] = field(default_factory=lambda: ["size", "age", "state"])
    add_object_with_color: bool = False
    mass_nouns: list[str] = field(default_factory=list)
    open_vocabulary: bool = True
    """Parse nouns and adjectives this vocabulary lacks (tagger.py); False: closed lists only."""

    def __post_init__(self) -> None:
        self.attribute_category: dict[str, str] = {}
        for cat, words in self.attributes.items():
            for w in words:
                self.attribute_category.setdefault(w, cat)
        self.noun_category: dict[str, str] = {}
        self.noun_lemma: dict[tuple[str, ...], str] = {}  # token tuple (sing. or plural) -> lemma
        self.noun_is_plural: dict[tuple[str, ...], bool] = {}
        for cat, words in self.objects.items():
            for w in words:
                self.noun_category.setdefault(w, cat)
                parts = tuple(w.split())
                plural = " ".join(parts[:-1] + (self.pluralize(parts[-1]),))
                self.noun_lemma.setdefault(parts, w)
                self.noun_is_plural.setdefault(parts, parts[-1] in {"people", "fries", "skis", "jeans"})
                pparts = tuple(plural.split())
                self.noun_lemma.setdefault(pparts, w)
                self.noun_is_plural.setdefault(pparts, True)
        self.max_noun_len = max((len(k) for k in self.noun_lemma), default=1)
        self.prep_phrases = {tuple(p.split()) for p in self.prepositions}
        self.prep_phrases_first = {p[0] for p in self.prep_phrases}
        self.max_prep_len = max((len(p) for p in self.prep_phrases), default=1)
        self.verb_set = set(self.verbs)
        self.verb_group_of: dict[str, str] = {}
        for g, words in self.verb_groups.items():
            for w in words:
                self.verb_group_of.setdefault(w, g)
        self.quantifiers = {tuple(q.split()) for q in self.quantifier_phrases}
        self.filler_set = set(self.fillers)
        self.relation_words = {w for p in self.prep_phrases for w in p} | self.verb_set
        self.order_rank = {c: i for i, c in enumerate(self.attribute_order)}
        # words whose role the vocabulary decides (the parser asks the tagger about all others);
        # verbs, intensifiers and words of multi-word phrases are left to the tagger's context
        self.known_words = (
            set(self.attribute_category)
            | {k[0] for k in self.noun_lemma if len(k) == 1}
            | {p[0] for p in self.prep_phrases if len(p) == 1}
            | set(self.determiners)
            | self.filler_set
        )
        self.synonym_of: dict[str, set[str]] = {}
        for group in self.synonyms:
            for w in group:
                self.synonym_of.setdefault(w, set()).update(group)

    def attribute_replacements(self, word: str) -> list[str]:
        """Words that can REPLACE an attribute and make the caption false: antonyms for
        size/age/state, any other word of the category (not a synonym) otherwise."""
        cat = self.attribute_category.get(word.split()[-1])
        if cat is None:
            return []
        if cat in self.antonym_categories:
            return list(self.antonyms.get(word, []))
        same = self.synonym_of.get(word, {word})
        return [w for w in self.attributes[cat] if w not in same and w not in self.no_replace and w != word]

    def verb_alternatives(self, verb: str) -> list[str]:
        """Other verbs of the same group (for REPLACE of a relation's verb)."""
        group = self.verb_group_of.get(verb)
        return [w for w in self.verb_groups.get(group, []) if w != verb] if group else []

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Vocabulary:
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            from tflocal.errors import UserError

            raise UserError(f"vocabulary: unknown keys {sorted(unknown)}; allowed: {sorted(known)}")
        return cls(**d)

    # ------------------------------------------------------------------ lookups
    def pluralize(self, noun: str) -> str:
        """Plural of a (possibly multi-word) singular noun: 'teddy bear' -> 'teddy bears'."""
        parts = noun.split()
        parts[-1] = pluralize_word(parts[-1], self.irregular_plurals)
        return " ".join(parts)

    def inflect(self, lemma: str, plural: bool) -> str:
        return self.pluralize(lemma) if plural else lemma

    def canonical_relation(self, phrase: str) -> str:
        return self.relation_aliases.get(phrase, phrase)

    def nouns_in(self, category: str) -> list[str]:
        return list(self.objects.get(category, []))

    def word_kind(self, word: str) -> str | None:
        """'attribute' / 'object' / 'relation' / None for a single lowercased word."""
        if word in self.attribute_category:
            return "attribute"
        if (word,) in self.noun_lemma:
            return "object"
        if word in self.relation_words:
            return "relation"
        if word in self.determiners and self.determiners[word] is not None and word not in ("a", "an"):
            return "attribute"  # a count
        return None


@lru_cache(maxsize=1)
def default_vocabulary() -> Vocabulary:
    """The vocabulary shipped with the package (everyday captions)."""
    with open(DATA, encoding="utf-8") as f:
        return Vocabulary.from_dict(json.load(f))
