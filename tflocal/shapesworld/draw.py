"""Render a scene to an RGB PIL image (flat background, flat-colored shapes with texture)."""

from __future__ import annotations

import math

from PIL import Image, ImageDraw

from tflocal.shapesworld.vocab import COLORS

BACKGROUND = (205, 205, 205)


def _polygon(shape: str, r: float) -> list[tuple[float, float]] | None:
    """Vertices around (0, 0) for radius r; None for a circle."""
    if shape == "circle":
        return None
    if shape == "square":
        s = r * 0.82
        return [(-s, -s), (s, -s), (s, s), (-s, s)]
    if shape == "diamond":
        return [(0, -r), (r * 0.8, 0), (0, r), (-r * 0.8, 0)]
    if shape == "triangle":
        return [
            (r * math.cos(a), r * math.sin(a) + r * 0.15)
            for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)
        ]
    if shape == "hexagon":
        return [(r * math.cos(k * math.pi / 3), r * math.sin(k * math.pi / 3)) for k in range(6)]
    if shape == "star":
        return [
            (
                (r if k % 2 == 0 else r * 0.45) * math.cos(-math.pi / 2 + k * math.pi / 5),
                (r if k % 2 == 0 else r * 0.45) * math.sin(-math.pi / 2 + k * math.pi / 5),
            )
            for k in range(10)
        ]
    raise ValueError(f"unknown shape {shape!r}")


def draw_scene(scene: dict) -> Image.Image:
    """RGB image of ``scene`` (see :mod:`tflocal.shapesworld.scene`), ``image_size`` square."""
    size = scene["image_size"]
    img = Image.new("RGB", (size, size), BACKGROUND)
    for o in scene["objects"]:
        r = o["r"]
        s = int(2 * r) + 3
        c = s / 2
        mask = Image.new("L", (s, s), 0)
        md = ImageDraw.Draw(mask)
        poly = _polygon(o["shape"], r)
        if poly is None:
            md.ellipse([c - r, c - r, c + r, c + r], fill=255)
        else:
            md.polygon([(c + x, c + y) for x, y in poly], fill=255)
        color = COLORS[o["color"]]
        fill = Image.new("RGB", (s, s), color)
        dark = tuple(int(v * 0.4) for v in color)
        fd = ImageDraw.Draw(fill)
        if o["texture"] == "striped":
            for y in range(0, s, 6):
                fd.rectangle([0, y, s, y + 2], fill=dark)
        elif o["texture"] == "dotted":
            for y in range(3, s, 7):
                for x in range(3 + (y // 7 % 2) * 3, s, 7):
                    fd.ellipse([x - 1.6, y - 1.6, x + 1.6, y + 1.6], fill=dark)
        img.paste(fill, (int(round(o["x"] - c)), int(round(o["y"] - c))), mask)
    return img
