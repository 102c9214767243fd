"""Rule-based caption parser: objects (head nouns with counts), attributes bound to their
object, and relations (subject, predicate, object), each with its token span.

Works offline. Words the :class:`~tflocal.concepts.vocab.Vocabulary` knows take their role
from it (so ShapesWorld captions parse exactly as with the closed vocabulary); every other word
takes it from its part-of-speech tag (:mod:`tflocal.concepts.tagger`: closed-class lists, a
lexicon of open classes and phrase position, or spaCy when configured). So a noun phrase is an
object whether or not its noun is in the vocabulary ("a sleepy face", "kite with a long
tail"), adjectives and participles before a noun are its attributes, and a run of nouns is one
object whose last noun is the head ("ice cream cone": one object, head "cone"). It is built
for short descriptive captions: a sequence of noun phrases ``[det] [attributes] noun`` joined
by relation phrases ``[verb] [preposition]``, "and" or commas, with optional predicative
attributes ("the towels are white").

Subject attachment: a prepositional relation attaches to the noun phrase just before it;
a verb attaches to the most recent noun phrase that is not already the object of a
relation ("A man in a red shirt riding a horse": man -in-> shirt, man -riding-> horse).
"""

from __future__ import annotations

import re
from functools import lru_cache

from tflocal.concepts.structure import Attribute, Caption, Object, Relation, Token
from tflocal.concepts.tagger import is_plural_noun, noun_lemma, number_value, tag
from tflocal.concepts.vocab import Vocabulary, default_vocabulary

_TOKEN = re.compile(r"\w+(?:[-']\w+)*|[^\w\s]")
_COPULA = {"is", "are", "was", "were", "looks", "look", "seems", "appears"}


def tokenize(text: str) -> list[Token]:
    """Words (with inner hyphens/apostrophes) and single punctuation marks, with offsets."""
    toks: list[Token] = []
    for m in _TOKEN.finditer(text):
        w = m.group()
        toks.append(Token(w, w.lower(), m.start(), m.end(), "", w[:1].isalnum()))
    for a, b in zip(toks, toks[1:]):
        a.ws = text[a.end : b.start]
    if toks:
        toks[-1].ws = text[toks[-1].end :]
    return toks


class _Parser:
    def __init__(self, text: str, vocab: Vocabulary):
        self.v = vocab
        self.text = text
        self.tokens = tokenize(text)
        self.low = [t.lower for t in self.tokens]
        self.n = len(self.tokens)
        self.role: dict[int, str] = {}
        self.cap = Caption(text=text, tokens=self.tokens, capitalized=text[:1].isupper())
        self.open = vocab.open_vocabulary
        self.tags = tag(self.tokens, vocab) if self.open else []

    def _open(self, j: int, *tags: str) -> bool:
        """Is token j a word the vocabulary lacks, tagged as one of ``tags``?"""
        return self.open and j < self.n and self.tags[j] in tags and self.low[j] not in self.v.known_words

    # ---------------------------------------------------------------- helpers
    def _noun_at(self, j: int) -> int:
        """Length of the longest vocabulary noun starting at token j (0 if none)."""
        for L in range(min(self.v.max_noun_len, self.n - j), 0, -1):
            if tuple(self.low[j : j + L]) in self.v.noun_lemma:
                return L
        return 1 if self._open(j, "NOUN") else 0

    def _prep_at(self, j: int, end: int) -> int:
        for L in range(min(self.v.max_prep_len, end - j), 0, -1):
            if tuple(self.low[j : j + L]) in self.v.prep_phrases:
                return L
        return 0

    def _quant_at(self, j: int) -> int:
        for L in (4, 3, 2):
            if tuple(self.low[j : j + L]) in self.v.quantifiers:
                return L
        return 0

    def _is_attr(self, j: int) -> bool:
        if j >= self.n:
            return False
        if self.low[j] in self.v.attribute_category or self._open(j, "ADJ"):
            return True
        # a vocabulary noun the tagger reads as a modifier: "a big lemon dotted ball"
        return self.open and self.tags[j] == "ADJ" and (self.low[j],) in self.v.noun_lemma

    def _attr_len(self, j: int) -> int:
        """Tokens taken by an attribute at j: 1, or 2 for 'light blue' / 'freshly baked'; 0 if none."""
        if j + 1 < self.n and self._is_attr(j + 1):
            if self.low[j] in self.v.intensifiers or self._open(j, "ADV"):
                return 2
        return 1 if self._is_attr(j) else 0

    def _attr_category(self, e: int) -> str:
        """Category of the attribute ending at token e - 1 ("state" for an unknown participle)."""
        w = self.low[e - 1]
        if w in self.v.attribute_category:
            return self.v.attribute_category[w]
        return "state" if w.endswith(("ing", "ed")) else "other"

    def _nominal_follows(self, j: int) -> bool:
        """Does a noun start at j, possibly after more attributes / 'and' between them?"""
        k = j
        while k < self.n:
            if self._attr_len(k) and not (self._noun_at(k) and not self._nominal_follows(k + 1)):
                k += self._attr_len(k)
                continue
            if self.low[k] in ("and", ",") and k + 1 < self.n and self._attr_len(k + 1):
                k += 1
                continue
            return self._noun_at(k) > 0
        return False

    # ---------------------------------------------------------------- noun phrases
    def _np(self, i: int) -> int:
        """Try a noun phrase at token i; on success record it and return its end, else i."""
        v, low = self.v, self.low
        j, count, has_det = i, None, False
        q = self._quant_at(j)
        if q:
            j, has_det = j + q, True
        elif low[j] in v.determiners or low[j].isdigit() or self._open(j, "DET", "POSS", "NUM"):
            count = v.determiners[low[j]] if low[j] in v.determiners else number_value(low[j])
            j, has_det = j + 1, True
        det = (i, j)
        mods: list[tuple[int, int, str]] = []  # (start, end, category)
        while j < self.n:
            w = low[j]
            al = self._attr_len(j)
            if al and self._nominal_follows(j + al):
                mods.append((j, j + al, self._attr_category(j + al)))
                j += al
                continue
            if w in ("and", ",") and mods and self._attr_len(j + 1):
                self.role[j] = "conj"
                j += 1
                continue
            L = self._noun_at(j)
            if L and not has_det and not mods and L == 1 and w in v.verb_set and self.cap.objects:
                break  # "a dog watches a cat": a verb form, not a bare plural noun
            if L:
                start = j
                # noun-noun compounds: the last noun of a run is the head
                while True:
                    L2 = self._noun_at(j + L)
                    if not L2 or (L2 == 1 and low[j + L] in v.verb_set) or low[j + L] in v.determiners:
                        break
                    if v.noun_is_plural.get(tuple(low[j : j + L]), False):
                        break
                    for k in range(j, j + L):
                        self.role[k] = "mod"
                    j, L = j + L, L2
                end = j + L
                if any(low[k] not in v.known_words for k in range(start, end)):
                    j = start  # a compound with a word the vocabulary lacks: one object, all of it
                self._add_object(det, mods, j, end, count, start)
                return end
            if has_det and len(mods) < 3 and w not in v.filler_set and w not in v.prep_phrases_first:
                if w in v.verb_set or (w not in v.determiners and w.isalpha()):
                    if self._nominal_follows(j + 1) or self._noun_at(j + 1):
                        mods.append((j, j + 1, "state" if w in v.verb_set else "other"))
                        j += 1
                        continue
            break
        return i

    def _add_object(self, det, mods, s: int, e: int, count, phrase_start: int) -> None:
        key = tuple(self.low[s:e])
        if key in self.v.noun_lemma:
            lemma, plural = self.v.noun_lemma[key], self.v.noun_is_plural[key]
        else:  # open vocabulary: the head's singular, its modifiers as written
            lemma = " ".join((*key[:-1], noun_lemma(key[-1])))
            plural = is_plural_noun(key[-1])
        category = self.v.noun_category.get(lemma) or self.v.noun_category.get(
            self.v.noun_lemma.get(key[-1:], ""), "unknown"
        )
        if count is None and not plural and det[1] > det[0] and self.low[det[0]] in ("a", "an"):
            count = 1
        oi = len(self.cap.objects)
        obj = Object(
            head=" ".join(t.text for t in self.tokens[s:e]),
            lemma=lemma,
            category=category,
            span=(s, e),
            phrase=(det[0], e),
            det=det,
            count=count,
            plural=plural or (count is not None and count > 1),
        )
        for k in range(det[0], det[1]):
            self.role[k] = "det"
        for ms, me, cat in mods:
            obj.attributes.append(len(self.cap.attributes))
            word = " ".join(self.low[ms:me])
            self.cap.attributes.append(Attribute(word, cat, oi, (ms, me)))
            for k in range(ms, me):
                self.role[k] = "attr"
        for k in range(s, e):
            self.role[k] = "noun"
        self.cap.objects.append(obj)

    def _predicative(self, i: int) -> int:
        """'X is white' / 'X are red and blue': attach attributes to the last object."""
        if not self.cap.objects or self.low[i] not in _COPULA:
            return i
        j, found = i + 1, []
        while j < self.n:
            al = self._attr_len(j)
            if al:
                found.append((j, j + al))
                j += al
            elif self.low[j] in ("and", ",") and found and self._attr_len(j + 1):
                j += 1
            else:
                break
        if not found or self._noun_at(j) or (j < self.n and self.low[j] in self.v.determiners):
            return i
        oi = len(self.cap.objects) - 1
        self.role[i] = "filler"
        for ms, me in found:
            self.cap.objects[oi].attributes.append(len(self.cap.attributes))
            cat = self._attr_category(me)
            self.cap.attributes.append(Attribute(" ".join(self.low[ms:me]), cat, oi, (ms, me), True))
            for k in range(ms, me):
                self.role[k] = "attr"
        for k in range(i + 1, j):
            self.role.setdefault(k, "conj")
        return j

    # ---------------------------------------------------------------- relations
    def _relation(self, k: int, gap: tuple[int, int]) -> None:
        v, low = self.v, self.low
        s, e = gap
        idx = [p for p in range(s, e) if self.tokens[p].is_word]
        p = 0
        conj = any(low[q] in (",", "and") for q in range(s, e))
        while p < len(idx) and (low[idx[p]] in v.filler_set or low[idx[p]] == "and"):
            p += 1
        verb_span = prep_span = None
        if p < len(idx) and (
            low[idx[p]] in v.verb_set or self._open(idx[p], "VERB") or low[idx[p]] in ("has", "have", "had")
        ):
            verb_span = (idx[p], idx[p] + 1)
            p += 1
        if p < len(idx):
            L = self._prep_at(idx[p], e)
            if L:
                prep_span = (idx[p], idx[p] + L)
                p += L
        if p != len(idx) or (verb_span is None and prep_span is None):
            return
        for q in range(s, e):
            if self.tokens[q].is_word:
                self.role.setdefault(q, "filler")
        for sp in (verb_span, prep_span):
            if sp:
                for q in range(*sp):
                    self.role[q] = "rel"
        objects_of = {r.object for r in self.cap.relations}
        if verb_span is not None or conj:
            subj = next((o for o in range(k - 1, -1, -1) if o not in objects_of), k - 1)
        else:
            subj = k - 1
        verb = low[verb_span[0]] if verb_span else ""
        prep = " ".join(low[prep_span[0] : prep_span[1]]) if prep_span else ""
        span = ((verb_span or prep_span)[0], (prep_span or verb_span)[1])
        canonical = " ".join(x for x in (verb, v.canonical_relation(prep)) if x)
        self.cap.relations.append(
            Relation(
                subj, k, " ".join(low[span[0] : span[1]]), canonical, verb, prep, span, verb_span, prep_span
            )
        )

    # ---------------------------------------------------------------- main
    def run(self) -> Caption:
        i = 0
        nps: list[tuple[int, int]] = []  # (phrase start, end) per object
        while i < self.n:
            j = self._predicative(i)
            if j > i:
                i = j
                continue
            j = self._np(i)
            if j > i:
                nps.append((self.cap.objects[-1].phrase[0], j))
                i = j
                continue
            i += 1
        for k in range(1, len(nps)):
            self._relation(k, (nps[k - 1][1], nps[k][0]))
        self.cap.unparsed = [
            q
            for q, t in enumerate(self.tokens)
            if t.is_word and q not in self.role and self.low[q] not in self.v.filler_set
        ]
        return self.cap


def parse(caption: str, vocab: Vocabulary | None = None) -> Caption:
    """Parse a caption into objects, attributes and relations (see module docstring).

    Results are memoized per (caption, vocabulary): treat the returned Caption as read-only."""
    return _parse_cached(caption, vocab or default_vocabulary())


@lru_cache(maxsize=8192)
def _parse_cached(caption: str, vocab: Vocabulary) -> Caption:
    return _Parser(caption, vocab).run()
