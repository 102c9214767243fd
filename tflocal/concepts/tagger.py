"""Open-vocabulary part-of-speech tags for the caption parser, offline.

:func:`tag` gives every token of a caption one coarse tag: ``DET`` (articles, demonstratives,
quantifiers), ``POSS`` (possessive determiners "his", "the dog's"), ``NUM``, ``PRON``, ``ADP``,
``CCONJ``, ``AUX``, ``VERB``, ``ADJ`` (adjectives and participles used as adjectives),
``NOUN``, ``ADV``, ``PUNCT``, ``X`` (no English word: "zzz").

Where the tags come from, first match wins:

1. a spaCy pipeline, when ``TFLOCAL_SPACY_MODEL`` names one (a package name or a path; needs
   the ``spacy`` extra): its ``pos_`` on the caption's own tokens;
2. closed-class words (determiners, pronouns, prepositions, conjunctions, auxiliaries,
   numerals): closed sets, listed here;
3. the caption vocabulary (its nouns, attributes, verbs, prepositions);
4. the word's possible open classes from lemminflect's English lexicon (shipped in its wheel;
   suffix rules when it is not installed), chosen by phrase position: after a determiner,
   adjective, preposition or verb a word is nominal (an adjective or participle when a noun
   follows, else a noun); after a noun a verb reading wins for "-ing" forms and before a
   determiner; at the start a noun reading wins. No closed list of nouns is involved.
"""

from __future__ import annotations

import os
from functools import lru_cache

from tflocal.concepts.structure import Token
from tflocal.concepts.vocab import Vocabulary

DETERMINERS = set(
    "a an the this that these those some any each every no another other several many few both all "
    "such either neither".split()
)
POSSESSIVES = {"my", "your", "his", "her", "its", "our", "their", "whose"}
PRONOUNS = set(
    "i me you he him she it we us they them one itself himself herself themselves someone something "
    "everyone everything mine yours hers ours theirs who whom which what that".split()
)
NUMBERS = {
    "zero": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "hundred": 100,
    "thousand": 1000,
    "dozen": 12,
}
PREPOSITIONS = set(
    "about above across after against along alongside amid among around as at atop before behind "
    "below beneath beside besides between beyond by down during except for from in inside into like "
    "near of off on onto opposite out outside over past per since than through throughout to toward "
    "towards under underneath until up upon via with within without".split()
)
CONJUNCTIONS = set(
    "and or but nor while whereas because if when where so yet".split()
)
AUXILIARIES = set(
    "is are was were be been being am has have had having does do did can could will would shall "
    "should may might must 's 're".split()
)
ADVERBS = set(
    "very really too also just still not here there then now almost partially partly fully together "
    "apart away back again upward upwards downward downwards outward inward currently slightly".split()
)

CLOSED: dict[str, str] = {}
for _words, _tag in (
    (ADVERBS, "ADV"),
    (AUXILIARIES, "AUX"),
    (CONJUNCTIONS, "CCONJ"),
    (PREPOSITIONS, "ADP"),
    (PRONOUNS, "PRON"),
    (NUMBERS, "NUM"),
    (POSSESSIVES, "POSS"),
    (DETERMINERS, "DET"),
):
    CLOSED.update(dict.fromkeys(_words, _tag))
CLOSED.update({"upward": "ADJ", "downward": "ADJ"})  # "a downward arrow"; after a verb still read as ADV

NOMINAL_CONTEXT = {"DET", "POSS", "NUM", "ADJ", "ADP", "VERB"}
_ADJ_SUFFIXES = ("ous", "ful", "ive", "able", "ible", "al", "ic", "less", "ish", "y", "ary", "ent", "ant")


try:  # lemminflect: English lemma/inflection lexicon shipped inside its wheel, no download
    import lemminflect as _lemminflect
except ImportError:  # pragma: no cover - the rules below still tag without it
    _lemminflect = None


@lru_cache(maxsize=65536)
def open_classes(word: str) -> frozenset[str]:
    """Possible open classes of a lowercased word: subset of NOUN, VERB, ADJ, ADV."""
    if word.isdigit():
        return frozenset({"NUM"})
    if _lemminflect is not None:
        found = {("NOUN" if k == "PROPN" else k) for k in _lemminflect.getAllLemmas(word)}
        found &= {"NOUN", "VERB", "ADJ", "ADV"}
        if found:
            return frozenset(found)
    if not any(c in "aeiouy" for c in word):
        return frozenset({"X"})  # no vowel letter: noise or an acronym, not an English word
    if word.endswith("ly") and len(word) > 4:
        return frozenset({"ADV"})
    if word.endswith(("ing", "ed")) and len(word) > 4:
        return frozenset({"VERB"})
    if word.endswith(_ADJ_SUFFIXES) and len(word) > 4:
        return frozenset({"ADJ", "NOUN"})
    return frozenset({"NOUN"})


@lru_cache(maxsize=65536)
def noun_lemma(word: str) -> str:
    """Singular of a (lowercased) noun: lemminflect's, or plural rules ("ies" -> "y", "s" off)."""
    if _lemminflect is not None:  # its dictionary only: its guesses for unknown words are poor
        lem = _lemminflect.getAllLemmas(word, upos="NOUN").get("NOUN")
        if lem and lem[0]:
            return lem[0]
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "xes", "sses")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")) and len(word) > 3:
        return word[:-1]
    return word


def is_plural_noun(word: str) -> bool:
    return noun_lemma(word) != word


@lru_cache(maxsize=65536)
def verb_lemma(word: str, present_only: bool = False) -> str:
    """Base form of a verb ("feeds" -> "feed"); with ``present_only`` only a present-tense
    form is reduced ("feeding", "fed" stay), so tense and aspect still count as words."""
    if _lemminflect is None or not word.isalpha():
        return word
    lem = _lemminflect.getLemma(word, upos="VERB")
    if not lem:
        return word
    if present_only and word not in _lemminflect.getInflection(lem[0], tag="VBZ") + (lem[0],):
        return word
    return lem[0]


def is_present_verb(word: str) -> bool:
    """Is ``word`` a present-tense verb form ("feeds", "feed"; not "feeding", "fed", "is")?"""
    if _lemminflect is None or word in AUXILIARIES or not word.isalpha():
        return False
    lem = _lemminflect.getLemma(word, upos="VERB")
    if not lem:
        return False
    return word in _lemminflect.getInflection(lem[0], tag="VBZ") + _lemminflect.getInflection(
        lem[0], tag="VBP"
    )


def verb_form(verb: str, plural_subject: bool) -> str:
    """Present tense of ``verb`` agreeing with its subject: ("feeds", True) -> "feed"."""
    if _lemminflect is None or not verb.isalpha():
        return verb
    lem = _lemminflect.getLemma(verb, upos="VERB")
    lemma = lem[0] if lem else verb
    forms = _lemminflect.getInflection(lemma, tag="VBP" if plural_subject else "VBZ")
    return forms[0] if forms else verb


def _vocab_tag(w: str, v: Vocabulary) -> set[str]:
    """Classes the vocabulary gives ``w``; a verb, or a noun in "-ing", keeps its other readings."""
    out = set()
    if (w,) in v.noun_lemma:
        out.add("NOUN")
        if w.endswith("ing"):  # "building", "painting": verbs too
            out |= open_classes(w) & {"VERB"}
    if w in v.attribute_category:
        out.add("ADJ")
    if w in v.verb_set:
        out |= {"VERB"} | (open_classes(w) & {"NOUN"})
    if (w,) in v.prep_phrases:
        out.add("ADP")
    return out


def _phrases(low: list[str], v: Vocabulary) -> dict[int, str]:
    """Tags of tokens inside the vocabulary's multi-word phrases ("to the left of", "a pair
    of", "fire hydrant"), longest match first."""
    out: dict[int, str] = {}
    j, n = 0, len(low)
    tables = ((v.prep_phrases, "ADP"), (v.quantifiers, "DET"), (v.noun_lemma, "NOUN"))
    while j < n:
        best = (1, None)
        for table, t in tables:
            for L in range(min(6, n - j), 1, -1):
                if L > best[0] and tuple(low[j : j + L]) in table:
                    best = (L, t)
        if best[1] is not None:
            out.update(dict.fromkeys(range(j, j + best[0]), best[1]))
            j += best[0]
        else:
            j += 1
    return out


def _spacy_tags(tokens: list[Token]) -> list[str] | None:
    name = os.environ.get("TFLOCAL_SPACY_MODEL", "").strip()
    if not name:
        return None
    nlp = load_spacy(name)
    from spacy.tokens import Doc

    doc = Doc(nlp.vocab, words=[t.text for t in tokens], spaces=[bool(t.ws) for t in tokens])
    for _, proc in nlp.pipeline:
        doc = proc(doc)
    return [spacy_tag(t.pos_, t.tag_, t.lower_) for t in doc]


def spacy_tag(pos: str, fine: str, lower: str) -> str:
    """One spaCy token's (``pos_``, ``tag_``, ``lower_``) as this module's tag."""
    if fine in ("PRP$", "WP$") or lower.endswith("'s") and pos in ("NOUN", "PROPN"):
        return "POSS"
    table = {"PROPN": "NOUN", "SCONJ": "CCONJ", "PART": "ADV", "SYM": "NOUN", "X": "NOUN", "INTJ": "ADV"}
    if pos == "VERB" and fine == "VBN" and lower not in AUXILIARIES:
        return "VERB"
    return table.get(
        pos,
        pos
        if pos in {"DET", "NUM", "PRON", "ADP", "CCONJ", "AUX", "VERB", "ADJ", "NOUN", "ADV", "PUNCT"}
        else "NOUN",
    )


@lru_cache(maxsize=4)
def load_spacy(name: str):
    """``spacy.load(name)``; a missing spaCy or model is a UserError saying what to install."""
    from tflocal.errors import UserError

    try:
        import spacy
    except ImportError as err:
        raise UserError(
            f"TFLOCAL_SPACY_MODEL={name!r} but spaCy is not installed: pip install 'tflocal[spacy]' "
            "and an English pipeline, or unset TFLOCAL_SPACY_MODEL for the built-in tagger"
        ) from err
    try:
        return spacy.load(name)
    except OSError as err:
        raise UserError(f"TFLOCAL_SPACY_MODEL={name!r}: spaCy cannot load it ({err})") from err


_NOT_NOMINAL = {"DET", "POSS", "PRON", "ADP", "AUX", "CCONJ", "NUM", "PUNCT"}
"""Tags that rule out a bare nominal (a noun or adjective without a determiner before it)."""


def _bare_nominal_at(opts: list[set[str]], j: int) -> bool:
    """Can token j be a bare noun or adjective (and nothing closed-class)?"""
    return j < len(opts) and bool(opts[j] & {"NOUN", "ADJ"}) and not opts[j] & _NOT_NOMINAL


def _modifying_participle(opts: list[set[str]], low: list[str], j: int) -> bool:
    """Is token j a past participle ("-ed") directly before a bare nominal, as in "a chocolate
    speckled rhombus" (a modifier, where "a dog tied to a post" has a verb)? The next word must
    be able to be a noun or an adjective and must not be another verb form or a closed word."""
    if j >= len(opts) or "VERB" not in opts[j] or not low[j].endswith("ed"):
        return False
    return _bare_nominal_at(opts, j + 1)


def _modifier_before_nominal(opts: list[set[str]], low: list[str], j: int) -> bool:
    """Is token j a modifier (an adjective or a past participle) directly before a bare nominal,
    so that a noun before it is a modifier too ("a navy striped triangle", "a bronze dotted
    tile")?"""
    if j >= len(opts) or ("VERB" in opts[j] and low[j].endswith("ing")):
        return False  # after a noun an "-ing" form is a verb: "a girl blowing bubbles"
    if "ADJ" in opts[j] and "NOUN" not in opts[j]:
        return _bare_nominal_at(opts, j + 1)
    return _modifying_participle(opts, low, j)


def tag(tokens: list[Token], v: Vocabulary) -> list[str]:
    """One coarse tag per token (see module docstring)."""
    sp = _spacy_tags(tokens)
    if sp is not None:
        return sp
    low = [t.lower for t in tokens]
    n = len(tokens)
    opts: list[set[str]] = []
    fixed = _phrases(low, v)
    for k, t in enumerate(tokens):
        w = t.lower
        if k in fixed:
            opts.append({fixed[k]})
        elif not t.is_word:
            opts.append({"PUNCT"})
        elif w in CLOSED:
            opts.append({CLOSED[w]})
        elif w.endswith(("'s", "s'")) and len(w) > 2:
            opts.append({"POSS"})
        else:
            o = _vocab_tag(w, v) or set(open_classes(w))
            if "-" in w and o == {"NOUN"}:
                o.add("ADJ")  # "a two-bedroom apartment", "over-ear headphones"
            if "VERB" in o and w.endswith(("ing", "ed", "en")):
                o.add("ADJ")  # a participle can modify a noun: "a sleeping baby"
            opts.append(o)
    tags: list[str] = []
    for j in range(n):
        o, w = opts[j], low[j]
        nxt = opts[j + 1] if j + 1 < n else {"PUNCT"}
        if w == "her":
            tags.append("POSS" if nxt & {"NOUN", "ADJ"} else "PRON")
            continue
        prev = tags[j - 1] if j else None
        if "NOUN" in o and prev in ("DET", "ADJ") and _modifier_before_nominal(opts, low, j + 1):
            tags.append("ADJ")  # a noun as a modifier before another: "a cobalt speckled rhombus"
            continue
        if len(o) == 1:
            tags.append(next(iter(o)))
            continue
        nxt_word = low[j + 1] if j + 1 < n else ""
        nxt_participle = "VERB" in nxt and nxt_word.endswith(("ing", "ed"))
        noun_next = (
            "NOUN" in nxt or ("ADJ" in nxt and not nxt_participle) or _modifying_participle(opts, low, j + 1)
        )
        participle = w.endswith(("ing", "ed", "en")) and "VERB" in o
        if (
            prev == "NOUN"
            and w.endswith("ing")
            and w not in v.verb_set
            and nxt == {"NOUN"}
            and not is_plural_noun(nxt_word)
        ):
            tags.append("ADJ")  # "a walnut cutting board": a singular noun without determiner follows
        elif prev in ("DET", "ADJ", "NOUN") and _modifying_participle(opts, low, j):
            tags.append("ADJ")  # "a chocolate speckled rhombus", "a hand painted mug"
        elif prev == "PRON" and "VERB" in o:
            tags.append("VERB")  # "while she smiles"
        elif "VERB" in o and (
            (prev == "NOUN" and participle)
            or (prev not in ("DET", "POSS", "NUM", "ADJ") and nxt & {"DET", "POSS", "NUM", "PRON"})
        ):
            tags.append("VERB")  # "a man riding", "the diagram shows a ...", "... and reads a book"
        elif prev == "NOUN" and "NOUN" in o and "NOUN" in nxt and not participle:
            tags.append("NOUN")  # inside a compound: "an ice cream cone"
        elif prev == "AUX" and "VERB" in o and w.endswith("ing"):
            tags.append("VERB")  # "is feeding"
        elif noun_next and "ADJ" in o:
            tags.append("ADJ")
        elif noun_next and participle and prev not in ("NOUN", "PRON", "AUX"):
            tags.append("ADJ")  # "a sleeping baby", "Steaming bowl of ..."
        elif "NOUN" in o and prev != "AUX":
            tags.append("NOUN")
        elif "ADJ" in o or (prev == "AUX" and participle):
            tags.append("ADJ")  # "the sofa is upholstered in ..."
        elif "VERB" in o:
            tags.append("VERB")
        else:
            tags.append(sorted(o)[0])
    return tags


def number_value(word: str) -> int | None:
    """The count a numeral states ("two" -> 2, "12" -> 12), None for other words ("²")."""
    if word.isascii() and word.isdigit():
        return int(word)
    return NUMBERS.get(word)
