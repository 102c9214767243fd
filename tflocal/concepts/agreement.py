"""Agreement edits after an operator changes which noun is a caption's subject.

When SWAP puts another noun in the subject slot ("A man walking his dog" -> "A dog walking ...
man"), the words that agree with the subject must follow it: the copula and present-tense
verbs of its relations take its number ("Two ducks are feeding a woman", "Two cats chase a
dog"), and pronouns and possessives that refer back to it take its person and number ("A dog
walking its man", "... while it smiles").

:func:`agreement_edits` returns those token edits (the :data:`~tflocal.concepts.render.Edit`
format: ``[(span, words)]``) for a parsed caption, the new subject's category and number, and
the spans the operator itself rewrites (left alone here).
"""

from __future__ import annotations

from tflocal.concepts.render import Edit
from tflocal.concepts.structure import Caption, Span
from tflocal.concepts.tagger import is_present_verb, verb_form

_SING_COPULA = {"are": "is", "were": "was", "have": "has"}
_PLUR_COPULA = {"is": "are", "was": "were", "has": "have"}
POSSESSIVES = {"his", "her", "its", "their"}
SUBJECT_PRONOUNS = {"he", "she", "it", "they"}
OBJECT_PRONOUNS = {"him", "them"}
_FOLLOWERS_OF_OBJECT_HER = {"and", "or", "with", "in", "on", "at", "to", "while", "as", "from", "by"}


def pronoun_for(word: str, kind: str, category: str, plural: bool) -> str:
    """``word`` (a pronoun of ``kind`` "possessive" / "subject" / "object") re-inflected for
    an antecedent of ``category`` and number: persons keep "his"/"her"/"he"/"she" (else singular
    "their"/"they"/"them"), other things become "its"/"it", plurals "their"/"they"/"them"."""
    plural_form = {"possessive": "their", "subject": "they", "object": "them"}[kind]
    if plural:
        return plural_form
    if category == "person":
        gendered = {"possessive": ("his", "her"), "subject": ("he", "she"), "object": ("him", "her")}[kind]
        return word if word in gendered else plural_form
    return {"possessive": "its", "subject": "it", "object": "it"}[kind]


def _pronoun_kind(cap: Caption, k: int) -> str | None:
    w = cap.tokens[k].lower
    if w == "her":
        nxt = cap.tokens[k + 1] if k + 1 < len(cap.tokens) else None
        is_poss = nxt is not None and nxt.is_word and nxt.lower not in _FOLLOWERS_OF_OBJECT_HER
        return "possessive" if is_poss else "object"
    if w in POSSESSIVES:
        return "possessive"
    if w in SUBJECT_PRONOUNS:
        return "subject"
    if w in OBJECT_PRONOUNS:
        return "object"
    return None


def _inside(k: int, spans: list[Span]) -> bool:
    return any(s <= k < e for s, e in spans)


def agreement_edits(
    cap: Caption, subject: int, category: str, plural: bool, rewritten: list[Span], copulas: bool = True
) -> Edit:
    """Edits making the words that agree with object ``subject`` agree with a new subject of
    ``category`` and number ``plural``: copulas (when ``copulas``) and present-tense verbs of
    the subject's relations, and pronouns / possessives after the subject's head. Tokens
    inside ``rewritten`` spans are left alone."""
    old = cap.objects[subject]
    edits: Edit = []
    if plural != old.plural and copulas:
        ends = [r.span[0] for r in cap.relations if r.subject == subject and r.span[0] >= old.phrase[1]]
        stop = min(ends) if ends else old.phrase[1]
        for q in range(old.phrase[1], stop):
            w = cap.tokens[q].lower
            table = _PLUR_COPULA if plural else _SING_COPULA
            if w in table and not _inside(q, rewritten):
                edits.append(((q, q + 1), [table[w]]))
    if plural != old.plural:
        for r in cap.relations:
            if r.subject == subject and r.verb_span and not _inside(r.verb_span[0], rewritten):
                verb = cap.tokens[r.verb_span[0]].lower
                if verb in ("has", "have"):
                    new = "have" if plural else "has"
                else:
                    new = verb_form(verb, plural) if is_present_verb(verb) else verb
                if new != verb:
                    edits.append((r.verb_span, [new]))
    for k in range(old.span[1], len(cap.tokens)):
        if _inside(k, rewritten):
            continue
        kind = _pronoun_kind(cap, k)
        if kind is None:
            continue
        w = cap.tokens[k].lower
        new = pronoun_for(w, kind, category, plural)
        if new != w:
            edits.append(((k, k + 1), [new]))
    return edits
