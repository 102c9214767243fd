"""ShapesWorld: a controlled dataset of rendered shape scenes with exact scene graphs,
captions and hard negatives that are guaranteed false (see :mod:`.generate`)."""

from __future__ import annotations

from tflocal.shapesworld.captions import from_text, mentions_held_out, to_text
from tflocal.shapesworld.config import ShapesConfig
from tflocal.shapesworld.draw import draw_scene
from tflocal.shapesworld.generate import SPLITS, generate, make_item, rendered_splits
from tflocal.shapesworld.scene import relation_holds, sample_scene
from tflocal.shapesworld.truth import caption_true_for_scene
from tflocal.shapesworld.vocab import HELD_OUT_COLOR_SHAPE, HELD_OUT_RELATIONS, shapes_vocabulary

__all__ = [
    "HELD_OUT_COLOR_SHAPE",
    "HELD_OUT_RELATIONS",
    "SPLITS",
    "ShapesConfig",
    "caption_true_for_scene",
    "draw_scene",
    "from_text",
    "generate",
    "make_item",
    "mentions_held_out",
    "relation_holds",
    "rendered_splits",
    "sample_scene",
    "shapes_vocabulary",
    "to_text",
]
