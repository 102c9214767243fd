"""The 3D world's closed vocabulary: shapes, colours, materials, sizes, relations by type, and the
default held-out combinations."""

from __future__ import annotations

from functools import lru_cache

SHAPES = ["cube", "sphere", "cylinder"]
COLORS = {
    "gray": (87, 87, 87),
    "red": (173, 35, 35),
    "blue": (42, 75, 215),
    "green": (29, 105, 20),
    "brown": (129, 74, 25),
    "purple": (129, 38, 192),
    "cyan": (41, 208, 208),
    "yellow": (255, 238, 51),
}
"""Colour name -> base albedo (sRGB 0..255)."""
MATERIALS = ["metal", "rubber"]
"""metal: a mirror-like specular coat over the colour; rubber: matte (Lambert only)."""
SIZES = {"small": 0.45, "large": 0.85}
"""Size name -> half-extent in world units (sphere radius, cube half side, cylinder radius and
half height)."""

RELATION_TYPES: dict[str, list[str]] = {
    "plane": ["left of", "right of", "above", "below"],
    "depth": ["in front of", "behind"],
    "support": ["on top of"],
    "comparative": ["bigger than", "smaller than"],
    "equality": ["same color as"],
}
"""Relation type -> canonical predicates (what the parser returns for them)."""
RELATIONS = [r for rs in RELATION_TYPES.values() for r in rs]
RELATION_TYPE = {r: t for t, rs in RELATION_TYPES.items() for r in rs}
CONVERSE = {
    "left of": "right of",
    "right of": "left of",
    "above": "below",
    "below": "above",
    "in front of": "behind",
    "behind": "in front of",
    "bigger than": "smaller than",
    "smaller than": "bigger than",
    "same color as": "same color as",
}
"""``a rel b`` holds iff ``b CONVERSE[rel] a`` holds (``on top of`` has no converse in the
vocabulary)."""

NUMBER_WORDS = {2: "two", 3: "three", 4: "four", 5: "five"}
REL_SURFACES: dict[str, list[str]] = {
    "left of": ["left of", "to the left of", "is left of", "is to the left of"],
    "right of": ["right of", "to the right of", "is right of", "is to the right of"],
    "above": ["above", "is above"],
    "below": ["below", "is below"],
    "in front of": ["in front of", "is in front of"],
    "behind": ["behind", "is behind"],
    "on top of": ["on top of", "is on top of"],
    "bigger than": ["is bigger than", "is larger than"],
    "smaller than": ["is smaller than"],
    "same color as": ["is the same color as"],
}
"""Canonical relation -> the ways a caption writes it."""

HELD_OUT_TRIPLES: list[tuple[str, str, str]] = [
    ("red", "metal", "sphere"),
    ("blue", "rubber", "cube"),
    ("green", "metal", "cylinder"),
    ("yellow", "rubber", "sphere"),
    ("cyan", "metal", "cube"),
]
"""(colour, material, shape) combinations that never occur in ``train`` (images or captions)."""
HELD_OUT_COUNTS: list[tuple[int, str]] = [(3, "sphere"), (2, "cylinder")]
"""(count, shape): no ``train`` image holds exactly that many of the shape, no ``train`` caption
states it."""
HELD_OUT_FACTS: list[tuple[str, str, str, str, str]] = [
    ("metal", "sphere", "left of", "rubber", "cylinder"),
    ("rubber", "sphere", "behind", "metal", "cube"),
    ("metal", "cylinder", "on top of", "rubber", "cube"),
    ("rubber", "cube", "bigger than", "metal", "sphere"),
    ("metal", "cube", "same color as", "rubber", "cylinder"),
]
"""(material, shape, relation, material, shape), one per relation type, that never holds in a
``train`` image nor appears (either direction) in a ``train`` caption that names both
materials."""


@lru_cache(maxsize=1)
def world_vocabulary():
    """The closed :class:`~tflocal.concepts.vocab.Vocabulary` of the world's captions (the
    parser, the operators and :func:`~tflocal.world3d.captions.from_text` use it)."""
    from tflocal.concepts.vocab import Vocabulary

    surfaces = sorted(
        {s.removeprefix("is ") for ss in REL_SURFACES.values() for s in ss}, key=len, reverse=True
    )
    return Vocabulary.from_dict(
        {
            "attributes": {"size": list(SIZES), "color": list(COLORS), "material": MATERIALS},
            "objects": {"shape": SHAPES},
            "prepositions": surfaces,
            "verbs": [],
            "determiners": {"a": 1, "an": 1, "the": None, **{w: n for n, w in NUMBER_WORDS.items()}},
            "relation_aliases": {
                "to the left of": "left of",
                "to the right of": "right of",
                "larger than": "bigger than",
                "the same color as": "same color as",
            },
            "opposites": dict(CONVERSE),
            "spatial_replacements": [r for r in RELATIONS if r != "same color as"],
            "attribute_order": ["size", "color", "material"],
            "antonyms": {"small": ["large"], "large": ["small"]},
            "antonym_categories": ["size"],
            "add_categories": ["size", "color", "material"],
            "add_object_categories": ["shape"],
            "add_relations": ["left of", "right of", "in front of", "behind", "and"],
            "add_object_with_color": True,
            "fillers": ["is", "are", "there", "and"],
            "open_vocabulary": False,
        }
    )
