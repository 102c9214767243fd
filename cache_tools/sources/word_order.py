"""ARO's four word-order perturbations of a caption (COCO-Order / Flickr30k-Order).

ARO (mertyg/vision-language-models-are-bows, ``dataset_zoo/perturbations.py``) builds, for each
caption, four shuffled versions: nouns among nouns and adjectives among adjectives; all words
but nouns and adjectives; words within each trigram; the order of the trigrams. Every option
then goes through BLIP's ``pre_caption`` (lower case, ``.!"()*#:;~`` removed, at most 30 words).

ARO tags parts of speech with spaCy and tokenizes with NLTK; here a regex tokenizer and a small
heuristic tagger (closed-class word lists, a list of common caption adjectives and verbs,
suffix rules, everything else a noun) stand in, so no model is needed. The shuffles use a
``random.Random`` seeded from a string, so the same (seed, key) always gives the same output.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

TOKEN = re.compile(r"\w+(?:[-']\w+)*|[^\w\s]")

FUNCTION_WORDS = frozenset(
    """a an the this that these those some any each every no all both either neither another other
    i me my mine you your yours he him his she her hers it its we us our ours they them their theirs
    who whom whose which what where when while why how there here
    in on at by for with without of from to into onto upon over under above below near beside besides
    behind between among through across along around about against toward towards inside outside
    off out up down after before during until since than like as per via next top front back
    and or but nor so yet if because though although whether
    is are was were be been being am has have had having do does did doing
    can could will would shall should may might must
    not very too also just only still even really quite almost nearly
    one two three four five six seven eight nine ten several many much few more most lots lot""".split()
)

ADJECTIVES = frozenset(
    """red blue green yellow white black brown gray grey orange pink purple gold golden silver tan
    dark light bright pale colorful
    big small large little tiny huge giant tall short long wide narrow thick thin high low
    old new young modern ancient antique vintage
    hot cold warm cool wet dry clean dirty empty full open closed
    good bad nice pretty beautiful ugly cute happy sad busy quiet crowded lonely
    wooden metal plastic glass stone brick concrete leather paper
    round square flat sharp soft hard smooth rough fresh ripe raw cooked fried
    sunny cloudy snowy rainy foggy grassy sandy rocky leafy
    double single different same various own whole half
    electric digital wild domestic professional public private outdoor indoor
    shiny fluffy furry striped spotted plain fancy messy neat
    first second third last rear left right middle upper lower""".split()
)

VERBS = frozenset(
    """sits sit stands stand lays lay lies lie holds hold looks look rides ride eats eat plays play
    walks walk runs run flies fly waits wait shows show hangs hang rests rest leans lean
    carries carry wears wear watches watch takes take makes make gets get goes go has uses use
    covers cover contains contain filled topped parked stacked made seen shown
    sitting standing laying lying holding looking riding eating playing walking running flying
    waiting showing hanging resting leaning carrying wearing watching taking making getting going
    using covering containing""".split()
)

ING_NOUNS = frozenset(
    "building ceiling clothing painting wedding morning evening icing railing frosting".split()
)
ADJ_SUFFIXES = ("ful", "ous", "ive", "less", "able", "ible", "ish")


def tokenize(caption: str) -> list[str]:
    """Words (with inner hyphens/apostrophes) and punctuation marks as separate tokens."""
    return TOKEN.findall(caption)


def pos_tag(tokens: list[str]) -> list[str]:
    """Heuristic coarse tags: ``"NOUN"``, ``"ADJ"`` or ``"OTHER"`` for each token."""
    tags = []
    for tok in tokens:
        w = tok.lower()
        if not w[0].isalpha():
            tags.append("OTHER")
        elif w in FUNCTION_WORDS or w in VERBS:
            tags.append("OTHER")
        elif w in ADJECTIVES:
            tags.append("ADJ")
        elif w in ING_NOUNS:
            tags.append("NOUN")
        elif len(w) > 4 and (w.endswith("ing") or w.endswith("ed") or w.endswith("ly")):
            tags.append("OTHER")
        elif len(w) > 5 and w.endswith(ADJ_SUFFIXES):
            tags.append("ADJ")
        else:
            tags.append("NOUN")
    return tags


def pre_caption(caption: str, max_words: int = 30) -> str:
    """BLIP/ARO caption normalization: lower case, ``.!"()*#:;~`` -> space, spaces collapsed,
    at most ``max_words`` words."""
    caption = re.sub(r"([.!\"()*#:;~])", " ", caption.lower())
    caption = re.sub(r"\s{2,}", " ", caption).rstrip("\n").strip(" ")
    words = caption.split(" ")
    return " ".join(words[:max_words]) if len(words) > max_words else caption


def _shuffle_positions(tokens: list[str], positions: list[int], rng: random.Random) -> list[str]:
    out = list(tokens)
    values = [tokens[i] for i in positions]
    rng.shuffle(values)
    for i, v in zip(positions, values):
        out[i] = v
    return out


def shuffle_nouns_and_adj(tokens: list[str], rng: random.Random) -> list[str]:
    """Permute the nouns among noun positions and the adjectives among adjective positions."""
    tags = pos_tag(tokens)
    out = _shuffle_positions(tokens, [i for i, t in enumerate(tags) if t == "NOUN"], rng)
    return _shuffle_positions(out, [i for i, t in enumerate(tags) if t == "ADJ"], rng)


def shuffle_allbut_nouns_and_adj(tokens: list[str], rng: random.Random) -> list[str]:
    """Permute every token that is neither a noun nor an adjective; nouns/adjectives stay put."""
    tags = pos_tag(tokens)
    return _shuffle_positions(tokens, [i for i, t in enumerate(tags) if t == "OTHER"], rng)


def trigrams(tokens: list[str]) -> list[list[str]]:
    """Consecutive chunks of three tokens (the last may be shorter)."""
    return [tokens[i : i + 3] for i in range(0, len(tokens), 3)]


def shuffle_within_trigrams(tokens: list[str], rng: random.Random) -> list[str]:
    """Shuffle the tokens inside each trigram; trigrams keep their order."""
    out = []
    for tri in trigrams(tokens):
        tri = list(tri)
        rng.shuffle(tri)
        out.extend(tri)
    return out


def shuffle_trigrams(tokens: list[str], rng: random.Random) -> list[str]:
    """Shuffle the order of the trigrams; each keeps its inner order."""
    tris = trigrams(tokens)
    rng.shuffle(tris)
    return [t for tri in tris for t in tri]


PERTURBATIONS: dict[str, Callable[[list[str], random.Random], list[str]]] = {
    "shuffle_nouns_and_adj": shuffle_nouns_and_adj,
    "shuffle_allbut_nouns_and_adj": shuffle_allbut_nouns_and_adj,
    "shuffle_within_trigrams": shuffle_within_trigrams,
    "shuffle_trigrams": shuffle_trigrams,
}
"""ARO's perturbations in ARO's order (the order of the four negatives of each caption)."""


def perturb(caption: str, key: str, seed: int = 0, max_words: int = 30) -> dict[str, str]:
    """The caption's four ARO perturbations, each ``pre_caption``-ed.

    Args:
        caption: the raw caption.
        key: what makes this caption's randomness its own (e.g. ``"<image id>#<caption index>"``);
            the output depends only on (caption, key, seed).
        seed: global seed.

    Returns:
        perturbation name -> perturbed caption, in :data:`PERTURBATIONS` order.
    """
    tokens = tokenize(caption)
    return {
        name: pre_caption(" ".join(fn(tokens, random.Random(f"{seed}|{key}|{name}"))), max_words)
        for name, fn in PERTURBATIONS.items()
    }
