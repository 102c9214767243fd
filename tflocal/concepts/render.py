"""Apply token edits to a parsed caption and render grammatical text.

An edit is a list of ``(span, words)``: the tokens of ``span`` are replaced by ``words``
(an empty span ``(p, p)`` inserts before token ``p``; empty ``words`` deletes). Rendering
keeps the original whitespace and punctuation, fixes "a"/"an" before the word that follows,
lowercases a moved sentence-initial word and restores the capital at the start (none when the
text now starts with a digit: "4 men on two-wheelers").
"""

from __future__ import annotations

from functools import lru_cache

from tflocal.concepts.structure import Caption, Span
from tflocal.concepts.vocab import Vocabulary, article_for

Edit = list[tuple[Span, list[str]]]


def _known(word: str, v: Vocabulary) -> bool:
    return (
        word in v.attribute_category
        or (word,) in v.noun_lemma
        or word in v.determiners
        or word in v.relation_words
        or word in v.filler_set
        or word in v.intensifiers
    )


def token_texts(cap: Caption, v: Vocabulary) -> list[str]:
    """Token texts with the sentence-initial word lowercased when it is an ordinary word."""
    out = [t.text for t in cap.tokens]
    if out and _known(cap.tokens[0].lower, v):
        out[0] = cap.tokens[0].lower
    return out


def apply_edit(cap: Caption, edit: Edit, v: Vocabulary) -> str:
    """Render ``cap`` with ``edit`` applied (see module docstring)."""
    texts = token_texts(cap, v)
    starts: dict[int, list[tuple[int, list[str]]]] = {}
    for (s, e), words in edit:
        starts.setdefault(s, []).append((e, words))
    out: list[list[str]] = []  # [text, ws]
    i, n = 0, len(cap.tokens)
    while i <= n:
        for e, words in sorted(starts.get(i, []), key=lambda x: x[0]):  # inserts (e == i) first
            if e == i:  # insertion before token i
                if not words:
                    continue
                if out and out[-1][1] == "":
                    out[-1][1] = " "
                    tail = ""
                else:
                    tail = " "
                out.extend([[w, " "] for w in words])
                out[-1][1] = tail if i < n else ""
            else:  # replacement of [i, e)
                ws = cap.tokens[e - 1].ws
                if words:
                    out.extend([[w, " "] for w in words])
                    out[-1][1] = ws
                elif out and ws == "" and out[-1][1] != "":
                    out[-1][1] = ""
                i = e
                break
        else:
            if i < n:
                out.append([texts[i], cap.tokens[i].ws])
            i += 1
            continue
        continue
    _fix_articles(out)
    if cap.capitalized:
        for tok in out:
            if tok[0][:1].isalnum():  # a caption that now starts with a digit keeps its words as they are
                tok[0] = tok[0][:1].upper() + tok[0][1:]
                break
    return "".join(t + ws for t, ws in out).strip()


def _fix_articles(out: list[list[str]]) -> None:
    for k in range(len(out) - 1):
        low = out[k][0].lower()
        if low in ("a", "an") and out[k + 1][0][:1].isalpha():
            new = article_for(out[k + 1][0])
            out[k][0] = new.capitalize() if out[k][0][:1].isupper() else new


@lru_cache(maxsize=8192)
def normalize(text: str) -> str:
    """Lowercased words only, "an" -> "a": two texts equal under this are the same caption."""
    from tflocal.concepts.parser import tokenize

    return " ".join("a" if t.lower == "an" else t.lower for t in tokenize(text) if t.is_word)
