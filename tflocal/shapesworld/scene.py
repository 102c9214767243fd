"""Scene sampling: 1-4 objects on a 3x3 layout grid, with the held-out combinations enforced.

A scene is a JSON-ready dict::

    {"image_size": 224, "grid": 3,
     "objects": [{"shape", "color", "size", "texture", "cell": [row, col], "x", "y", "r"}, ...],
     "relations": [[i, "left of", j], ...]}      # every true pairwise relation

Objects sit in distinct cells (centres jittered by at most 8% of a cell), so two objects in
different columns are at least 0.84 cell apart horizontally and two in the same column at
most 0.16 cell apart: "left of / right of / above / below" are unambiguous.
"""

from __future__ import annotations

import random
from typing import Any

from tflocal.shapesworld.vocab import COLORS, CONVERSE, RELATIONS, SHAPES, SIZES, TEXTURES

GRID = 3
JITTER = 0.08
RADIUS = {"small": 0.2, "large": 0.38}  # fraction of a cell


def relation_holds(a: dict, b: dict, rel: str, cell: float) -> bool:
    """Does ``a rel b`` hold, judged from pixel centres only (independent of cells)?"""
    dx, dy = b["x"] - a["x"], b["y"] - a["y"]
    half = cell / 2
    return {"left of": dx > half, "right of": -dx > half, "above": dy > half, "below": -dy > half}[rel]


def scene_relations(objects: list[dict], cell: float) -> list[list]:
    return [
        [i, rel, j]
        for i, a in enumerate(objects)
        for j, b in enumerate(objects)
        if i != j
        for rel in RELATIONS
        if relation_holds(a, b, rel, cell)
    ]


def has_color_shape(objects: list[dict], pairs: list[tuple[str, str]]) -> bool:
    return any((o["color"], o["shape"]) in pairs for o in objects)


def has_relation_fact(objects: list[dict], facts: list[tuple[str, str, str]], cell: float) -> bool:
    for a, rel, b in facts:
        for x in objects:
            for y in objects:
                if x is not y and x["shape"] == a and y["shape"] == b and relation_holds(x, y, rel, cell):
                    return True
    return False


def _place(rng: random.Random, obj: dict, cell_rc: tuple[int, int], cell: float) -> None:
    r, c = cell_rc
    obj["cell"] = [r, c]
    obj["x"] = round((c + 0.5 + rng.uniform(-JITTER, JITTER)) * cell, 2)
    obj["y"] = round((r + 0.5 + rng.uniform(-JITTER, JITTER)) * cell, 2)
    obj["r"] = round(RADIUS[obj["size"]] * cell, 2)


def _object(
    rng: random.Random,
    banned_pairs: list[tuple[str, str]],
    shape: str | None = None,
    color: str | None = None,
) -> dict:
    shape = shape or rng.choice(SHAPES)
    if color is None:
        color = rng.choice([c for c in COLORS if (c, shape) not in banned_pairs])
    return {"shape": shape, "color": color, "size": rng.choice(SIZES), "texture": rng.choice(TEXTURES)}


def sample_scene(
    rng: random.Random,
    image_size: int,
    held_pairs: list[tuple[str, str]],
    held_facts: list[tuple[str, str, str]],
    force: dict | None = None,
) -> dict[str, Any]:
    """Sample a scene. Without ``force``: no held-out pair or fact occurs. With ``force`` =
    ``{"pair": (color, shape)}`` or ``{"fact": (shape, rel, shape)}``: object 0 (and 1) carry
    that held-out combination."""
    cell = image_size / GRID
    cells = [(r, c) for r in range(GRID) for c in range(GRID)]
    for _ in range(1000):
        k = rng.randint(1, 4)
        if force and "fact" in force:
            k = max(k, 2)
        objs = [_object(rng, held_pairs) for _ in range(k)]
        if force and "pair" in force:
            color, shape = force["pair"]
            objs[0].update(shape=shape, color=color)
        if force and "fact" in force:
            a, _, b = force["fact"]
            objs[0].update(_object(rng, held_pairs, shape=a))
            objs[1].update(_object(rng, held_pairs, shape=b))
        for _ in range(50):
            for o, rc in zip(objs, rng.sample(cells, k)):
                _place(rng, o, rc, cell)
            if force and "fact" in force:
                if relation_holds(objs[0], objs[1], force["fact"][1], cell):
                    break
            elif not has_relation_fact(objs, held_facts, cell):
                break
        else:
            continue
        if not force and (has_color_shape(objs, held_pairs) or has_relation_fact(objs, held_facts, cell)):
            continue
        return {
            "image_size": image_size,
            "grid": GRID,
            "objects": objs,
            "relations": scene_relations(objs, cell),
        }
    raise RuntimeError("could not sample a scene under the hold-out constraints")


__all__ = [
    "CONVERSE",
    "sample_scene",
    "relation_holds",
    "scene_relations",
    "has_color_shape",
    "has_relation_fact",
]
