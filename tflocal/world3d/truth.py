"""The independent truth function of the 3D world: is a structured caption true of a scene?

A structured caption is ``{"objects": [desc, ...], "relations": [[i, rel, j], ...]}``; a
``desc`` names a ``shape`` and optionally ``color``, ``material``, ``size`` and ``count``.

Semantics: a mention with a ``count`` (a stated number, 2 or more) holds iff *exactly* that many
scene objects match it, and takes part in no relation; the other mentions need an injective
assignment to scene objects that match them and satisfy every stated relation (judged from the
geometry by :func:`~tflocal.world3d.scene.relation_holds`, not from stored relation lists).
A relation that touches a counted mention makes the caption not true.
"""

from __future__ import annotations

from tflocal.world3d.scene import relation_holds

KEYS = ("shape", "color", "material", "size")


def matches(desc: dict, obj: dict) -> bool:
    """Does the object carry every attribute the description names?"""
    return all(desc[k] == obj[k] for k in KEYS if k in desc)


def caption_true_for_scene(struct: dict, scene: dict) -> bool:
    """True iff the structured caption holds in the scene (see the module docstring)."""
    objs = scene["objects"]
    size = scene["image_size"]
    mentions = struct["objects"]
    counted = {k for k, d in enumerate(mentions) if d.get("count")}
    for k in counted:
        if sum(matches(mentions[k], o) for o in objs) != int(mentions[k]["count"]):
            return False
    rels = struct["relations"]
    if any(i in counted or j in counted for i, _, j in rels):
        return False
    singles = [k for k in range(len(mentions)) if k not in counted]
    cands = {k: [n for n, o in enumerate(objs) if matches(mentions[k], o)] for k in singles}
    assign: dict[int, int] = {}

    def ok() -> bool:
        return all(
            relation_holds(objs, assign[i], rel, assign[j], size)
            for i, rel, j in rels
            if i in assign and j in assign
        )

    def search(pos: int) -> bool:
        if pos == len(singles):
            return True
        k = singles[pos]
        for n in cands[k]:
            if n in assign.values():
                continue
            assign[k] = n
            if ok() and search(pos + 1):
                return True
            del assign[k]
        return False

    return search(0)
