"""Tolerant word alignment of a caption and its negative, and the word classes explain names.

:func:`tolerant_words` reads a parsed caption as a list of :class:`Word` whose ``norm`` ignores
what a benchmark's re-phrased negative changes besides its edit: case, punctuation, articles,
forms of "be" and "do", "and", relative "that/which/who", noun number, verb inflection
("sits"/"sitting"), comparative degree ("larger" -> "large") and hyphenated compounds
("four-wheelers" -> "four", "wheeler"); a numeral reads as its value whether written as a word
or as digits ("two", "2" -> "2"). Each word also carries a ``cls``: "quantity" (numerals, also
as digits, "several", "a pair of", "many"), "comparative" ("larger", "tallest", "more"),
"negation" ("not", "no", "without"), "noun", "attribute", "relation" or "other".
"""

from __future__ import annotations

from dataclasses import dataclass

from tflocal.concepts.structure import Caption
from tflocal.concepts.tagger import NUMBERS, PREPOSITIONS, noun_lemma, number_value, verb_lemma
from tflocal.concepts.vocab import Vocabulary

QUANTITY = set(NUMBERS) | {
    "several", "many", "few", "multiple", "numerous", "pair", "couple", "lots", "lot", "single",
    "dozens", "both", "some", "various", "handful", "bunch", "alone", "lone", "solo", "plenty",
}  # fmt: skip
NEGATION = {"not", "no", "without", "never", "none", "nobody", "nothing", "neither", "nor"}
_CONTRACTED_NOT = ("n't", "n’t")
_IRREGULAR_DEGREE = {
    "better": "good", "best": "good", "worse": "bad", "worst": "bad", "further": "far",
    "farther": "far", "farthest": "far", "furthest": "far", "elder": "old", "eldest": "old",
}  # fmt: skip
_DEGREE_WORDS = {"more", "most", "less", "least", "fewer", "fewest"}
_GRADABLE = set(
    "large small big tall short long wide narrow old young high low fast slow dark light bright thick "
    "thin heavy deep shallow close near far clean dirty happy busy empty full early late warm cold hot "
    "cool fresh new soft hard loud quiet strong weak rich poor sharp smooth rough huge tiny great fat "
    "skinny wet dry calm sweet tidy messy neat pretty ugly cute fancy plain simple safe steep low "
    "tiny little shiny dull crowded lively sunny cloudy windy rainy snowy stormy hungry sleepy dusty "
    "muddy grassy rocky sandy leafy fluffy furry hairy curly straight round flat broad slim lean".split()
)
_DROPPED = {
    "a", "an", "the", "is", "are", "was", "were", "be", "been", "being", "am", "'s", "'re",
    "and", "that", "which", "who", "there", "also", "currently",
}  # fmt: skip
_PRONOUNS = {"he", "she", "it", "they", "him", "her", "them", "his", "its", "their", "hers", "theirs"}
_HAVE = {"has": "have", "had": "have", "having": "have"}


@dataclass(frozen=True)
class Word:
    """One aligned word: ``norm`` (what alignment compares), ``text`` (lowercased surface form),
    ``index`` (token index in the parsed caption), ``cls`` (its word class, see module doc)."""

    norm: str
    text: str
    index: int
    cls: str


def degree_base(word: str) -> str | None:
    """Positive degree of a comparative or superlative adjective ("larger" -> "large",
    "biggest" -> "big", "happier" -> "happy"), else None."""
    if word in _IRREGULAR_DEGREE:
        return _IRREGULAR_DEGREE[word]
    for suf in ("est", "er"):
        if not word.endswith(suf) or len(word) <= len(suf) + 2:
            continue
        stem = word[: -len(suf)]
        for cand in (stem, stem + "e", stem[:-1] if len(stem) > 2 and stem[-1] == stem[-2] else None,
                     stem[:-1] + "y" if stem.endswith("i") else None):  # fmt: skip
            if cand and cand in _GRADABLE:
                return cand
    return None


def word_class(word: str, role: str | None, v: Vocabulary) -> str:
    """The class of a lowercased word given its parsed role ("noun"/"attr"/"rel"/"det"/None)."""
    if word in NEGATION or word.endswith(_CONTRACTED_NOT):
        return "negation"
    if word in QUANTITY or word.isdigit():
        return "quantity"
    if word in _DEGREE_WORDS or degree_base(word):
        return "comparative"
    if word in _PRONOUNS:
        return "other"
    if role == "noun":
        return "noun"
    if role == "attr":
        return "attribute"
    if role == "rel" or word in PREPOSITIONS:
        return "relation"
    kind = v.word_kind(word)
    if kind == "object":
        return "noun"
    if kind:
        return kind
    if word in v.verb_set or verb_lemma(word) != word:
        return "relation"
    return "other"


def _norm(word: str, cls: str, v: Vocabulary) -> str:
    if word.endswith(_CONTRACTED_NOT):
        return "not"
    if word in _PRONOUNS:
        return "<pronoun>"
    if word in _HAVE:
        return "have"
    value = number_value(word) if cls == "quantity" else None
    if value is not None:
        return str(value)  # "two" and "2" read alike
    if cls == "comparative" and word not in _DEGREE_WORDS:
        return degree_base(word) or word
    if (word,) in v.noun_lemma:
        return v.noun_lemma[(word,)]
    if cls != "noun" and verb_lemma(word) != word:
        return verb_lemma(word)  # "contains"/"contain", "smiling" read as an adjective
    if cls in ("noun", "other"):
        return noun_lemma(word)
    return word


def tolerant_words(cap: Caption, roles: dict[int, str], v: Vocabulary) -> list[Word]:
    """The caption's words read tolerantly (see module doc); ``roles``: token index -> role.

    Two multi-word classes are read as such: a measure noun before "of" ("a pair of", "lots
    of") is a quantity and its "of" is dropped; a relational noun before "of" ("in the middle
    of", "at the edge of") is part of a relation phrase. A verb's "-ing" form the parse took
    for a noun modifier, or for an adjective right after a noun ("a woman pouring wine"), is
    a relation word."""
    heads = {o.span[1] - 1 for o in cap.objects}
    words = [(k, p) for k, t in enumerate(cap.tokens) if t.is_word for p in _parts(t.lower)]
    out: list[Word] = []
    for j, (k, p) in enumerate(words):
        nxt = words[j + 1][1] if j + 1 < len(words) else ""
        prev = out[-1].text if out else ""
        if p in _DROPPED or (p == "of" and prev in _MEASURES) or (p in _DO and _negates(nxt)):
            continue
        if nxt == "of" and p in _RELATIONAL_NOUNS:
            cls = "relation"
        elif _participle(p) and (
            (roles.get(k) == "noun" and k not in heads)
            or (roles.get(k) == "attr" and out and out[-1].cls == "noun")
        ):
            cls = "relation"  # "a woman pouring wine": a verb after its subject, not "a smiling girl"
        else:
            cls = word_class(p, roles.get(k), v)
        out.append(Word(_norm(p, cls, v), p, k, cls))
    return out


def _participle(word: str) -> bool:
    return word.endswith("ing") and verb_lemma(word) != word


def _parts(word: str) -> list[str]:
    """A token's words: hyphenated compounds split ("four-wheelers"), a contracted "not" kept."""
    if word.endswith(_CONTRACTED_NOT):
        return [word]
    return [p for p in word.split("-") if p]


_DO = {"do", "does", "did"}


def _negates(word: str) -> bool:
    return word in NEGATION or word.endswith(_CONTRACTED_NOT)


_MEASURES = {"pair", "couple", "lot", "lots", "bunch", "handful", "dozens", "dozen", "number", "plenty"}
_RELATIONAL_NOUNS = set(
    "side middle edge corner top bottom front back foot shade center centre end rear base "
    "inside outside surface rest tip".split()
)
