"""Opening a record's image and cutting the fixed crop grid, for the writer and raw scoring alike."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cache_tools.sources.records import ImageRecord

CROP_GRIDS = ((2, 2), (3, 3))
"""Crop grids cached with ``crops=True``: 4 + 9 = 13 crops per image."""


def crop_boxes(grids: Sequence[tuple[int, int]] = CROP_GRIDS) -> np.ndarray:
    """Crop boxes as fractions (x0, y0, x1, y1), row-major within each grid: float32 [C, 4]."""
    boxes = []
    for gh, gw in grids:
        for r in range(gh):
            for c in range(gw):
                boxes.append((c / gw, r / gh, (c + 1) / gw, (r + 1) / gh))
    return np.asarray(boxes, dtype=np.float32)


def cut_crops(img: Image.Image, boxes: np.ndarray) -> list[Image.Image]:
    """The C crops of ``img`` for fractional ``boxes`` [C, 4] (times the image size)."""
    w, h = img.size
    return [img.crop((x0 * w, y0 * h, x1 * w, y1 * h)) for x0, y0, x1, y1 in boxes]


def load_image(record: ImageRecord) -> Image.Image:
    """Open ``record.image`` (a path or a PIL image) as RGB, cropped to ``record.box`` if set."""
    img: Any = record.image
    if isinstance(img, (str, Path)):
        with Image.open(img) as f:
            img = f.convert("RGB")
    elif hasattr(img, "convert"):
        img = img.convert("RGB")
    else:
        raise TypeError(f"unsupported image object {type(img).__name__}")
    if record.box is not None:
        img = img.crop(tuple(float(v) for v in record.box))
    if img.width < 1 or img.height < 1:
        raise ValueError("empty image after cropping")
    return img
