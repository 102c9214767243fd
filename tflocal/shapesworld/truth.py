"""The independent truth function: is a structured caption true of a scene?

Semantics: there is an injective assignment of the caption's object mentions to the scene's
objects such that every stated attribute matches and every stated relation holds (judged from
pixel centres by :func:`~tflocal.shapesworld.scene.relation_holds`, not from stored
relation lists).
"""

from __future__ import annotations

from tflocal.shapesworld.scene import relation_holds

_KEYS = ("shape", "color", "size", "texture")


def _matches(desc: dict, obj: dict) -> bool:
    return all(desc[k] == obj[k] for k in _KEYS if k in desc)


def caption_true_for_scene(struct: dict, scene: dict) -> bool:
    """True iff the structured caption holds in the scene (see module docstring)."""
    objs = scene["objects"]
    cell = scene["image_size"] / scene["grid"]
    mentions = struct["objects"]
    cands = [[k for k, o in enumerate(objs) if _matches(d, o)] for d in mentions]
    rels = struct["relations"]

    def ok(assign: list[int]) -> bool:
        n = len(assign)
        for i, rel, j in rels:
            if i < n and j < n and not relation_holds(objs[assign[i]], objs[assign[j]], rel, cell):
                return False
        return True

    def search(assign: list[int]) -> bool:
        if len(assign) == len(mentions):
            return True
        for k in cands[len(assign)]:
            if k in assign:
                continue
            assign.append(k)
            if ok(assign) and search(assign):
                return True
            assign.pop()
        return False

    return search([])
