"""Where each cached patch sits in the original image (for heatmaps and localization checks).

An encoder's preprocessing decides which part of the original image its patch grid covers:

* ``center_crop`` (CLIP, open_clip, the towers): resize so the shorter side is ``resize`` px,
  then cut the central ``crop`` x ``crop`` square. The grid covers only that square: for the
  towers (resize 256, crop 224) the central 87.5% of each side. Drawing the 7x7 grid over the
  whole image stretches it outwards, so heat lands up-left of objects in the upper-left part
  of the image (and down-right in the lower-right) by up to half a cell;
* ``stretch`` (SigLIP): resize to ``crop`` x ``crop`` ignoring the aspect ratio; the grid covers
  the whole image.

Cell (r, c) of a ``gh x gw`` grid is centred at ((c + 0.5) / gw, (r + 0.5) / gh) of the covered
region. (For EfficientNet's TF "SAME" paddings the theoretical receptive-field centre sits 15.5
px further down-right, but a trained head's word peaks land inside the object's box more often
with the plain cell centre than with that offset, on the quickstart's test captions.)

The geometry is a small dict stored as the cache attribute ``patch_geometry``:
``{"mode": "center_crop", "resize": 256, "crop": 224}`` or ``{"mode": "stretch", "crop": 224}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

MODES = ("center_crop", "stretch", "full")


def geometry_of(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The patch geometry of a cache (its root attributes): ``attrs["patch_geometry"]`` when
    recorded; else, for towers caches, their known 256 -> 224 center crop; else a center crop
    of ``image_size`` (CLIP-style resize to the crop size)."""
    geo = attrs.get("patch_geometry")
    if isinstance(geo, str):
        geo = json.loads(geo)
    if geo:
        return dict(geo)
    size = attrs.get("image_size") or [224, 224]
    crop = int(size[0] if isinstance(size, Sequence) else size)
    if str(attrs.get("encoder", "")).startswith("towers:"):
        return {"mode": "center_crop", "resize": int(round(crop * 256 / 224)), "crop": crop}
    return {"mode": "center_crop", "resize": crop, "crop": crop}


def covered_box(geometry: Mapping[str, Any] | None, width: int, height: int) -> tuple[float, ...]:
    """(x0, y0, x1, y1) in original-image pixels of the region the patch grid covers."""
    mode = (geometry or {}).get("mode", "full")
    if mode not in MODES:
        raise ValueError(f"unknown patch geometry mode {mode!r}: one of {', '.join(MODES)}")
    if mode != "center_crop":
        return (0.0, 0.0, float(width), float(height))
    scale = float(geometry["resize"]) / min(width, height)  # original px -> resized px
    side = float(geometry["crop"]) / scale  # crop side in original px
    x0, y0 = (width - side) / 2, (height - side) / 2
    return (x0, y0, x0 + side, y0 + side)


def cell_centers(
    geometry: Mapping[str, Any] | None, grid: Sequence[int], width: int, height: int
) -> tuple[np.ndarray, np.ndarray]:
    """Centres of the grid's columns xs [gw] and rows ys [gh] in original-image pixels."""
    gh, gw = int(grid[0]), int(grid[1])
    x0, y0, x1, y1 = covered_box(geometry, width, height)
    xs = x0 + (np.arange(gw) + 0.5) * (x1 - x0) / gw
    ys = y0 + (np.arange(gh) + 0.5) * (y1 - y0) / gh
    return xs, ys


def patch_point(
    geometry: Mapping[str, Any] | None, grid: Sequence[int], width: int, height: int, index: int
) -> tuple[float, float]:
    """(x, y) in original-image pixels of patch ``index`` (row-major over ``grid``)."""
    xs, ys = cell_centers(geometry, grid, width, height)
    r, c = divmod(int(index), int(grid[1]))
    return float(xs[c]), float(ys[r])
