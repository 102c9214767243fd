"""Scene sampling and the scene graph of the 3D world: 3-7 objects on a floor, seen through
:data:`~tflocal.world3d.camera.CAMERA`.

A scene is a JSON-ready dict::

    {"image_size": 224,
     "objects": [{"shape", "color", "material", "size", "radius",
                  "position": [x, y, z],          # base centre; z = 0 on the floor
                  "yaw", "on": j | None,          # resting on object j
                  "pixel": [u, v], "depth": d,    # projected centre, distance along the view
                  "bbox": [u0, v0, u1, v1]}, ...],
     "relations": [[i, rel, j], ...]}              # every true pairwise relation

Relations are judged from the geometry by :func:`relation_holds`, with margins that make each
one unambiguous to the eye: image-plane relations need the projected centres
``PLANE_MARGIN`` of the image apart, depth relations ``DEPTH_MARGIN`` world units along the
view axis; ``on top of`` is the stacking itself, comparatives the size classes, ``same color as``
the colour names.
"""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np

from tflocal.world3d.camera import CAMERA
from tflocal.world3d.vocab import COLORS, MATERIALS, RELATIONS, SHAPES, SIZES

X_RANGE = (-2.8, 2.8)
Y_RANGE = (-2.4, 2.8)
"""The floor area objects stand on (all of it is in view)."""
GAP = 0.15
"""Least distance between two footprints on the floor (world units)."""
PLANE_MARGIN = 0.06
"""Image-plane relations: projected centres at least this share of the image apart."""
DEPTH_MARGIN = 0.8
"""Depth relations: centres at least this far apart along the view axis (world units)."""
FLAT_TOPPED = ("cube", "cylinder")
"""Shapes another object can rest on."""


def footprint(obj: dict) -> float:
    """Radius of the circle that holds the object's footprint on the floor."""
    r = float(obj["radius"])
    return r * math.sqrt(2) if obj["shape"] == "cube" else r


def height(obj: dict) -> float:
    """Height of the object (every shape is 2 half-extents tall)."""
    return 2 * float(obj["radius"])


def corners(obj: dict) -> np.ndarray:
    """[8, 3] corners of the object's bounding box in world coordinates (yaw ignored: the box
    of the footprint circle)."""
    x, y, z = obj["position"]
    f, h = footprint(obj), height(obj)
    return np.array(
        [[x + sx * f, y + sy * f, z + sz * h] for sx in (-1, 1) for sy in (-1, 1) for sz in (0, 1)]
    )


def project_object(obj: dict, size: int) -> None:
    """Fill ``pixel``, ``depth`` and ``bbox`` of ``obj`` (in place) for a ``size`` px image."""
    x, y, z = obj["position"]
    centre = np.array([[x, y, z + float(obj["radius"])]])
    uv, depth = CAMERA.project(centre, size)
    box_uv, _ = CAMERA.project(corners(obj), size)
    obj["pixel"] = [round(float(uv[0, 0]), 2), round(float(uv[0, 1]), 2)]
    obj["depth"] = round(float(depth[0]), 3)
    lo, hi = box_uv.min(0), box_uv.max(0)
    obj["bbox"] = [
        round(float(lo[0]), 1),
        round(float(lo[1]), 1),
        round(float(hi[0]), 1),
        round(float(hi[1]), 1),
    ]


def relation_holds(objs: list[dict], i: int, rel: str, j: int, size: int) -> bool:
    """Does ``objs[i] rel objs[j]`` hold? Judged from positions, sizes, stacking and colours."""
    a, b = objs[i], objs[j]
    if i == j:
        return False
    du = (b["pixel"][0] - a["pixel"][0]) / size
    dv = (b["pixel"][1] - a["pixel"][1]) / size
    if rel == "left of":
        return du > PLANE_MARGIN
    if rel == "right of":
        return -du > PLANE_MARGIN
    if rel == "above":
        return dv > PLANE_MARGIN
    if rel == "below":
        return -dv > PLANE_MARGIN
    if rel == "in front of":
        return b["depth"] - a["depth"] > DEPTH_MARGIN
    if rel == "behind":
        return a["depth"] - b["depth"] > DEPTH_MARGIN
    if rel == "on top of":
        return a.get("on") == j
    if rel == "bigger than":
        return SIZES[a["size"]] > SIZES[b["size"]]
    if rel == "smaller than":
        return SIZES[a["size"]] < SIZES[b["size"]]
    if rel == "same color as":
        return a["color"] == b["color"]
    raise ValueError(f"unknown relation {rel!r}")


def scene_relations(objs: list[dict], size: int) -> list[list]:
    """Every true ``[i, rel, j]`` of the scene."""
    return [
        [i, rel, j]
        for i in range(len(objs))
        for j in range(len(objs))
        if i != j
        for rel in RELATIONS
        if relation_holds(objs, i, rel, j, size)
    ]


def overlaps(objs: list[dict]) -> bool:
    """Do two floor objects' footprints come closer than :data:`GAP`, or does a stacked object
    not fit on its support (a flat top of at least its half-extent)?"""
    for i, a in enumerate(objs):
        if a.get("on") is not None:
            s = objs[a["on"]]
            if s["shape"] not in FLAT_TOPPED or s.get("on") is not None or a["radius"] > s["radius"] + 1e-9:
                return True
            continue
        for b in objs[i + 1 :]:
            if b.get("on") is not None:
                continue
            d = math.hypot(a["position"][0] - b["position"][0], a["position"][1] - b["position"][1])
            if d < footprint(a) + footprint(b) + GAP:
                return True
    return False


def occluded(objs: list[dict]) -> bool:
    """Is some object's projected centre hidden behind a nearer object's box (shrunk by a
    quarter), other than the one it rests on or that rests on it?"""
    for i, a in enumerate(objs):
        for j, b in enumerate(objs):
            if i == j or b["depth"] >= a["depth"] or a.get("on") == j or b.get("on") == i:
                continue
            u0, v0, u1, v1 = b["bbox"]
            cu, cv, hu, hv = (u0 + u1) / 2, (v0 + v1) / 2, (u1 - u0) * 0.375, (v1 - v0) * 0.375
            if abs(a["pixel"][0] - cu) < hu and abs(a["pixel"][1] - cv) < hv:
                return True
    return False


def in_frame(bbox: list[float], size: int) -> bool:
    """Is the box inside the image (every object is seen whole)?"""
    return bbox[0] >= 0 and bbox[1] >= 0 and bbox[2] <= size and bbox[3] <= size


def restack(objs: list[dict]) -> None:
    """Put each stacked object on its support's top (after a size or position change)."""
    for o in objs:
        if o.get("on") is not None:
            s = objs[o["on"]]
            o["position"] = [s["position"][0], s["position"][1], round(height(s), 3)]


def finish(objs: list[dict], size: int) -> dict[str, Any] | None:
    """The scene dict of ``objs`` (projected, relations listed), or None when objects overlap,
    hide one another or leave the frame."""
    for o in objs:
        o["radius"] = SIZES[o["size"]]
    restack(objs)
    if overlaps(objs):
        return None
    for o in objs:
        project_object(o, size)
    if occluded(objs) or not all(in_frame(o["bbox"], size) for o in objs):
        return None
    return {"image_size": size, "objects": objs, "relations": scene_relations(objs, size)}


def random_object(rng: random.Random, **fixed: str) -> dict:
    """An object with random attributes (``fixed`` ones as given), not yet placed."""
    o = {
        "shape": rng.choice(SHAPES),
        "color": rng.choice(list(COLORS)),
        "material": rng.choice(MATERIALS),
        "size": rng.choice(list(SIZES)),
    }
    o.update(fixed)
    o["radius"] = SIZES[o["size"]]
    o["yaw"] = round(rng.uniform(0, 90), 1)
    o["on"] = None
    return o


def place(
    rng: random.Random,
    objs: list[dict],
    stack: bool,
    tries: int = 20,
    stack_on: tuple[int, int] | None = None,
    keep: int = 3,
) -> bool:
    """Give every object a floor position (in place) without overlaps; with ``stack``, one
    object rests on a flat-topped one of at least its half-extent (``stack_on`` = (top, support)
    says which). When the floor is full, the objects past the first ``keep`` that find no room
    are dropped. False if no layout was found."""
    if stack_on is not None:
        objs[stack_on[0]]["on"] = stack_on[1]
    elif stack and len(objs) >= 2:
        pairs = [
            (i, j)
            for i in range(len(objs))
            for j in range(len(objs))
            if i != j and objs[j]["shape"] in FLAT_TOPPED and objs[i]["radius"] <= objs[j]["radius"]
        ]
        if pairs:
            top, support = rng.choice(pairs)
            objs[top]["on"] = support
    for _ in range(tries):
        ok = True
        for k, o in enumerate(objs):
            if o.get("on") is not None:
                continue
            f, r = footprint(o), float(o["radius"])
            placed = [(p["position"], footprint(p)) for p in objs[:k] if p.get("on") is None]
            for _ in range(30):
                x = round(rng.uniform(X_RANGE[0] + r, X_RANGE[1] - r), 3)
                y = round(rng.uniform(Y_RANGE[0] + r, Y_RANGE[1] - r), 3)
                if all(math.hypot(x - q[0], y - q[1]) >= f + fq + GAP for q, fq in placed):
                    o["position"] = [x, y, 0.0]
                    break
            else:
                if k >= keep and all((p.get("on") or 0) < k for p in objs[:k]):
                    del objs[k:]  # the scene is full: it keeps the objects placed so far
                    break
                ok = False
                break
        if ok:
            restack(objs)
            if not overlaps(objs):
                return True
        for o in objs:
            o.pop("position", None)
    for o in objs:
        o["on"] = None
    return False


def sample_scene(
    rng: random.Random,
    size: int,
    objects: list[dict] | None = None,
    n: tuple[int, int] = (3, 7),
    stack: float = 0.35,
    valid=None,
    stack_on: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """A scene of ``n`` (a range) objects: ``objects`` (partial attribute dicts, e.g.
    ``{"shape": "sphere", "color": "red"}``) come first, the rest at random; with probability
    ``stack`` one object rests on another (``stack_on``: object ``top`` on ``support``, always).
    ``valid(scene)`` may reject a sample (hold-out rules)."""
    for _ in range(2000):
        k = rng.randint(*n)
        given = [random_object(rng, **f) for f in (objects or [])]
        objs = given + [random_object(rng) for _ in range(max(0, k - len(given)))]
        keep = max(n[0], len(given), 2 if stack_on is None else max(stack_on) + 1)
        if not place(rng, objs, rng.random() < stack, stack_on=stack_on, keep=keep):
            continue
        scene = finish(objs, size)
        if scene is not None and (valid is None or valid(scene)):
            return scene
    raise RuntimeError("could not sample a scene under the constraints given")
