"""The 3D world: CLEVR-style scenes of cubes, spheres and cylinders (8 colours, metal or rubber,
small or large) on a floor under perspective, with exact scene graphs, captions over colour,
material, size, quantity and five types of relation, hard negatives that are guaranteed false,
and test splits of minimal pairs (see :mod:`.generate`)."""

from __future__ import annotations

from tflocal.world3d.captions import from_text, mentions_held_out, to_text
from tflocal.world3d.generate import SPLITS, WorldConfig, generate, make_item
from tflocal.world3d.pairs import CATEGORIES, minimal_pair
from tflocal.world3d.scene import relation_holds, sample_scene
from tflocal.world3d.truth import caption_true_for_scene
from tflocal.world3d.vocab import world_vocabulary

__all__ = [
    "CATEGORIES",
    "SPLITS",
    "WorldConfig",
    "caption_true_for_scene",
    "from_text",
    "generate",
    "make_item",
    "mentions_held_out",
    "minimal_pair",
    "relation_holds",
    "sample_scene",
    "to_text",
    "world_vocabulary",
]
