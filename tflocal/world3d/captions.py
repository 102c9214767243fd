"""Structured captions of the 3D world, their text, and the way back from text.

A structured caption is ``{"objects": [desc, ...], "relations": [[i, rel, j], ...]}`` (see
:mod:`tflocal.world3d.truth`); relations link consecutive mentions ``(k - 1, rel, k)``.
"""

from __future__ import annotations

import random

from tflocal.concepts.parser import parse
from tflocal.concepts.structure import scene_structure
from tflocal.concepts.vocab import article_for
from tflocal.world3d.vocab import CONVERSE, NUMBER_WORDS, REL_SURFACES, world_vocabulary

ATTRIBUTE_KEYS = ("size", "color", "material")
_NUMBER_OF = {w: n for n, w in NUMBER_WORDS.items()}


def describe(obj: dict, rng: random.Random, must: tuple[str, ...] = (), omit: tuple[str, ...] = ()) -> dict:
    """A partial description of a scene object: its shape, the attributes in ``must``, none of
    ``omit``, and each other attribute with probability 1/2."""
    d = {"shape": obj["shape"]}
    for k in ATTRIBUTE_KEYS:
        if k not in omit and (k in must or rng.random() < 0.5):
            d[k] = obj[k]
    return d


def noun_phrase(d: dict) -> str:
    words = [d[k] for k in ATTRIBUTE_KEYS if k in d]
    n = int(d.get("count") or 1)
    if n > 1:
        return " ".join([NUMBER_WORDS[n], *words, world_vocabulary().pluralize(d["shape"])])
    words.append(d["shape"])
    return f"{article_for(words[0])} {' '.join(words)}"


def to_text(struct: dict, rng: random.Random) -> str:
    """The caption's text: mentions in order, a relation's surface between the two mentions it
    links, "and" / commas between the others; "there is/are" in front now and then."""
    rel_between = {j: rel for i, rel, j in struct["relations"] if j == i + 1}
    objs = struct["objects"]
    there = rng.random() < 0.25
    parts = [noun_phrase(objs[0])]
    for k in range(1, len(objs)):
        if k in rel_between:
            options = REL_SURFACES[rel_between[k]]
            plain = [o for o in options if not o.startswith("is ")]
            parts.append(rng.choice(plain if there and plain else options))
        elif k == len(objs) - 1 or (k + 1) in rel_between:
            parts.append("and")
        else:
            parts[-1] += ","
        parts.append(noun_phrase(objs[k]))
    text = " ".join(parts)
    if there and not any(p.startswith("is ") for p in parts):
        plural = int(objs[0].get("count") or 1) > 1
        text = ("there are " if plural else "there is ") + text
    if rng.random() < 0.5:
        text = text[0].upper() + text[1:] + "."
    return text


def from_text(text: str) -> dict | None:
    """Parse a caption of the world back to its structured form (a stated number as ``count``);
    None if any word is not understood, or a plural states no number (not a caption of this
    world), so that a truth check never runs on a partial reading."""
    return scene_structure(parse(text, world_vocabulary()), {k: k for k in ATTRIBUTE_KEYS}, _NUMBER_OF)


def mentions_held_out(struct: dict, triples: list, counts: list, facts: list) -> bool:
    """Does the structured caption name a held-out (colour, material, shape) — all three stated —,
    a held-out (count, shape), or a held-out relation fact (either direction)?"""
    objs = struct["objects"]
    held_t = {tuple(t) for t in triples}
    held_c = {(int(n), s) for n, s in counts}
    for d in objs:
        if (d.get("color"), d.get("material"), d["shape"]) in held_t:
            return True
        if d.get("count") and (int(d["count"]), d["shape"]) in held_c:
            return True
    held = {tuple(f) for f in facts}
    for i, rel, j in struct["relations"]:
        a, b = objs[i], objs[j]
        ka, kb = (a.get("material"), a["shape"]), (b.get("material"), b["shape"])
        if (*ka, rel, *kb) in held or (*kb, CONVERSE.get(rel), *ka) in held:
            return True
        if rel == "same color as" and (*kb, rel, *ka) in held:
            return True
    return False
