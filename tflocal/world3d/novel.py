"""The 3D world's ``test_novel`` split: ``test_ood``'s kind of items with every shape, colour,
material and size named by a word the shipped concept vocabulary does not hold (each a word
the text encoder knows). Captions and negatives are made and checked with the closed names,
then renamed one-to-one (see :mod:`tflocal.shapesworld.novel`, whose renaming this reuses), so
every negative stays false and every minimal pair stays minimal."""

from __future__ import annotations

from tflocal.shapesworld.novel import rename

NOVEL_NAMES: dict[str, str] = {
    "cube": "cuboid",
    "sphere": "globe",
    "cylinder": "canister",
    "cubes": "cuboids",
    "spheres": "globes",
    "cylinders": "canisters",
    "gray": "slate",
    "red": "scarlet",
    "blue": "cobalt",
    "green": "emerald",
    "brown": "chocolate",
    "purple": "violet",
    "cyan": "turquoise",
    "yellow": "canary",
    "metal": "chrome",
    "rubber": "latex",
    "small": "miniature",
    "large": "massive",
}
"""Closed word (and plural) -> its ``test_novel`` name (one-to-one)."""


def rename_item(item: dict, names: dict[str, str] = NOVEL_NAMES) -> dict:
    """A manifest line with captions and negative texts renamed; ``scene`` and
    ``structured_captions`` keep the closed names the truth function reads."""
    item["captions"] = [rename(c, names) for c in item["captions"]]
    for neg in item["negatives"]:
        neg["text"] = rename(neg["text"], names)
    item["names"] = "novel"
    return item
