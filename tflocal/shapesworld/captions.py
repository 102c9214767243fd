"""Structured ShapesWorld captions, their text, and the way back from text.

A structured caption is ``{"objects": [desc, ...], "relations": [[i, rel, j], ...]}`` where a
``desc`` names a ``shape`` and optionally ``color``, ``size``, ``texture`` (only
non-plain textures are ever mentioned) and ``i``, ``j`` index ``objects``.
"""

from __future__ import annotations

import random

from tflocal.concepts.parser import parse
from tflocal.concepts.structure import scene_structure
from tflocal.concepts.vocab import article_for
from tflocal.shapesworld.vocab import CONVERSE, shapes_vocabulary

REL_SURFACES = {
    "left of": ["left of", "to the left of", "is left of", "is to the left of"],
    "right of": ["right of", "to the right of", "is right of", "is to the right of"],
    "above": ["above", "is above"],
    "below": ["below", "is below"],
}
_CATEGORY_KEY = {"color": "color", "size": "size", "pattern": "texture"}


def describe(obj: dict, rng: random.Random, must_color: bool = False) -> dict:
    """A partial description of a scene object (shape always, other attributes at random)."""
    d = {"shape": obj["shape"]}
    if must_color or rng.random() < 0.85:
        d["color"] = obj["color"]
    if rng.random() < 0.55:
        d["size"] = obj["size"]
    if obj["texture"] != "plain" and rng.random() < 0.55:
        d["texture"] = obj["texture"]
    return d


def noun_phrase(d: dict) -> str:
    words = [d[k] for k in ("size", "color", "texture") if k in d] + [d["shape"]]
    return f"{article_for(words[0])} {' '.join(words)}"


def to_text(struct: dict, rng: random.Random) -> str:
    """Render a structured caption whose relations link consecutive mentions ``(k-1, rel, k)``."""
    rel_between = {j: rel for i, rel, j in struct["relations"] if j == i + 1}
    objs = struct["objects"]
    there = rng.random() < 0.2
    parts = [noun_phrase(objs[0])]
    for k in range(1, len(objs)):
        if k in rel_between:
            options = REL_SURFACES[rel_between[k]]
            parts.append(rng.choice([o for o in options if not (there and o.startswith("is "))]))
        elif k == len(objs) - 1 or (k + 1) in rel_between:
            parts.append("and")
        else:
            parts[-1] += ","
        parts.append(noun_phrase(objs[k]))
    text = " ".join(parts)
    if there:
        text = "there is " + text
    if rng.random() < 0.5:
        text = text[0].upper() + text[1:] + "."
    return text


def from_text(text: str) -> dict | None:
    """Parse a ShapesWorld caption back to its structured form; None if any word is not
    understood (so that a truth check never runs on a partial reading)."""
    return scene_structure(parse(text, shapes_vocabulary()), _CATEGORY_KEY)


def mentions_held_out(struct: dict, pairs: list, facts: list) -> bool:
    """Does the structured caption name a held-out (color, shape) or relation fact (either
    direction)?"""
    objs = struct["objects"]
    if any((d.get("color"), d["shape"]) in {tuple(p) for p in pairs} for d in objs):
        return True
    held = {tuple(f) for f in facts}
    for i, rel, j in struct["relations"]:
        a, b = objs[i]["shape"], objs[j]["shape"]
        if (a, rel, b) in held or (b, CONVERSE[rel], a) in held:
            return True
    return False
