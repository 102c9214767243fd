"""The closed ShapesWorld vocabulary, and the default held-out combinations."""

from __future__ import annotations

from functools import lru_cache

from tflocal.concepts.vocab import Vocabulary

SHAPES = ["square", "circle", "triangle", "star", "hexagon", "diamond"]
COLORS = {
    "red": (220, 40, 40),
    "green": (40, 160, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 205, 30),
    "purple": (140, 60, 190),
    "orange": (245, 135, 25),
    "pink": (245, 120, 200),
    "brown": (130, 80, 35),
}
SIZES = ["small", "large"]
TEXTURES = ["plain", "striped", "dotted"]
RELATIONS = ["left of", "right of", "above", "below"]
CONVERSE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}

HELD_OUT_COLOR_SHAPE: list[tuple[str, str]] = [
    ("red", "circle"),
    ("blue", "square"),
    ("green", "triangle"),
    ("yellow", "star"),
]
"""(color, shape) pairs that never occur in ``train`` (images or captions)."""

HELD_OUT_RELATIONS: list[tuple[str, str, str]] = [
    ("triangle", "left of", "circle"),
    ("star", "above", "square"),
    ("hexagon", "right of", "diamond"),
]
"""(shape, relation, shape) facts that never hold in a ``train`` image nor appear (in either
direction) in a ``train`` caption."""


@lru_cache(maxsize=1)
def shapes_vocabulary() -> Vocabulary:
    """Vocabulary of ShapesWorld captions (parser + operators use it)."""
    return Vocabulary.from_dict(
        {
            "attributes": {"size": SIZES, "color": list(COLORS), "pattern": ["striped", "dotted"]},
            "objects": {"shape": SHAPES},
            "prepositions": ["to the left of", "to the right of", "left of", "right of", "above", "below"],
            "verbs": [],
            "determiners": {"a": 1, "an": 1, "the": None},
            "relation_aliases": {"to the left of": "left of", "to the right of": "right of"},
            "opposites": {"left of": "right of", "right of": "left of", "above": "below", "below": "above"},
            "spatial_replacements": RELATIONS,
            "attribute_order": ["size", "color", "pattern"],
            "antonyms": {"small": ["large"], "large": ["small"]},
            "antonym_categories": ["size"],
            "add_categories": ["size", "color", "pattern"],
            "add_object_categories": ["shape"],
            "add_relations": ["left of", "right of", "above", "below", "and"],
            "add_object_with_color": True,
            "fillers": ["is", "are", "there", "and"],
        }
    )
