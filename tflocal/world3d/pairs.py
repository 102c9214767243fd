"""Captions of a 3D scene, and minimal pairs: two scenes and two captions that differ in one
binding, each caption true of its own scene and false of the other (checked by the truth
function, whatever the construction intended).

Categories: ``color``, ``material``, ``size`` (the attribute swapped between two objects),
``quantity`` (two counts swapped: "two cubes and three spheres" vs "three cubes and two
spheres"; the twin turns one object into the other shape) and the relation types ``plane``,
``depth``, ``support``, ``comparative`` (subject and object swapped; the twin swaps their
positions, their stacking or their sizes) and ``equality`` ("a cube is the same color as a
sphere" vs "... as a cylinder"; the twin swaps two colours).
"""

from __future__ import annotations

import copy
import random
from collections import Counter

from tflocal.world3d.captions import describe
from tflocal.world3d.scene import FLAT_TOPPED, finish
from tflocal.world3d.truth import caption_true_for_scene
from tflocal.world3d.vocab import RELATION_TYPE, RELATION_TYPES

ATTRIBUTE_CATEGORIES = ("color", "material", "size")
CATEGORIES = (*ATTRIBUTE_CATEGORIES, "quantity", *RELATION_TYPES)
"""Every minimal-pair category, in the order test items cycle through them."""
_OMIT = {"comparative": ("size",), "equality": ("color",)}


def _struct(mentions: list[dict], rel: str | None = None) -> dict:
    return {"objects": mentions, "relations": [[0, rel, 1]] if rel else []}


def relation_caption(
    scene: dict, rng: random.Random, kind: str | None = None, fact=None, must: tuple[str, ...] = ()
) -> dict | None:
    """A true caption "A rel B" over a relation of type ``kind`` (random type if None), or of
    ``fact`` = ``[i, rel, j]``, both mentions naming the attributes in ``must``; None when the
    scene has none."""
    facts = [f for f in scene["relations"] if kind is None or RELATION_TYPE[f[1]] == kind]
    if fact is None:
        if not facts:
            return None
        if kind is None:
            kinds = sorted({RELATION_TYPE[f[1]] for f in facts})
            k = rng.choice(kinds)
            facts = [f for f in facts if RELATION_TYPE[f[1]] == k]
        fact = rng.choice(facts)
    i, rel, j = fact
    objs = scene["objects"]
    omit = _OMIT.get(RELATION_TYPE[rel], ())
    return _struct([describe(objs[i], rng, must, omit), describe(objs[j], rng, must, omit)], rel)


def counts_by_shape(scene: dict) -> Counter:
    return Counter(o["shape"] for o in scene["objects"])


def quantity_caption(scene: dict, rng: random.Random) -> dict | None:
    """A true caption stating one or two exact counts ("there are two metal cubes"); None when no
    description fits 2-5 objects."""
    objs = scene["objects"]
    options = []
    for shape, n in counts_by_shape(scene).items():
        group = [o for o in objs if o["shape"] == shape]
        if 2 <= n <= 5:
            options.append({"shape": shape, "count": n})
        for key in ("material", "color", "size"):
            for value in sorted({o[key] for o in group}):
                m = sum(o[key] == value for o in group)
                if 2 <= m <= 5:
                    options.append({"shape": shape, key: value, "count": m})
    if not options:
        return None
    rng.shuffle(options)
    first = options[0]
    second = [o for o in options[1:] if o["shape"] != first["shape"]]
    mentions = [first] + (second[:1] if second and rng.random() < 0.5 else [])
    return _struct(mentions)


def list_caption(scene: dict, rng: random.Random) -> dict:
    """A true caption naming 1-3 of the scene's objects."""
    objs = scene["objects"]
    k = rng.randint(1, min(3, len(objs)))
    return _struct([describe(objs[i], rng) for i in rng.sample(range(len(objs)), k)])


def scene_captions(scene: dict, rng: random.Random) -> list[dict]:
    """The ordinary captions of a scene: a relation caption, a list caption and, where the
    scene allows, a quantity caption (each true of the scene)."""
    out = [
        c for c in (relation_caption(scene, rng), list_caption(scene, rng), quantity_caption(scene, rng)) if c
    ]
    return [c for c in out if caption_true_for_scene(c, scene)]


def _edited(scene: dict, edit) -> dict | None:
    objs = copy.deepcopy(scene["objects"])
    if edit(objs) is False:
        return None
    return finish(objs, scene["image_size"])


def _swap_key(scene: dict, i: int, j: int, key: str) -> dict | None:
    def edit(objs: list[dict]) -> None:
        objs[i][key], objs[j][key] = objs[j][key], objs[i][key]

    return _edited(scene, edit)


def _attribute_pair(scene: dict, key: str, rng: random.Random, anchor: int | None):
    objs = scene["objects"]
    pairs = [
        (i, j)
        for i in range(len(objs))
        for j in range(len(objs))
        if i != j and objs[i][key] != objs[j][key] and (anchor is None or i == anchor)
    ]
    rng.shuffle(pairs)
    for i, j in pairs[:6]:
        must_i = ("color", "material", key) if anchor is not None else (key,)
        da, db = describe(objs[i], rng, must=must_i), describe(objs[j], rng, must=(key,))
        c0 = _struct([da, db])
        c1 = _struct([{**da, key: db[key]}, {**db, key: da[key]}])
        yield c0, c1, _swap_key(scene, i, j, key)


def _quantity_pair(scene: dict, rng: random.Random, anchor: tuple[int, str] | None):
    objs = scene["objects"]
    counts = counts_by_shape(scene)
    shapes = sorted(counts)
    options = [
        (a, b)
        for a in shapes
        for b in shapes
        if a != b
        and counts[a] >= 2
        and counts[b] >= 2
        and abs(counts[a] - counts[b]) == 1
        and max(counts[a], counts[b]) <= 5
        and (anchor is None or (counts[a], a) == tuple(anchor))
    ]
    rng.shuffle(options)
    for a, b in options:
        na, nb = counts[a], counts[b]
        c0 = _struct([{"shape": a, "count": na}, {"shape": b, "count": nb}])
        c1 = _struct([{"shape": a, "count": nb}, {"shape": b, "count": na}])
        big, small = (a, b) if na > nb else (b, a)
        movable = [k for k, o in enumerate(objs) if o["shape"] == big]
        rng.shuffle(movable)
        for k in movable:

            def edit(o: list[dict], k: int = k, small: str = small) -> bool:
                if small not in FLAT_TOPPED and any(p.get("on") == k for p in o):
                    return False
                o[k]["shape"] = small
                return True

            yield c0, c1, _edited(scene, edit)


def _relation_pair(scene: dict, kind: str, rng: random.Random, fact=None):
    objs = scene["objects"]
    facts = [list(fact)] if fact else [f for f in scene["relations"] if RELATION_TYPE[f[1]] == kind]
    rng.shuffle(facts)
    for i, rel, j in facts[:6]:
        c0 = relation_caption(scene, rng, fact=(i, rel, j), must=("material",) if fact else ())
        if kind == "equality":
            others = [k for k in range(len(objs)) if objs[k]["color"] != objs[j]["color"] and k != i]
            rng.shuffle(others)
            for k in others[:3]:
                dk = describe(objs[k], rng, omit=("color",))
                c1 = _struct([c0["objects"][0], dk], rel)
                yield c0, c1, _swap_key(scene, j, k, "color")
            continue
        c1 = _struct([c0["objects"][1], c0["objects"][0]], rel)
        if kind == "comparative":
            yield c0, c1, _swap_key(scene, i, j, "size")
        elif kind == "support":

            def edit(o: list[dict], i: int = i, j: int = j) -> bool:
                if o[i]["shape"] not in FLAT_TOPPED:
                    return False
                o[i]["on"], o[i]["position"] = None, [o[j]["position"][0], o[j]["position"][1], 0.0]
                o[j]["on"] = i
                return True

            yield c0, c1, _edited(scene, edit)
        else:

            def edit(o: list[dict], i: int = i, j: int = j) -> bool:
                for k in (i, j):  # a stacked object moves with its support (restacked in finish)
                    if o[k].get("on") is not None:
                        return False
                pi, pj = o[i]["position"], o[j]["position"]
                o[i]["position"], o[j]["position"] = [pj[0], pj[1], 0.0], [pi[0], pi[1], 0.0]
                return True

            yield c0, c1, _edited(scene, edit)


def minimal_pair(scene: dict, category: str, rng: random.Random, anchor=None, valid=None):
    """``(c0, c1, twin)`` for ``category`` (see the module docstring): c0 true of ``scene`` and
    false of ``twin``, c1 the other way round; None when no such pair was found. ``anchor``
    ties it to a held-out combination (an object index for the attribute categories, a
    ``(count, shape)`` for quantity, a fact ``[i, rel, j]`` for the relation types);
    ``valid(twin)`` may reject a twin (hold-out rules)."""
    if category in ATTRIBUTE_CATEGORIES:
        gen = _attribute_pair(scene, category, rng, anchor)
    elif category == "quantity":
        gen = _quantity_pair(scene, rng, anchor)
    else:
        gen = _relation_pair(scene, category, rng, anchor)
    for c0, c1, twin in gen:
        if twin is None or (valid is not None and not valid(twin)):
            continue
        if (
            caption_true_for_scene(c0, scene)
            and not caption_true_for_scene(c1, scene)
            and caption_true_for_scene(c1, twin)
            and not caption_true_for_scene(c0, twin)
        ):
            return c0, c1, twin
    return None
