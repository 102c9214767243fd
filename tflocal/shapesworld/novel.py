"""ShapesWorld's ``test_novel`` split: the scenes of ``test_ood`` (held-out combinations forced)
with every shape, colour, size and texture named by a word that the shipped concept vocabulary
(``tflocal/concepts/data/vocab.json``) does not hold: synonyms and other names that describe the
rendered shapes and colours and that the text encoder knows (each is a word of MiniLM's
WordPiece vocabulary, or splits into a few pieces of it).

Captions and their hard negatives are made with the closed ShapesWorld vocabulary (so every
negative is checked false against the scene graph exactly as in the other splits) and then
renamed word by word with a one-to-one map (articles re-agreed: "an orange" -> "a tangerine").
A one-to-one renaming keeps every negative false and keeps the operators meaningful: a SWAP
still swaps two novel words, a REPLACE names another novel colour or shape (or the size
antonym), an ADD adds a novel word. Relations ("left of", "above") keep their words.
"""

from __future__ import annotations

import re

from tflocal.concepts.vocab import article_for

NOVEL_NAMES: dict[str, str] = {
    # shapes (see tflocal.shapesworld.draw): a filled circle is a disc; a filled square a tile; a
    # flat triangle a wedge; the five-pointed star a pentagram; the diamond a rhombus; the
    # hexagon a honeycomb (cell): English has no common one-word synonym for it
    "circle": "disc",
    "square": "tile",
    "triangle": "wedge",
    "star": "pentagram",
    "diamond": "rhombus",
    "hexagon": "honeycomb",
    # colours (RGB in tflocal.shapesworld.vocab.COLORS)
    "red": "scarlet",  # (220, 40, 40)
    "green": "emerald",  # (40, 160, 60)
    "blue": "cobalt",  # (40, 80, 220)
    "yellow": "canary",  # (235, 205, 30)
    "purple": "violet",  # (140, 60, 190)
    "orange": "tangerine",  # (245, 135, 25)
    "pink": "rose",  # (245, 120, 200)
    "brown": "chocolate",  # (130, 80, 35)
    # sizes and textures
    "small": "miniature",
    "large": "massive",
    "striped": "banded",
    "dotted": "speckled",
}
"""Closed ShapesWorld word -> its ``test_novel`` name (one-to-one)."""

_WORD = re.compile(r"[A-Za-z]+")


def _cased(word: str, like: str) -> str:
    return word[0].upper() + word[1:] if like[:1].isupper() else word


def rename(text: str, names: dict[str, str] = NOVEL_NAMES) -> str:
    """``text`` with every word of ``names`` replaced (case of the first letter kept) and the
    article before a replaced word re-agreed: "An orange circle." -> "A tangerine disc."."""
    pieces = _WORD.split(text)
    words = _WORD.findall(text)
    new = [_cased(names[w.lower()], w) if w.lower() in names else w for w in words]
    for k in range(len(new) - 1):
        if new[k].lower() in ("a", "an") and words[k + 1].lower() in names:
            new[k] = _cased(article_for(new[k + 1]), new[k])
    out = [pieces[0]]
    for w, sep in zip(new, pieces[1:]):
        out += [w, sep]
    return "".join(out)


def rename_item(item: dict) -> dict:
    """A manifest line with its captions and negative texts renamed (``structured_captions`` and
    ``scene`` keep the closed names the truth function reads; ``names`` records the map)."""
    item["captions"] = [rename(c) for c in item["captions"]]
    for neg in item["negatives"]:
        neg["text"] = rename(neg["text"])
    item["names"] = "novel"
    return item
