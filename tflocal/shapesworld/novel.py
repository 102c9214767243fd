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

Training can see other names too (``tflocal shapes --vary-names P``): a share P of the ``train``
images is renamed the same one-to-one way with words drawn per image from :data:`TRAIN_NAMES`
(other synonyms, disjoint from :data:`NOVEL_NAMES`' words, so ``test_novel`` stays novel to the
head). A head that sees several names per colour and shape learns to read the text encoder's
meaning of a word rather than its identity; one that sees only one name per concept can only
memorise it.
"""

from __future__ import annotations

import random
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

TRAIN_NAMES: dict[str, list[str]] = {
    "circle": ["orb", "ball", "sphere"],
    "square": ["block", "box", "cube"],
    "triangle": ["pyramid", "cone"],
    "star": ["spark", "sparkle", "asterisk"],
    "diamond": ["kite", "gem", "lozenge"],
    "hexagon": ["hex", "nut"],
    "red": ["crimson", "ruby", "cherry"],
    "green": ["lime", "jade", "olive"],
    "blue": ["azure", "navy", "sapphire"],
    "yellow": ["lemon", "gold", "mustard"],
    "purple": ["lavender", "plum", "indigo"],
    "orange": ["amber", "apricot", "pumpkin"],
    "pink": ["magenta", "salmon", "fuchsia"],
    "brown": ["tan", "bronze", "coffee"],
    "small": ["tiny", "little"],
    "large": ["big", "huge"],
    "striped": ["lined", "streaked"],
    "dotted": ["spotted"],
}
"""Closed word -> other names a ``train`` image may use (``--vary-names``); none is a
``test_novel`` word."""


def sample_names(rng: random.Random) -> dict[str, str]:
    """One one-to-one renaming for an image: each closed word keeps its name or takes one of its
    :data:`TRAIN_NAMES`, uniformly."""
    return {w: rng.choice([w, *alts]) for w, alts in TRAIN_NAMES.items()}


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


def rename_item(item: dict, names: dict[str, str] | None = None) -> dict:
    """A manifest line with its captions and negative texts renamed by ``names`` (default:
    :data:`NOVEL_NAMES`); ``structured_captions`` and ``scene`` keep the closed names the truth
    function reads; ``names`` records the map ("novel", or the words that changed)."""
    table = names or NOVEL_NAMES
    item["captions"] = [rename(c, table) for c in item["captions"]]
    for neg in item["negatives"]:
        neg["text"] = rename(neg["text"], table)
    item["names"] = "novel" if names is None else {k: v for k, v in names.items() if k != v}
    return item
